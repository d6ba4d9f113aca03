"""Training step of a word-level LSTM language model over a large vocabulary, against torch.

    python benchmarks/lm.py [--steps 6] [--vocab 18000] [--threads N]

pytorch/examples' word_language_model shape: Embedding(V, 200) -> LSTM(200, 200) -> Linear(200, V)
-> cross-entropy over batch 20 x 35 steps (700 tokens), clip_grad_norm_(0.25), SGD lr 20, float32.
Here the loss's cost matters: 700 tokens x V classes of logits. torch runs in its own block
after ours (its idle OpenMP threads would slow whatever ran next).
"""
import numpy as np
from common import parser as common_parser
from common import banner, blas_threads, import_torch, report, time_ms

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

EMBED, HIDDEN, BATCH, STEPS, CLIP, LR = 200, 200, 20, 35, 0.25, 20.0


def build(lib, vocab):
    """(embedding, lstm, decoder) of `lib` (tinygrad_rnn.nn or torch.nn)."""
    return lib.Embedding(vocab, EMBED), lib.LSTM(EMBED, HIDDEN), lib.Linear(HIDDEN, vocab)


def training_step(functional, clip, optimizer, layers, x, y):
    embedding, lstm, decoder = layers
    params = [p for layer in layers for p in layer.parameters()]
    opt = optimizer(params, lr=LR)

    def step():
        opt.zero_grad()
        output, _ = lstm(embedding(x))
        loss = functional.cross_entropy(decoder(output.reshape(-1, HIDDEN)), y)
        loss.backward()
        clip(params, CLIP)
        opt.step()
        return loss.item()
    return step


def main():
    parser = common_parser(__doc__, steps=6)
    parser.add_argument("--vocab", type=int, nargs="+", default=[18000])
    args = parser.parse_args()
    threads = blas_threads(args.threads)
    torch = import_torch(threads)
    banner(threads, torch)
    print(f"word-LM training step: Embedding -> LSTM({EMBED}, {HIDDEN}) -> Linear, batch {BATCH}, seq {STEPS}, "
          f"SGD + clip {CLIP}, float32; median (min) of {args.steps} steps")
    for vocab in args.vocab:
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, vocab, size=(STEPS + 1, BATCH))
        tg.manual_seed(0)
        ours = build(nn, vocab)
        steps = {"tinygrad_rnn": training_step(nn.functional, nn.utils.clip_grad_norm_, optim.SGD, ours,
                                               tg.tensor(tokens[:-1]), tg.tensor(tokens[1:].reshape(-1)))}
        results = time_ms(steps, args.steps, args.warmup)
        if torch is not None:
            theirs = build(torch.nn, vocab)
            with torch.no_grad():
                for mine, other in zip(ours, theirs):
                    for p, q in zip(mine.parameters(), other.parameters()):
                        q.copy_(torch.tensor(p.numpy()))
            torch_step = training_step(torch.nn.functional, torch.nn.utils.clip_grad_norm_, torch.optim.SGD, theirs,
                                       torch.tensor(tokens[:-1]), torch.tensor(tokens[1:].reshape(-1)))
            results.update(time_ms({"torch nn.LSTM": torch_step}, args.steps, args.warmup))
        print(f"\nvocabulary {vocab} ({STEPS * BATCH} tokens x {vocab} classes of logits)")
        report(results, "torch nn.LSTM" if torch is not None else "tinygrad_rnn")


if __name__ == "__main__":
    main()
