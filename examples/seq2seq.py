"""Many-to-many with a delay: an encoder-decoder (Sutskever et al. 2014, Cho et al. 2014) learns a
toy translation, digits to English words, one character at a time: "3 1 4" -> "three one four".

The encoder GRU reads the digits (1 to --max-digits of them, a padded batch with `lengths=`) and
its last hidden state is all the decoder gets: it starts the decoder GRU, which writes the words
character by character after a start symbol and ends with an end symbol. Nothing is written until
every digit has been read, and the output is about five times as long as the input.

Training uses teacher forcing: the decoder is fed the true previous character at every step, so the
whole target sequence goes through nn.GRU in one call and the loss (cross-entropy per character,
padding ignored) is backpropagated through the decoder's steps and on into the encoder's. Decoding
is greedy: the decoder is fed its own most likely previous character, one step at a time, until it
writes the end symbol.

What to look at in --out:
  seq2seq_training.png  the training loss (left) and, on held-out digit strings decoded greedily,
                        the character accuracy and the sequence accuracy (exact match) (right):
                        characters come first, whole sequences later (one wrong letter spoils one)

    python examples/seq2seq.py [--steps 1000] [--max-digits 5] [--hidden-size 128] [--seed 0]

The results line gives the held-out character accuracy (the share of target characters, end symbol
included, decoded right at their position, so a word spelled too short or too long also costs the
characters after it; guessing would score 1/19), the sequence accuracy, and the first and last
training loss (the last a mean over 25 batches); a few held-out translations are printed before it.
"""
import numpy as np

import tinygrad_rnn as tg
from common import parser, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import nn, optim

WORDS = "zero one two three four five six seven eight nine".split()
PAD, START, END = 0, 1, 2  # in both vocabularies index 0 is padding
CHARS = ["<pad>", "<s>", "</s>", " "] + sorted(set("".join(WORDS)))
CHAR_INDEX = {c: i for i, c in enumerate(CHARS)}
IGNORE = -100  # cross_entropy's ignore_index, at the padded target positions


class Seq2Seq(nn.Module):
    """Digits (B, S) with lengths -> the encoder's last state -> the decoder's logits (B, T, len(CHARS))."""

    def __init__(self, embedding_dim=32, hidden_size=128):
        super().__init__()
        self.source_embedding = nn.Embedding(11, embedding_dim, padding_idx=PAD)  # digit d is d + 1
        self.encoder = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.target_embedding = nn.Embedding(len(CHARS), embedding_dim, padding_idx=PAD)
        self.decoder = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, len(CHARS))

    def encode(self, digits, lengths):
        _, h_n = self.encoder(self.source_embedding(digits), lengths=lengths)  # state at each one's last digit
        return h_n

    def decode(self, chars, state, lengths=None):
        """Previous characters (B, T) from `state` (1, B, H) -> logits (B, T, C) and the new state."""
        output, state = self.decoder(self.target_embedding(chars), state, lengths=lengths)
        return self.head(output), state

    def forward(self, digits, digit_lengths, chars, char_lengths):
        """Teacher forcing: `chars` are the target's characters shifted right by the start symbol."""
        return self.decode(chars, self.encode(digits, digit_lengths), char_lengths)[0]

    def greedy(self, digits, lengths, max_chars):
        """Feed back the argmax one step at a time -> (B, max_chars) character ids (END, then padding)."""
        state = self.encode(digits, lengths)
        previous = tg.full((digits.shape[0], 1), START, dtype="int64")
        written, done = [], np.zeros(digits.shape[0], dtype=bool)
        for _ in range(max_chars):
            logits, state = self.decode(previous, state)
            previous = logits.argmax(-1)  # (B, 1)
            chars = np.where(done, PAD, previous.numpy()[:, 0])
            written.append(chars)
            done |= chars == END
            if done.all():
                break
        return np.stack(written, 1)


def batch(rng, size, max_digits):
    """Random digit strings and their spelling, padded: digits (B, S), the decoder's input and
    target (B, T) (IGNORE where the target is padding), and both lengths."""
    digit_lengths = rng.integers(1, max_digits + 1, size=size)
    digits = np.zeros((size, max_digits), dtype=np.int64)
    spelled = []
    for row, length in enumerate(digit_lengths):
        values = rng.integers(10, size=length)
        digits[row, :length] = values + 1
        spelled.append([CHAR_INDEX[c] for c in " ".join(WORDS[v] for v in values)] + [END])
    char_lengths = np.array([len(s) for s in spelled])
    decoder_input = np.zeros((size, char_lengths.max()), dtype=np.int64)
    target = np.full((size, char_lengths.max()), IGNORE, dtype=np.int64)
    for row, chars in enumerate(spelled):
        decoder_input[row, :len(chars)] = [START] + chars[:-1]
        target[row, :len(chars)] = chars
    tensors = (digits[:, :digit_lengths.max()], digit_lengths, decoder_input, char_lengths, target)
    return tuple(tg.tensor(a) for a in tensors)


def spell(ids):
    """Character ids up to the end symbol -> text."""
    text = []
    for i in ids:
        if i in (END, PAD):
            break
        text.append(CHARS[i])
    return "".join(text)


def evaluate(model, held_out):
    """Greedy decoding of the held-out set -> (character accuracy, sequence accuracy, decoded ids)."""
    digits, digit_lengths, _, _, target = held_out
    target = target.numpy()
    model.eval()
    with tg.no_grad():
        decoded = model.greedy(digits, digit_lengths, max_chars=target.shape[1])
    model.train()
    decoded = np.pad(decoded, ((0, 0), (0, target.shape[1] - decoded.shape[1])), constant_values=PAD)
    real = target != IGNORE
    right = (decoded == target) | ~real
    return float(right[real].mean()), float(right.all(1).mean()), decoded


def main(args):
    rng = setup(args)
    model = Seq2Seq(args.embedding_dim, args.hidden_size)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    held_out = batch(rng, args.test_size, args.max_digits)
    losses, history = [], []  # history: (step, character accuracy, sequence accuracy)
    bar = progress(range(args.steps), args, desc="seq2seq")
    for step in bar:
        if step % args.eval_every == 0:
            history.append((step, *evaluate(model, held_out)[:2]))
        digits, digit_lengths, decoder_input, char_lengths, target = batch(rng, args.batch_size, args.max_digits)
        logits = model(digits, digit_lengths, decoder_input, char_lengths)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(CHARS)), target.reshape(-1), ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()  # through the decoder's steps, then h_n, then the encoder's steps
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if hasattr(bar, "set_postfix"):  # a plain range under --quiet
            bar.set_postfix(loss=f"{loss.item():.3f}", chars=f"{history[-1][1]:.3f}", refresh=False)
    chars, sequences, decoded = evaluate(model, held_out)
    history.append((args.steps, chars, sequences))

    digits, digit_lengths, _, _, target = (t.numpy() for t in held_out)
    for row in range(args.show):
        source = " ".join(str(d - 1) for d in digits[row, :digit_lengths[row]])
        wrote, wanted = spell(decoded[row]), spell(target[row])
        print(f"  {source:<10} -> {wrote:<30} {'ok' if wrote == wanted else 'wanted ' + wanted}")

    plt = pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(losses, color="tab:grey", alpha=0.4, label="per batch")
    smooth = np.convolve(losses, np.ones(25) / 25, mode="valid")
    loss_axes.plot(np.arange(len(smooth)) + 24, smooth, color="black", label="mean of 25")
    loss_axes.set(yscale="log", xlabel="training step", ylabel="cross-entropy per character (teacher forcing)")
    loss_axes.legend()
    steps, char_accuracy, sequence_accuracy = zip(*history)
    accuracy_axes.plot(steps, char_accuracy, "o-", label="characters")
    accuracy_axes.plot(steps, sequence_accuracy, "s-", label="whole sequences (exact match)")
    accuracy_axes.set(xlabel="training step", ylabel="held-out accuracy, greedy decoding", ylim=(0, 1.02))
    accuracy_axes.legend()
    figure.suptitle(f"Digits to words: GRU encoder-decoder, hidden {args.hidden_size}, up to {args.max_digits} digits")
    save_figure(figure, args, "seq2seq_training")
    report("seq2seq", char_accuracy=chars, sequence_accuracy=sequences, first_loss=losses[0],
           final_loss=float(np.mean(losses[-25:])))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=1000, help="Adam steps")
    p.add_argument("--max-digits", type=int, default=5, help="inputs have 1 to this many digits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test-size", type=int, default=500, help="held-out digit strings")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--show", type=int, default=6, help="held-out translations to print")
    main(p.parse_args())
