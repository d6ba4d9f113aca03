"""Next-value prediction on a noisy sum of sines: a feed-forward net over a sliding window of the
last L values against a recurrent net (GRU or LSTM) reading the same L values one at a time.

The signal is three sines of incommensurate periods plus Gaussian noise; both models see the L
noisy values before time t and predict the noisy value at t, so the best possible test MSE is the
noise variance (--noise squared). Short windows hold too little to pin the three phases down or to
average the noise away; longer ones help both models. The MLP pays for every extra input with a
row of first-layer weights, while the recurrent net has the same parameters at every L.

What to look at in --out:
  timeseries_error.png        test MSE against L for both (left, log scale), beside the least-squares
                              linear predictor over the same window, the noise floor and the signal's
                              variance; the parameter count against L (right)
  timeseries_predictions.png  the best MLP and the best RNN predicting a stretch of the test series

    python examples/timeseries.py [--lengths 2 4 8 16 32] [--steps 800] [--cell gru] [--seed 0]

The results line gives, per L, each model's test MSE and parameter count and the least-squares MSE,
and the noise floor and the variance of the noise-free signal. (A clean sum of k sines obeys a linear
recurrence of order 2k, so the linear predictor is strong here: the nets should reach it, not beat it
by much.)
"""
import numpy as np

import tinygrad_rnn as tg
from common import parser, progress, pyplot, report, save_figure, setup
from tinygrad_rnn import nn, optim

PERIODS, AMPLITUDES = (23.0, 37.0, 61.0), (1.0, 0.6, 0.4)


def window_mlp(window, hidden_size=64):
    """(B, L) window -> (B, 1) next value."""
    return nn.Sequential(nn.Linear(window, hidden_size), nn.Tanh(),
                         nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))


class Reader(nn.Module):
    """(B, L) window, read as a sequence (L, B, 1) -> (B, 1) next value from the last hidden state."""

    def __init__(self, cell="gru", hidden_size=32):
        super().__init__()
        self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](1, hidden_size)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, window):
        output, _ = self.rnn(window.T.unsqueeze(-1))
        return self.head(output[-1])


def sum_of_sines(rng, length, noise):
    """(clean, noisy) series of `length` values, with random phases."""
    t = np.arange(length)[:, None]
    phases = rng.uniform(0, 2 * np.pi, size=len(PERIODS))
    clean = (np.array(AMPLITUDES) * np.sin(2 * np.pi * t / np.array(PERIODS) + phases)).sum(1)
    return clean.astype(np.float32), (clean + noise * rng.standard_normal(length)).astype(np.float32)


def windows(series, window, first):
    """Inputs (N, window) = series[t - window : t] and targets (N, 1) = series[t], for t >= first: every
    window length predicts the same targets."""
    views = np.lib.stride_tricks.sliding_window_view(series[:-1], window)[first - window:]
    return views, series[first:, None]


def fit(model, train, test, args, rng, desc):
    """Adam on random minibatches of training windows; returns the test MSE and predictions."""
    (x_train, y_train), (x_test, y_test) = train, test
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    for _ in progress(range(args.steps), args, desc=desc, leave=False):
        batch = rng.integers(len(x_train), size=args.batch_size)
        loss = nn.functional.mse_loss(model(tg.tensor(x_train[batch])), tg.tensor(y_train[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with tg.no_grad():
        predictions = model(tg.tensor(x_test)).numpy()
    return float(((predictions - y_test) ** 2).mean()), predictions[:, 0]


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def least_squares_mse(train, test):
    """Test MSE of the least-squares linear map from window to next value, for reference: a clean sum
    of k sines obeys a linear recurrence of order 2k, so with noise this is already a strong predictor
    and what the nets should reach."""
    (x_train, y_train), (x_test, y_test) = train, test
    ones = np.ones((len(x_train), 1), np.float32), np.ones((len(x_test), 1), np.float32)
    weights = np.linalg.lstsq(np.hstack([x_train, ones[0]]), y_train, rcond=None)[0]
    return float(((np.hstack([x_test, ones[1]]) @ weights - y_test) ** 2).mean())


def plot(results, clean_test, noisy_test, best, floors, args):
    plt = pyplot()
    from matplotlib import ticker  # after pyplot(), which picks the headless backend
    names = {"mlp": "MLP", "rnn": args.cell.upper()}
    lengths = args.lengths
    figure, (error, size) = plt.subplots(1, 2, figsize=(11, 4))
    for name, marker in (("mlp", "o"), ("rnn", "s")):
        label = f"{names[name]} {'over' if name == 'mlp' else 'reading'} the window"
        error.plot(lengths, results[f"{name}_mse"], marker=marker, label=label)
        size.plot(lengths, results[f"{name}_params"], marker=marker, label=label)
    error.plot(lengths, results["linear_mse"], color="grey", label="least squares over the window")
    error.axhline(floors["noise"], color="grey", linestyle=":", label="noise variance (the floor)")
    error.axhline(floors["signal"], color="grey", linestyle="--", label="variance of the clean signal")
    error.set(xscale="log", yscale="log", xlabel="window length L", ylabel="test MSE", title="error")
    size.set(xscale="log", xlabel="window length L", ylabel="trainable parameters", title="size")
    error.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 4.0, 6.0)))
    error.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    error.yaxis.set_minor_locator(ticker.NullLocator())
    for axes in (error, size):
        axes.set_xticks(lengths, [str(n) for n in lengths])
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.legend(fontsize=8)
    save_figure(figure, args, "timeseries_error")

    shown = slice(0, min(150, len(clean_test)))
    figure, axes = plt.subplots(figsize=(11, 3.5))
    steps = np.arange(len(clean_test))[shown]
    axes.plot(steps, noisy_test[shown], ".", color="grey", markersize=3, label="observed (noisy)")
    axes.plot(steps, clean_test[shown], color="black", linewidth=1, label="clean signal")
    for name, (_, window, values) in best.items():
        axes.plot(steps, values[shown], label=f"{names[name]}, L={window}")
    axes.set(xlabel="test step", ylabel="value", title="next-value predictions, best window of each")
    axes.legend(fontsize=8, ncol=4)
    save_figure(figure, args, "timeseries_predictions")


def main(args):
    rng = setup(args)
    first = max(args.lengths)
    clean_train, noisy_train = sum_of_sines(rng, args.train_length + first, args.noise)
    clean_test, noisy_test = sum_of_sines(rng, args.test_length + first, args.noise)
    results = {f"{name}_{what}": [] for name in ("mlp", "rnn") for what in ("mse", "params")}
    results["linear_mse"] = []
    best = {}
    models = {"mlp": lambda window: window_mlp(window, args.mlp_hidden),
              "rnn": lambda window: Reader(args.cell, args.hidden)}  # the same size at every L
    for window in progress(args.lengths, args, desc="window lengths"):
        train, test = windows(noisy_train, window, first), windows(noisy_test, window, first)
        results["linear_mse"].append(round(least_squares_mse(train, test), 6))
        for name, make in models.items():
            model = make(window)
            batches = np.random.default_rng([args.seed, window])
            mse, predicted = fit(model, train, test, args, batches, f"{name} L={window}")
            results[f"{name}_mse"].append(round(mse, 6))
            results[f"{name}_params"].append(parameter_count(model))
            if mse < best.get(name, (np.inf,))[0]:
                best[name] = (mse, window, predicted)
    floors = {"noise": args.noise**2, "signal": float(clean_test.var())}
    plot(results, clean_test[first:], noisy_test[first:], best, floors, args)
    report("timeseries", lengths=args.lengths, noise_variance=floors["noise"], signal_variance=floors["signal"],
           best_mlp_length=best["mlp"][1], best_rnn_length=best["rnn"][1], **results)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--lengths", type=int, nargs="+", default=[2, 4, 8, 16, 32], help="window lengths L")
    p.add_argument("--steps", type=int, default=800, help="Adam steps per model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--cell", choices=["gru", "lstm"], default="gru")
    p.add_argument("--hidden", type=int, default=32, help="the recurrent net's hidden size")
    p.add_argument("--mlp-hidden", type=int, default=64, help="the MLP's two hidden layers")
    p.add_argument("--noise", type=float, default=0.2, help="std of the observation noise")
    p.add_argument("--train-length", type=int, default=4000, help="training series length")
    p.add_argument("--test-length", type=int, default=1000, help="test series length")
    main(p.parse_args())
