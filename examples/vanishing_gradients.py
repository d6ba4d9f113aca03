"""Vanishing and exploding gradients on the adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

The task: a sequence of T steps, each step two numbers: a value drawn from U(0, 1) and a marker
that is 1 at exactly two steps (one in the first half, one in the second) and 0 elsewhere. After
the last step the network must output the sum of the two marked values. Predicting 1.0 whatever
the input scores an MSE of 1/6 (the variance of the sum): the metric here is the MSE divided by
that trivial baseline, so 1.0 means "learned nothing" and 0.0 is perfect.

Four cells, the same head, the same batches:
  rnn    nn.RNN, tanh, torch's init
  irnn   nn.RNN(nonlinearity="relu") with nn.init_irnn_: W_hh = I, biases 0 (Le et al. 2015)
  lstm   nn.LSTM with the forget gate's bias set to --forget-bias (1 by default; torch's 0 leaves the
         gate half shut, f = 0.5, and the cell then forgets at the rate a tanh RNN does: try 0)
  gru    nn.GRU

What to look at, in --out:
  gradient_flow.png   ‖∂L/∂h⟨t⟩‖ against t at the longest length, from viz.trace_backward (the loss
                      is read after the last step, so this is how much of it reaches each step): at
                      init the tanh RNN's falls by ten orders of magnitude on its way back to t = 0,
                      the IRNN's barely moves, the LSTM's falls far less than the RNN's; after
                      training, the cells that learned are the ones whose gradient reaches t = 0
  length.png          error against sequence length after the same number of steps for every cell:
                      the tanh RNN is back at the baseline from T = 20 on
  exploding.png       a tanh RNN whose W_hh is orthogonal times 2, trained by plain SGD with and
                      without nn.utils.clip_grad_norm_: unclipped, the gradient norm spikes and the
                      run diverges (its loss reaches inf/NaN, where the curve stops); clipped, it trains

    python examples/vanishing_gradients.py                 # about 1.5 minutes on 2 CPU cores
    python examples/vanishing_gradients.py --lengths 10 30 60 --steps 400 --forget-bias 0
"""
import math

import numpy as np

from common import parser, progress, pyplot, report, save_figure, setup

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim, viz

CELLS = ("rnn", "irnn", "lstm", "gru")
# the IRNN's unbounded ReLU state wants a smaller step than the squashing cells (at 1e-2 it learned
# nothing from T = 30 on, in a run of 400 steps)
LEARNING_RATES = {"rnn": 1e-2, "irnn": 3e-3, "lstm": 1e-2, "gru": 1e-2}
EVAL_BATCH = 512
TRACE_BATCH = 64  # how the norms fall along t hardly depends on the batch; the cost of tracing does


def adding_batch(rng, length, batch):
    """x (T, B, 2): a value and a marker per step; y (B, 1): the sum of the two marked values."""
    values = rng.random((length, batch))
    first = rng.integers(0, length // 2, size=batch)
    second = rng.integers(length // 2, length, size=batch)
    markers = np.zeros((length, batch))
    columns = np.arange(batch)
    markers[first, columns] = markers[second, columns] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[first, columns] + values[second, columns])[:, None].astype(np.float32)
    return tg.tensor(x), tg.tensor(y)


class Adder(nn.Module):
    """A recurrent layer read out once, after the last step: (T, B, 2) -> (B, 1)."""

    def __init__(self, cell, hidden_size, forget_bias=1.0):
        super().__init__()
        if cell == "irnn":
            self.rnn = nn.init_irnn_(nn.RNN(2, hidden_size, nonlinearity="relu"))
        else:
            self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](2, hidden_size)
        if cell == "lstm":  # gate order i, f, g, o: the forget gate's bias is the second quarter
            self.rnn.bias_ih_l0.data[hidden_size:2 * hidden_size] = forget_bias
            self.rnn.bias_hh_l0.data[hidden_size:2 * hidden_size] = 0.0
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        output, _ = self.rnn(x)
        return self.head(output[-1])


def hidden_norms(model, x, y):
    """‖∂L/∂h⟨t⟩‖ for t = 0..T-1 for one batch, from the renderer's trace of a backward pass."""
    trace = viz.trace_backward(nn.functional.mse_loss(model(x), y), model)
    (norms,) = trace.hidden_norms().values()  # one layer, one direction: one lane
    model.zero_grad()
    return norms


def train(model, optimizer, rng, length, steps, args, clip, desc=""):
    """`steps` steps on fresh batches -> (losses, gradient norms before clipping). Stops at the
    first non-finite loss or norm: a diverged run has nothing left to learn."""
    losses, norms = [], []
    for _ in progress(range(steps), args, desc=desc):
        x, y = adding_batch(rng, length, args.batch_size)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        # with max_norm=inf clip_grad_norm_ only measures, so both runs report their norm alike
        norms.append(nn.utils.clip_grad_norm_(model.parameters(), clip).item())
        losses.append(loss.item())
        if not (math.isfinite(losses[-1]) and math.isfinite(norms[-1])):
            break
        optimizer.step()
    return losses, norms


def relative_mse(model, x, y):
    """MSE over the trivial baseline's (always predicting 1.0): 1 = learned nothing."""
    with tg.no_grad():
        return nn.functional.mse_loss(model(x), y).item() / nn.functional.mse_loss(tg.ones_like(y), y).item()


def compare_cells(args):
    """Train every cell at every length -> (relative MSE per cell and length, hidden norms at the
    longest length at init and after training, per cell)."""
    longest = max(args.lengths)
    errors, at_init, trained = {}, {}, {}
    for cell in args.cells:
        for length in args.lengths:
            tg.manual_seed(args.seed)  # every cell starts from the same draw at every length
            model = Adder(cell, args.hidden, args.forget_bias)
            held_out = adding_batch(np.random.default_rng([args.seed, length, 1]), length, EVAL_BATCH)
            probe = adding_batch(np.random.default_rng([args.seed, length, 2]), length, TRACE_BATCH)
            if length == longest:
                at_init[cell] = hidden_norms(model, *probe)
            optimizer = optim.Adam(model.parameters(), lr=LEARNING_RATES[cell])
            train(model, optimizer, np.random.default_rng([args.seed, length]), length, args.steps, args,
                  clip=args.clip, desc=f"{cell} T={length}")
            errors.setdefault(cell, {})[str(length)] = relative_mse(model, *held_out)
            if length == longest:
                trained[cell] = hidden_norms(model, *probe)
    return errors, at_init, trained


def exploding(args):
    """The same tanh RNN (W_hh orthogonal x 2: spectral radius 2) trained by SGD twice, once
    clipped at --clip and once not -> {"clipped": (losses, norms), "unclipped": (losses, norms)}."""
    runs = {}
    for name, clip in (("unclipped", math.inf), ("clipped", args.clip)):
        tg.manual_seed(args.seed)
        model = Adder("rnn", args.hidden)
        nn.init.orthogonal_(model.rnn.weight_hh_l0, gain=2.0)
        optimizer = optim.SGD(model.parameters(), lr=args.explode_lr)
        # the unclipped run overflows float32 on purpose; train() stops at the first inf/NaN it sees
        with np.errstate(over="ignore", invalid="ignore"):
            runs[name] = train(model, optimizer, np.random.default_rng([args.seed, 2]), args.explode_length,
                               args.explode_steps, args, clip=clip, desc=f"exploding, {name}")
    return runs


def plot_gradient_flow(at_init, trained, args):
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, norms, when in ((axes[0], at_init, "at init"), (axes[1], trained, f"after {args.steps} steps")):
        for cell, values in norms.items():
            steps = [t for t, v in enumerate(values) if v > 0]  # an underflowed zero has no log
            ax.plot(steps, [values[t] for t in steps], marker="o", markersize=2, label=cell)
        ax.set(yscale="log", xlabel="time step t", title=f"‖∂L/∂h⟨t⟩‖, T = {max(args.lengths)}, {when}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("gradient norm (the loss sits after t = T-1)")
    axes[0].legend()
    return save_figure(figure, args, "gradient_flow")


def plot_lengths(errors, args):
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for cell, by_length in errors.items():
        ax.plot(args.lengths, [by_length[str(n)] for n in args.lengths], marker="o", label=cell)
    ax.axhline(1.0, color="grey", linestyle="--", label="predict 1.0")
    ax.set(xlabel="sequence length T", ylabel="MSE / baseline MSE", ylim=(0, None),
           title=f"adding problem after {args.steps} steps")
    ax.legend()
    return save_figure(figure, args, "length")


def plot_exploding(runs, args):
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for name, (losses, norms) in runs.items():
        for ax, values in ((axes[0], losses), (axes[1], norms)):
            finite = [v for v in values if math.isfinite(v)]
            line, = ax.plot(finite, label=name)
            if len(finite) < len(values):
                ax.plot(len(finite) - 1, finite[-1], "x", color=line.get_color(), markersize=10,
                        label=f"{name}: inf/NaN at step {len(finite)}")
    axes[0].axhline(1 / 6, color="grey", linestyle=":", label="predict 1.0")
    axes[1].axhline(args.clip, color="grey", linestyle="--", label=f"clip at {args.clip}")
    axes[0].set(yscale="log", xlabel="step", ylabel="training MSE", title="loss")
    axes[1].set(yscale="log", xlabel="step", ylabel="‖∇‖ before clipping", title="gradient norm")
    for ax in axes:
        ax.legend(fontsize="small", loc="center right")  # clear of both runs: the unclipped ends top middle
    figure.suptitle(f"tanh RNN, W_hh = 2 x orthogonal, SGD lr {args.explode_lr}, T = {args.explode_length}")
    return save_figure(figure, args, "exploding")


def summarise(runs):
    """What the exploding runs did, in numbers that JSON can carry (no inf/NaN)."""
    (unclipped_losses, unclipped_norms), (clipped_losses, clipped_norms) = runs["unclipped"], runs["clipped"]
    diverged = not all(math.isfinite(v) for v in unclipped_losses + unclipped_norms)
    return {
        "unclipped_diverged_at": len(unclipped_losses) - 1 if diverged else None,
        "unclipped_max_grad_norm": max(v for v in unclipped_norms if math.isfinite(v)),
        "clipped_losses_finite": all(math.isfinite(v) for v in clipped_losses),
        "clipped_first_loss": clipped_losses[0],
        "clipped_final_loss": float(np.mean(clipped_losses[-20:])),
        "clipped_max_grad_norm": max(clipped_norms),
    }


def main(args):
    setup(args)
    errors, at_init, trained = compare_cells(args)
    runs = exploding(args)
    plot_gradient_flow(at_init, trained, args)
    plot_lengths(errors, args)
    plot_exploding(runs, args)
    ratio = {cell: norms[0] / norms[-1] for cell, norms in at_init.items()}
    report("vanishing_gradients", relative_mse=errors, grad_ratio_at_init=ratio,
           grad_ratio_trained={cell: norms[0] / norms[-1] for cell, norms in trained.items()},
           exploding=summarise(runs), longest=max(args.lengths))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40], help="sequence lengths T")
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    p.add_argument("--steps", type=int, default=600, help="Adam steps per cell and length (default 600)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--forget-bias", type=float, default=1.0, help="the LSTM forget gate's initial bias")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm of the clipped runs")
    p.add_argument("--explode-length", type=int, default=10)
    p.add_argument("--explode-steps", type=int, default=300)
    # 0.1, not less: at 0.05 whether the unclipped run blows up within 300 steps hangs on float32
    # rounding (it did on the op-by-op engine and did not on the fused cells); at 0.1 it does by step ~30
    p.add_argument("--explode-lr", type=float, default=0.1, help="SGD step of the exploding runs")
    arguments = p.parse_args()
    if min(arguments.lengths) < 2:
        p.error("every length needs at least 2 steps: one marker in each half")
    main(arguments)
