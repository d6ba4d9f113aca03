"""One-to-many: caption an 8x8 digit from scikit-learn's digits by spelling its English name, one
character at a time ("7" -> "seven").

The image's 64 pixels go through a small encoder (Linear + tanh) whose output is the decoder's
initial hidden state; from then on the image is never seen again, so everything the decoder spells
must pass through that one vector. The decoder is an LSTMCell (or GRUCell) called in a Python loop:
it reads the previous character and predicts the next, from a start mark "^" to an end mark "$".
Training uses teacher forcing (the true previous character as input); at test time the decoder
feeds back its own output, either the most likely character (greedy) or one drawn with
tg.multinomial from the softmax at a temperature (sampled).

What to look at: the printed greedy and sampled captions of a few held-out images (sampling at a
high temperature misspells; at a low one it agrees with greedy), and in --out
  captioning_examples.png   a grid of held-out digits, each titled with its greedy caption, green
                            when it is exactly the digit's name and red when not

    python examples/captioning.py [--steps 800] [--cell lstm] [--temperatures 1.0 2.0] [--seed 0]

The results line gives exact-match caption accuracy (greedy, and sampled at each of --temperatures)
and per-character accuracy of the greedy captions on the held-out images.
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tinygrad_rnn as tg
from common import parser, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import nn, optim

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
START, END = "^", "$"
# The start mark comes last and is only ever read: the head predicts the first len(VOCAB) - 1 (the
# end mark and the letters), so not even a hot sampling temperature can spell "^".
VOCAB = [END] + sorted(set("".join(NAMES))) + [START]
INDEX = {char: i for i, char in enumerate(VOCAB)}
STEPS = max(map(len, NAMES)) + 1  # the longest name and its end mark


class Captioner(nn.Module):
    """images (B, 64) -> the decoder's state; (previous characters (B,), state) -> (logits (B, V - 1), state)."""

    def __init__(self, cell="lstm", hidden_size=64, embedding_dim=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, hidden_size), nn.Tanh())
        self.embedding = nn.Embedding(len(VOCAB), embedding_dim)
        self.cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell](embedding_dim, hidden_size)
        self.head = nn.Linear(hidden_size, len(VOCAB) - 1)

    def initial_state(self, images):
        feature = self.encoder(images)
        return (feature, tg.zeros_like(feature)) if isinstance(self.cell, nn.LSTMCell) else feature

    def step(self, characters, state):
        state = self.cell(self.embedding(characters), state)
        return self.head(state[0] if isinstance(state, tuple) else state), state

    def forward(self, images, inputs):
        """Teacher forcing: inputs (T, B) of true previous characters -> logits (T, B, V - 1)."""
        state, logits = self.initial_state(images), []
        for characters in inputs:
            step_logits, state = self.step(characters, state)
            logits.append(step_logits)
        return tg.stack(logits)


def encode(labels):
    """Digit labels (B,) -> decoder inputs (T, B) "^seven" and targets (T, B) "seven$", targets past
    the end mark set to cross_entropy's ignore_index so that padding costs nothing."""
    inputs = np.full((STEPS, len(labels)), INDEX[END])
    targets = np.full((STEPS, len(labels)), -100)
    for b, label in enumerate(labels):
        name = NAMES[label]
        inputs[:len(name) + 1, b] = [INDEX[c] for c in START + name]
        targets[:len(name) + 1, b] = [INDEX[c] for c in name + END]
    return tg.tensor(inputs), tg.tensor(targets)


def decode(model, images, temperature=None):
    """Captions of images (B, 64), feeding back the argmax (temperature None) or a sample from
    softmax(logits / temperature); each cut at its first end mark."""
    with tg.no_grad():
        state = model.initial_state(images)
        characters = tg.full((len(images),), INDEX[START], dtype=tg.int64)
        spelled = []
        for _ in range(STEPS):
            logits, state = model.step(characters, state)
            if temperature is None:
                characters = logits.argmax(-1)
            else:
                characters = (logits / temperature).softmax(-1).multinomial(1)[:, 0]
            spelled.append(characters.numpy())
    return ["".join(VOCAB[i] for i in row).split(END)[0] for row in np.stack(spelled, 1)]


def character_accuracy(captions, labels):
    """The fraction of target positions (each letter of the name and the end mark) that the caption
    has right, position by position."""
    right = total = 0
    for caption, label in zip(captions, labels):
        truth, guess = NAMES[label] + END, caption + END  # a short guess misses the positions past its end
        right += sum(t == g for t, g in zip(truth, guess))
        total += len(truth)
    return right / total


def exact(captions, labels):
    return float(np.mean([caption == NAMES[label] for caption, label in zip(captions, labels)]))


def plot(images, captions, labels, args, columns=8):
    plt = pyplot()
    rows = min(args.grid_rows, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for i, panel in enumerate(axes.flat):
        panel.axis("off")
        if i < len(images):
            panel.imshow(images[i].reshape(8, 8), cmap="gray_r")
            right = captions[i] == NAMES[labels[i]]
            panel.set_title(captions[i] or "(empty)", color="green" if right else "red", fontsize=10)
    figure.suptitle("held-out digits and their greedy captions (red: wrong)")
    save_figure(figure, args, "captioning_examples")


def main(args):
    rng = setup(args)
    pixels, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (pixels / 16).astype(np.float32), labels, test_size=args.test_size, stratify=labels,
        random_state=int(rng.integers(2**31)))
    model = Captioner(args.cell, args.hidden, args.embedding_dim)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    bar = progress(range(args.steps), args, desc="training")
    for step in bar:
        batch = rng.integers(len(x_train), size=args.batch_size)
        inputs, targets = encode(y_train[batch])
        logits = model(tg.tensor(x_train[batch]), inputs)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()  # through every decoder step back into the encoder
        optimizer.step()
        if step % 50 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.3f}")

    model.eval()
    images = tg.tensor(x_test)
    greedy = decode(model, images)
    sampled = {t: decode(model, images, t) for t in args.temperatures}
    print("digit  greedy  " + "".join(f"{f'4 sampled at {t}':36}" for t in args.temperatures))
    for digit in range(10):
        index = int(np.flatnonzero(y_test == digit)[0])  # the first held-out image of each digit
        four = tg.tensor(np.repeat(x_test[index:index + 1], 4, axis=0))
        columns = ["".join(f"{caption or '-':9}" for caption in decode(model, four, t)) for t in args.temperatures]
        print(f"{digit:5}  {greedy[index]:6}  " + "".join(columns).rstrip())
    plot(x_test, greedy, y_test, args)
    report("captioning", steps=args.steps, final_loss=loss.item(), test_images=len(y_test), chance=0.1,
           caption_accuracy=exact(greedy, y_test), character_accuracy=character_accuracy(greedy, y_test),
           temperatures=args.temperatures,
           sampled_caption_accuracy=[round(exact(sampled[t], y_test), 6) for t in args.temperatures])


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=800, help="Adam steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--hidden", type=int, default=64, help="the image feature's and the decoder's size")
    p.add_argument("--embedding-dim", type=int, default=16, help="size of each character's embedding")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0],
                   help="softmax temperatures for sampled captions")
    p.add_argument("--test-size", type=float, default=0.3, help="fraction of the digits held out")
    p.add_argument("--grid-rows", type=int, default=4, help="rows of 8 held-out digits in the plot")
    main(p.parse_args())
