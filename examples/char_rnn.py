"""A character-level language model (Karpathy's char-rnn, and the lecture model that read its own
slides): an LSTM reads this project's own documentation (README.md and docs/*.md, read when the
script starts) one character at a time and learns to predict the next one. Then it writes text.

Training is truncated backpropagation through time over one long text. The training text (the
first 90%) is cut into --batch parallel streams; each step reads the next --bptt characters of
every stream, carries the recurrent state over from the previous chunk but DETACHES it, so that
backward stops at the chunk's start (the gradient reaches back at most --bptt steps, while the
state itself carries information forward indefinitely). Gradients are clipped to norm --clip.

    python examples/char_rnn.py                          # about a minute: LSTM 128, input projection 8
    python examples/char_rnn.py --cell gru --input embedding --projection 0 --text my.txt
    python examples/char_rnn.py --steps 3000 --checkpoint-every 500   # interrupt it, then add --resume

What to look at:
  the log lines     the loss falling from ln(vocab) (a uniform guess, 4.6) to ~1.25 nats/char, and the
                    snippet after each: spaces, then words, then markdown (`#`, `|`, backticks). The
                    held-out loss stops near 2.0 by step ~800: 50k characters are few, and the
                    model begins to memorise them (a larger --text keeps the two curves together)
  the samples       greedy decoding (argmax: loops on the likeliest phrase), temperature 0.5 (plausible,
                    repetitive) and 1.0 (the model's own distribution: varied, more misspelt)
  --out             char_rnn_loss.png   training and held-out loss against the step
                    char_rnn_graph.svg  (and .dot) the unrolled graph of a 5-character window of the
                                        trained model, one column per step, the path from the last
                                        step's loss back to weight_hh_l0 in red
                    char_rnn_grad_flow.png  ‖∂L/∂h⟨t⟩‖ over a --bptt window: how far back a gradient reaches
                    char_rnn_samples.txt  the samples
                    char_rnn.ckpt       the checkpoint (tg.save: weights, Adam's state, the step, the
                                        carried state and the random generator): --resume continues it
                                        exactly, as if the run had never stopped
The results line gives the train loss (nats/char, the mean of the last 50 steps), bits per character,
the held-out loss on the last 10% of the text, tokens/s and the samples.
"""
import math
import shutil
import time
from itertools import zip_longest
from pathlib import Path
from textwrap import wrap

import numpy as np

import tinygrad_rnn as tg
from common import parser, positive, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import nn, optim, viz

ROOT = Path(__file__).resolve().parents[1]
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
CHECKPOINT = "char_rnn.ckpt"


# ---- the corpus ---------------------------------------------------------------------------

def read_corpus(path=None):
    """The text to learn: a file, or the project's own docs (the README and docs/*.md, in name order)."""
    if path is not None:
        return Path(path).read_text(encoding="utf-8")
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n\n".join(file.read_text(encoding="utf-8") for file in files)


class Vocabulary:
    """The characters of the corpus, sorted: text <-> int64 ids."""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise SystemExit(f"characters not in the corpus: {''.join(unknown)!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def streams(ids, batch):
    """(N,) -> (N // batch, batch): column b is the b-th contiguous slice of the text, so that row
    t + 1 continues row t in every column and a carried state always belongs to its own stream."""
    length = len(ids) // batch
    return ids[:length * batch].reshape(batch, length).T


# ---- the model ----------------------------------------------------------------------------

class CharRNN(nn.Module):
    """(T, B) character ids, state -> (T, B, vocab) logits of the next character, new state.

    one-hot (vocab) or an embedding lookup, optionally through a small linear projection, into
    an RNN/GRU/LSTM, and a linear read-out of the hidden state at every step."""

    def __init__(self, vocab_size, cell="lstm", hidden_size=128, layers=1, input="onehot", projection=8,
                 embedding_dim=32):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if input == "embedding" else None
        width = embedding_dim if input == "embedding" else vocab_size
        # on a one-hot input a bias would only repeat the recurrent layer's own
        self.projection = nn.Linear(width, projection, bias=False) if projection else None
        self.rnn = CELLS[cell](projection or width, hidden_size, num_layers=layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def features(self, ids, state=None):
        """(T, B) ids -> the hidden states (T, B, hidden), the final state."""
        x = self.embedding(ids) if self.embedding is not None else tg.one_hot(ids, self.vocab_size).float()
        if self.projection is not None:
            x = self.projection(x)
        return self.rnn(x, state)

    def forward(self, ids, state=None):
        output, state = self.features(ids, state)
        return self.head(output), state  # one matmul for every step at once


def detach(state):
    """Truncated BPTT's cut: the same values, no graph behind them (an LSTM's state is a pair)."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def cross_entropy(logits, targets):
    """Mean nats per character over a (T, B, vocab) window."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def evaluate(model, ids, streams_count=8):
    """Mean nats/char predicting ids[1:] from ids[:-1], the state carried all the way (no cuts:
    without a graph to keep, a window can be as long as the text)."""
    columns = streams(ids, streams_count)
    model.eval()
    with tg.no_grad():
        logits, _ = model(tg.tensor(columns[:-1]))
        loss = cross_entropy(logits, tg.tensor(columns[1:])).item()
    model.train()
    return loss


def sample(model, vocab, prime, length, temperature):
    """`length` characters continuing `prime`: argmax at temperature 0, else drawn with
    tg.multinomial from softmax(logits / T) (below 1 sharper than the model, above 1 flatter)."""
    model.eval()
    drawn = []
    with tg.no_grad():
        logits, state = model(tg.tensor(vocab.encode(prime)[:, None]))
        for _ in range(length):
            last = logits[-1]  # (1, vocab): the prediction after the latest character
            if temperature == 0:
                next_id = last.argmax(-1).reshape(1, 1)
            else:
                next_id = tg.multinomial((last / temperature).softmax(-1), 1)
            drawn.append(int(next_id.item()))
            logits, state = model(next_id, state)
    model.train()
    return vocab.decode(drawn)


# ---- checkpoints --------------------------------------------------------------------------

def config(args, vocab):
    """What a checkpoint must share with the run that resumes it."""
    return {"cell": args.cell, "input": args.input, "projection": args.projection, "hidden": args.hidden,
            "layers": args.layers, "embedding_dim": args.embedding_dim, "batch": args.batch, "bptt": args.bptt,
            "lr": args.lr, "clip": args.clip, "vocab": "".join(vocab.chars)}


def save_checkpoint(path, model, optimizer, run):
    """Everything the next step depends on, written atomically (a crash mid-save keeps the old
    file): weights, Adam's moments, the step (which is the data position), the carried state, the
    generator, and the loss history so that the curve and the results continue too."""
    tg.save({"model": model.state_dict(), "optim": optimizer.state_dict(), "rng": tg.get_rng_state(), **run}, path)


def resume(path, model, optimizer, expected):
    """Load a checkpoint into model and optimizer, restore the generator; returns the run dict."""
    if not path.exists():
        raise SystemExit(f"--resume: no checkpoint at {path}")
    saved = tg.load(path)
    if saved["config"] != expected:
        changed = sorted(k for k in expected if saved["config"].get(k) != expected[k])
        raise SystemExit(f"--resume: {path} was made with other settings ({', '.join(changed)})")
    model.load_state_dict(saved.pop("model"))
    optimizer.load_state_dict(saved.pop("optim"))
    tg.set_rng_state(saved.pop("rng"))  # the samples in the log draw from it
    return saved


# ---- pictures -----------------------------------------------------------------------------

def draw_unrolled_graph(model, window, args):
    """The unrolled graph of a short window (batch 1, from a zero state), cell detail, with the
    path from the last step's loss L<T-1> back to the recurrent weight in red."""
    output, _ = model.features(tg.tensor(window[:-1, None]))
    # the head on the last step's h alone, so that it and its loss are drawn in that step's column
    last_loss = nn.functional.cross_entropy(model.head(output[-1]), tg.tensor(window[-1:]))
    options = {"params": model, "detail": "cell", "highlight": "rnn.weight_hh_l0"}
    dot_path, svg_path = args.out / "char_rnn_graph.dot", args.out / "char_rnn_graph.svg"
    dot_path.write_text(viz.to_dot(last_loss, **options), encoding="utf-8")
    if shutil.which("dot") is None:
        print(f"wrote {dot_path}; no SVG: the graphviz `dot` program is not installed (apt-get install graphviz)")
        return
    try:
        graph = viz.make_dot(last_loss, **options)
    except ImportError as error:
        print(f"wrote {dot_path}; no SVG: {error}")
        return
    graph.render(filename=dot_path, outfile=svg_path, cleanup=False)


def plot_gradient_flow(model, window, args):
    """‖∂L/∂h<t>‖ against t over one --bptt window: for the whole window's loss (what training
    uses) and for the last step's alone (how far back one prediction's gradient reaches)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    inputs, targets = tg.tensor(window[:-1, None]), tg.tensor(window[1:, None])
    for ax, last_only in zip(axes, (False, True)):
        logits, _ = model(inputs)
        loss = cross_entropy(logits[-1:], targets[-1:]) if last_only else cross_entropy(logits, targets)
        trace = viz.trace_backward(loss, model)
        viz.plot_grad_flow(trace, ax=ax, title="loss at the last step only" if last_only
                           else f"loss over all {len(window) - 1} steps")
    model.zero_grad()
    figure.suptitle("gradient reaching each step's hidden state (trained model, one held-out window)")
    save_figure(figure, args, "char_rnn_grad_flow")


def plot_losses(losses, heldout, vocab_size, args):
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (each step)")
    smooth = np.convolve(losses, np.ones(25) / 25, mode="valid") if len(losses) >= 25 else losses
    ax.plot(steps[len(steps) - len(smooth):], smooth, color="tab:blue", label="train (mean of 25 steps)")
    if heldout:
        ax.plot(*zip(*heldout), "o-", color="tab:orange", label="held-out (last 10% of the text)")
    ax.axhline(math.log(vocab_size), color="grey", linestyle=":", label=f"uniform guess, ln {vocab_size}")
    corpus = args.text.name if args.text else "its own docs"
    ax.set(xlabel="step", ylabel="loss (nats/char)", title=f"A character {args.cell.upper()} on {corpus}")
    ax.legend()
    save_figure(figure, args, "char_rnn_loss")


def side_by_side(columns):
    """{title: text} -> the texts in columns as wide as the terminal allows, their own line breaks
    kept, long lines wrapped."""
    width = min(40, max(24, (shutil.get_terminal_size().columns - 3 * (len(columns) - 1)) // len(columns)))
    wrapped = [[title, "-" * width] + [piece for line in text.split("\n") for piece in wrap(line, width) or [""]]
               for title, text in columns.items()]
    return "\n".join(" | ".join(f"{cell:<{width}}" for cell in row).rstrip()
                     for row in zip_longest(*wrapped, fillvalue=""))


# ---- training -----------------------------------------------------------------------------

def train(model, optimizer, data, heldout_ids, vocab, run, args):
    """Steps run["step"] .. --steps of truncated BPTT over data (L, B), updating `run` (and the
    checkpoint) as it goes. The data position is the step: chunk k of a pass is rows k*bptt ...
    Returns the seconds spent, those of the run before a --resume included."""
    chunks = (len(data) - 1) // args.bptt  # windows of --bptt per pass over the streams
    if chunks < 1:
        raise SystemExit(f"the text is too short for --batch {args.batch} x --bptt {args.bptt}")
    state, losses = run["state"], run["losses"]
    bar = progress(range(run["step"], args.steps), args, desc="training", initial=run["step"], total=args.steps)
    say = getattr(bar, "write", print)  # tqdm.write keeps the bar below the log lines
    started, tokens, earlier = time.perf_counter(), 0, run["seconds"]
    for step in bar:
        chunk = step % chunks
        if chunk == 0:
            state = None  # a new pass: each stream starts again at its beginning
        rows = data[chunk * args.bptt: chunk * args.bptt + args.bptt + 1]
        logits, state = model(tg.tensor(rows[:-1]), state)
        loss = cross_entropy(logits, tg.tensor(rows[1:]))
        optimizer.zero_grad()
        loss.backward()  # BPTT through this chunk's --bptt steps, no further
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        state = detach(state)  # carry the values into the next chunk, not the graph
        losses.append(loss.item())
        tokens += rows[:-1].size
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{tokens / (time.perf_counter() - started):,.0f}",
                            refresh=False)
        done = step + 1
        if done % args.log_every == 0:  # not also at the last step: a run cut short would then differ
            run["heldout"].append((done, evaluate(model, heldout_ids)))
            snippet = sample(model, vocab, args.prime, 60, 0.5).replace("\n", "⏎")
            say(f"step {done:5d}  train {np.mean(losses[-args.log_every:]):.3f}  held-out "
                f"{run['heldout'][-1][1]:.3f} nats/char  | {args.prime}{snippet}")
        if done % args.checkpoint_every == 0 or done == args.steps:
            run.update(step=done, state=state, seconds=earlier + time.perf_counter() - started)
            save_checkpoint(args.out / CHECKPOINT, model, optimizer, run)
    return earlier + time.perf_counter() - started


def main(args):
    setup(args)
    # Batch 32 x hidden 128 matrices are too small for BLAS threads to pay: they gain nothing
    # alone, and on a busy machine their spinning makes each step up to ten times slower.
    tg.set_num_threads(args.threads)
    text = read_corpus(args.text)
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    vocab.encode(args.prime)  # a prime the model cannot read fails now, not after training
    split = int(len(ids) * 0.9)
    train_ids, heldout_ids = ids[:split], ids[split:]
    data = streams(train_ids, args.batch)

    model = CharRNN(len(vocab), args.cell, args.hidden, args.layers, args.input, args.projection,
                    args.embedding_dim)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    run = {"step": 0, "state": None, "losses": [], "heldout": [], "seconds": 0.0, "config": config(args, vocab)}
    if args.resume:
        run = resume(args.out / CHECKPOINT, model, optimizer, run["config"])
    print(f"{len(text):,} characters ({len(vocab)} distinct), {len(train_ids):,} to train on in "
          f"{args.batch} streams of {len(data):,}, {len(heldout_ids):,} held out")
    print(model)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters"
          + (f"; resuming at step {run['step']}" if args.resume else ""))

    seconds = train(model, optimizer, data, heldout_ids, vocab, run, args)
    losses, heldout = run["losses"], list(run["heldout"])
    train_loss = float(np.mean(losses[-max(1, min(50, len(losses) // 10)):]))  # the last 50 steps (or tenth)
    if not heldout or heldout[-1][0] != len(losses):
        heldout.append((len(losses), evaluate(model, heldout_ids)))
    heldout_loss = heldout[-1][1]

    samples = {"greedy": sample(model, vocab, args.prime, args.sample_length, 0)}
    for temperature in args.temperature:
        samples[f"T={temperature:g}"] = sample(model, vocab, args.prime, args.sample_length, temperature)
    print(f"\nSamples after {args.prime!r}:\n")
    print(side_by_side({name: args.prime + s for name, s in samples.items()}))
    (args.out / "char_rnn_samples.txt").write_text(
        "".join(f"--- {name} ---\n{args.prime}{s}\n\n" for name, s in samples.items()), encoding="utf-8")

    plot_losses(losses, heldout, len(vocab), args)
    draw_unrolled_graph(model, heldout_ids[:args.graph_steps + 1], args)
    plot_gradient_flow(model, heldout_ids[:args.bptt + 1], args)

    print(f"\ntrain loss {train_loss:.3f} nats/char ({train_loss / math.log(2):.3f} bits/char), held-out "
          f"{heldout_loss:.3f} ({heldout_loss / math.log(2):.3f} bits/char); a uniform guess is "
          f"{math.log(len(vocab)):.3f}. {len(losses)} steps in {seconds:.1f} s")
    report("char_rnn", steps=len(losses), vocab_size=len(vocab), initial_loss=losses[0], train_loss=train_loss,
           bits_per_char=train_loss / math.log(2), heldout_loss=heldout_loss,
           heldout_bits_per_char=heldout_loss / math.log(2), seconds=seconds,
           tokens_per_second=len(losses) * args.batch * args.bptt / seconds, samples=samples)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--text", type=Path, help="train on this UTF-8 file instead of the project's docs")
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--input", choices=["onehot", "embedding"], default="onehot")
    p.add_argument("--embedding-dim", type=int, default=32, help="with --input embedding")
    p.add_argument("--projection", type=int, default=8, help="a linear input projection to this size (0: none)")
    p.add_argument("--hidden", type=positive, default=128)
    p.add_argument("--layers", type=positive, default=1)
    p.add_argument("--steps", type=positive, default=1000, help="training steps in all (a resumed run continues to it)")
    p.add_argument("--batch", type=positive, default=32, help="parallel streams of text")
    p.add_argument("--bptt", type=positive, default=64, help="characters per chunk: how far back gradients reach")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam's learning rate")
    p.add_argument("--clip", type=float, default=5.0, help="clip the gradient's global norm to this")
    p.add_argument("--threads", type=positive, default=1, help="BLAS threads (more help only a large --hidden)")
    p.add_argument("--log-every", type=positive, default=100)
    p.add_argument("--checkpoint-every", type=positive, default=250)
    p.add_argument("--resume", action="store_true", help=f"continue from --out/{CHECKPOINT}")
    p.add_argument("--prime", default="The ", help="the text the samples continue")
    p.add_argument("--temperature", type=float, nargs="+", default=[0.5, 1.0], help="shown beside greedy")
    p.add_argument("--sample-length", type=positive, default=250)
    p.add_argument("--graph-steps", type=positive, default=5, help="the unrolled graph's window")
    main(p.parse_args())
