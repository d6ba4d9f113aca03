"""Many-to-many tagging, as in named-entity detection: an LSTM reads a sentence and tags every word 1
(a name) or 0, and whether a word is a name is decided by the word AFTER it.

The corpus is generated. Words like "mark", "rose", "will" or "grace" are sometimes names and
sometimes not: one is a name exactly when a speech verb follows it ("mark said ...", "rose asked ...")
and is an ordinary word otherwise ("mark the page", "a rose in the garden"). A title before it
("dr grace replied") also gives a name away, but only some names have one. Nothing else in the left
context says anything, so a left-to-right model, at the moment it must tag "rose", cannot know; a
bidirectional one has also read the sentence backwards, from the end to "rose", so it has seen the verb.

Sentences have different lengths (4 to 20 words): a batch is padded to its longest sentence, the
layer is told each sentence's length (`lengths=`, so the backward direction starts at the last real
word, not in the padding), and the loss skips the padded positions (ignore_index).

What to look at in --out:
  tagging_accuracy.png  held-out accuracy over training, unidirectional and bidirectional on one
                        plot: over all words (solid) and on the names (dashed). The unidirectional
                        model finds only the names after a title (about 30% of them, the dash-dot
                        line) and tags the rest as ordinary words; the bidirectional one finds them all.

    python examples/tagging.py [--bidirectional both|yes|no] [--cell lstm|gru] [--steps 300] [--seed 0]

The results line gives, per model ("uni", "bi"), the held-out accuracy on names and over all words;
the overall accuracy of tagging nothing as a name (the majority baseline); and the share of names
that come after a title. A few held-out sentences are printed with the names each model found in
capitals.
"""
import numpy as np

import tinygrad_rnn as tg
from common import parser, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import data, nn, optim

AMBIGUOUS = "mark bill rose frank grace will pat jack amber hope".split()  # a name or not, by what follows
VERBS = "said asked wrote replied smiled".split()
TITLES = "mr dr ms".split()
OTHER = "the a on page river garden today and of with we saw red in to".split()
VOCAB = ["<pad>"] + AMBIGUOUS + VERBS + TITLES + OTHER
INDEX = {word: i for i, word in enumerate(VOCAB)}
IGNORE = -100  # cross_entropy's ignore_index: the tag of a padded position


class Tagger(nn.Module):
    """(B, T) word ids and (B,) lengths -> (B, T, 2) logits per word."""

    def __init__(self, cell, bidirectional, embedding_dim=32, hidden_size=32):
        super().__init__()
        self.embedding = nn.Embedding(len(VOCAB), embedding_dim, padding_idx=0)
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = layer(embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), 2)  # both directions side by side

    def forward(self, words, lengths):
        output, _ = self.rnn(self.embedding(words), lengths=lengths)
        return self.head(output)


def sentence(rng, length, name=0.2, title=0.3, decoy=0.3):
    """`length` words and their tags, built from phrases that each fit in whole."""
    words, tags = [], []
    while True:
        draw = rng.random()
        if draw < name:  # [title] NAME verb
            phrase = [rng.choice(TITLES)] if rng.random() < title else []
            phrase += [rng.choice(AMBIGUOUS), rng.choice(VERBS)]
            phrase_tags = [0] * (len(phrase) - 2) + [1, 0]
        elif draw < name + decoy:  # the same word, not a name: no verb after it
            phrase, phrase_tags = [rng.choice(AMBIGUOUS), rng.choice(OTHER)], [0, 0]
        else:
            phrase, phrase_tags = [rng.choice(OTHER)], [0]
        if len(words) + len(phrase) > length:
            break
        words += phrase
        tags += phrase_tags
    words += list(rng.choice(OTHER, size=length - len(words)))  # fill up with words that are never names
    tags += [0] * (length - len(tags))
    return words, tags


def corpus(rng, size, min_length, max_length):
    """A TensorDataset of (max_length,) word ids, (max_length,) tags (IGNORE at padding) and lengths."""
    lengths = rng.integers(min_length, max_length + 1, size=size)
    words = np.zeros((size, max_length), dtype=np.int64)
    tags = np.full((size, max_length), IGNORE, dtype=np.int64)
    for row, length in enumerate(lengths):
        sentence_words, tags[row, :length] = sentence(rng, length)
        words[row, :length] = [INDEX[w] for w in sentence_words]
    return data.TensorDataset(tg.tensor(words), tg.tensor(tags), tg.tensor(lengths))


def trimmed(words, tags, lengths):
    """A batch cut to its own longest sentence (the corpus is padded to the longest of all)."""
    longest = int(lengths.numpy().max())
    return words[:, :longest], tags[:, :longest], lengths


def evaluate(model, test):
    """Held-out accuracy on the name words and over all real words."""
    words, tags, lengths = test.tensors
    model.eval()
    with tg.no_grad():
        predicted = model(words, lengths).argmax(-1).numpy()
    model.train()
    gold = tags.numpy()
    real, names = gold != IGNORE, gold == 1
    return float((predicted[names] == 1).mean()), float((predicted[real] == gold[real]).mean()), predicted


def endless(loader):
    """Batches forever, reshuffled every epoch."""
    while True:
        yield from loader


def train(bidirectional, train_set, test, args):
    """Adam over shuffled padded batches -> the model and [(step, name accuracy, overall accuracy)]."""
    model = Tagger(args.cell, bidirectional, args.embedding_dim, args.hidden_size)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=args.seed)
    batches = endless(loader)
    history = []
    label = "bi" if bidirectional else "uni"
    for step in progress(range(args.steps), args, desc=f"{label}directional {args.cell}"):
        if step % args.eval_every == 0:
            history.append((step, *evaluate(model, test)[:2]))
        words, tags, lengths = trimmed(*next(batches))
        logits = model(words, lengths)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 2), tags.reshape(-1), ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    history.append((args.steps, *evaluate(model, test)[:2]))
    return model, history


def show(test, predictions, count=3):
    """A few held-out sentences with a name and a decoy, names in capitals: gold, then each model."""
    words, tags, lengths = (t.numpy() for t in test.tensors)
    ambiguous = np.isin(words, [INDEX[w] for w in AMBIGUOUS]).sum(1)
    names = (tags == 1).sum(1)
    shown = np.flatnonzero((names > 0) & (ambiguous > names))
    for row in shown[:count]:
        for label, tagged in [("gold", tags[row]), *((k, p[row]) for k, p in predictions.items())]:
            line = [VOCAB[w].upper() if t == 1 else VOCAB[w] for w, t in zip(words[row, :lengths[row]], tagged)]
            print(f"  {label:>4}: {' '.join(line)}")
        print()


def main(args):
    rng = setup(args)
    train_set = corpus(rng, args.train_size, 4, args.max_length)
    test = corpus(rng, args.test_size, 4, args.max_length)
    words, gold = test.tensors[0].numpy(), test.tensors[1].numpy()
    majority = float((gold[gold != IGNORE] == 0).mean())  # tagging nothing as a name
    # The names a left-to-right reader can know when it reaches them: those right after a title.
    titled = float(np.isin(words[:, :-1], [INDEX[w] for w in TITLES])[gold[:, 1:] == 1].mean())

    directions = {"both": [False, True], "yes": [True], "no": [False]}[args.bidirectional]
    results, histories, predictions = {"majority_accuracy": majority, "titled_names": titled}, {}, {}
    for bidirectional in directions:
        label = "bi" if bidirectional else "uni"
        model, histories[label] = train(bidirectional, train_set, test, args)
        results[f"name_accuracy_{label}"], results[f"accuracy_{label}"], predictions[label] = evaluate(model, test)
    show(test, predictions)

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, history in histories.items():
        steps, names, overall = zip(*history)
        color = {"uni": "tab:orange", "bi": "tab:blue"}[label]
        axes.plot(steps, overall, "-", color=color, label=f"{label}directional, all words")
        axes.plot(steps, names, "--", color=color, label=f"{label}directional, names")
    axes.axhline(majority, color="grey", linestyle=":", label="tag nothing as a name (all words)")
    axes.axhline(titled, color="grey", linestyle="-.", label="share of names after a title")
    axes.set(xlabel="training step", ylabel="held-out accuracy", ylim=(0, 1.02),
             title=f"A name is known by the word after it ({args.cell.upper()}, hidden {args.hidden_size})")
    axes.legend(loc="lower right", fontsize="small")
    save_figure(figure, args, "tagging_accuracy")
    report("tagging", **results)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--bidirectional", choices=["both", "yes", "no"], default="both",
                   help="train the bidirectional tagger, the unidirectional one, or both (default)")
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--steps", type=int, default=300, help="Adam steps per model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden-size", type=int, default=32)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-length", type=int, default=20, help="sentences have 4 to this many words")
    p.add_argument("--train-size", type=int, default=2000, help="training sentences")
    p.add_argument("--test-size", type=int, default=500, help="held-out sentences")
    p.add_argument("--eval-every", type=int, default=10)
    main(p.parse_args())
