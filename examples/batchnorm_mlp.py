"""Batch normalisation at toy scale: the first figure of Ioffe & Szegedy (2015) on scikit-learn's
8x8 digits instead of MNIST.

Two MLPs, 64 -> 100 -> 100 -> 100 -> 10 with sigmoid units, the same plain Gaussian init (std 0.1)
and the same SGD, one of them with BatchNorm1d before every sigmoid. Without BN the small weights
shrink the signal layer by layer, so the gradients reaching the lower layers are tiny and the net
takes hundreds of steps to get going, and the distribution of each layer's input keeps drifting
while the layers below it learn. With BN each layer's input is held at zero mean and unit variance
over the batch (then scaled and shifted by learned parameters), whatever the layers below do.

What to look at in --out:
  batchnorm_accuracy.png     test accuracy against training steps, with and without BN: BN learns faster
  batchnorm_activations.png  the 15th/50th/85th percentiles of one unit's input to its sigmoid in
                             the last hidden layer, over the test set, as training goes: without BN
                             they wander, with BN they stay put

    python examples/batchnorm_mlp.py [--steps 2000] [--lr 0.5] [--batch-size 60] [--seed 0]

The results line gives each net's final test accuracy and the first evaluated step at which it
reached --target accuracy (null if never).
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tinygrad_rnn as tg
from common import parser, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import nn, optim


def mlp(batch_norm, hidden=100, layers=3, init_std=0.1):
    """Linear -> [BatchNorm1d] -> Sigmoid, `layers` times, then a Linear to the 10 classes."""
    blocks, width = [], 64
    for _ in range(layers):
        linear = nn.Linear(width, hidden)
        nn.init.normal_(linear.weight, std=init_std)  # the paper's "small random Gaussian", not fan-in scaled
        blocks += [linear, nn.BatchNorm1d(hidden)] if batch_norm else [linear]
        blocks.append(nn.Sigmoid())
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def digits(rng, test_size):
    """Standardised pixels (fit on the training split only) and labels, split with the seed."""
    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images.astype(np.float32), labels, test_size=test_size, random_state=int(rng.integers(2**31)),
        stratify=labels)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # corner pixels are always 0
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def evaluate(model, x_test, y_test, unit):
    """Test accuracy and the percentiles of `unit`'s input to the last sigmoid, in eval mode."""
    seen = {}
    last_sigmoid = [m for m in model if isinstance(m, nn.Sigmoid)][-1]
    handle = last_sigmoid.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    model.eval()
    with tg.no_grad():
        predicted = model(tg.tensor(x_test)).argmax(-1).numpy()
    model.train()
    handle.remove()
    return float((predicted == y_test).mean()), np.percentile(seen["x"].numpy()[:, unit], [15, 50, 85])


def train(model, data, args, rng, label):
    """SGD on cross-entropy; every --eval-every steps the test accuracy and the percentiles."""
    x_train, y_train, x_test, y_test = data
    optimizer = optim.SGD(model.parameters(), lr=args.lr)
    history = {"step": [], "accuracy": [], "percentiles": []}
    for step in progress(range(args.steps + 1), args, desc=label):
        if step % args.eval_every == 0:
            accuracy, percentiles = evaluate(model, x_test, y_test, args.unit)
            history["step"].append(step)
            history["accuracy"].append(accuracy)
            history["percentiles"].append(percentiles)
        if step == args.steps:
            break
        batch = rng.integers(len(x_train), size=args.batch_size)
        loss = nn.functional.cross_entropy(model(tg.tensor(x_train[batch])), tg.tensor(y_train[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return history


def steps_to(history, target):
    return next((s for s, a in zip(history["step"], history["accuracy"]) if a >= target), None)


def plot(histories, args):
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, history in histories.items():
        axes.plot(history["step"], history["accuracy"], label=label)
    axes.axhline(args.target, color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1),
             title="3 sigmoid layers of 100 on digits, SGD")
    axes.legend()
    accuracy = save_figure(figure, args, "batchnorm_accuracy")

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for panel, (label, history) in zip(axes, histories.items()):
        low, median, high = np.array(history["percentiles"]).T
        panel.fill_between(history["step"], low, high, alpha=0.25)
        for values in (low, median, high):
            panel.plot(history["step"], values, color="C0")
        panel.set(title=label, xlabel="training step")
    axes[0].set_ylabel(f"input to sigmoid (unit {args.unit}, last hidden layer)\n15th / 50th / 85th percentile")
    return accuracy, save_figure(figure, args, "batchnorm_activations")


def main(args):
    rng = setup(args)
    data = digits(rng, args.test_size)
    histories = {}
    for label, batch_norm in (("without BN", False), ("with BN", True)):
        model = mlp(batch_norm, args.hidden, args.layers, args.init_std)
        histories[label] = train(model, data, args, np.random.default_rng(args.seed + 1), label)
    plot(histories, args)
    plain, bn = histories["without BN"], histories["with BN"]
    report("batchnorm_mlp", steps=args.steps, chance=0.1, target=args.target,
           accuracy_no_bn=plain["accuracy"][-1], accuracy_bn=bn["accuracy"][-1],
           steps_to_target_no_bn=steps_to(plain, args.target), steps_to_target_bn=steps_to(bn, args.target))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=2000, help="SGD steps for each net")
    p.add_argument("--batch-size", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--hidden", type=int, default=100, help="units per hidden layer")
    p.add_argument("--layers", type=int, default=3, help="hidden layers")
    p.add_argument("--init-std", type=float, default=0.1, help="std of the Gaussian weight init")
    p.add_argument("--unit", type=int, default=0, help="which unit of the last hidden layer to follow")
    p.add_argument("--test-size", type=float, default=0.3, help="fraction of the digits held out")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--target", type=float, default=0.9, help="accuracy for steps_to_target")
    main(p.parse_args())
