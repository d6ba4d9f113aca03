"""A new recurrent cell in a few lines: a Jordan network (Jordan 1986), trained and drawn like the built-in ones.

An Elman network (nn.RNN) hands its hidden layer on to the next step; a Jordan network hands on
its *output*:

    h⟨t⟩ = tanh(W_x x⟨t⟩ + W_y y⟨t−1⟩ + b)
    y⟨t⟩ = W_o h⟨t⟩ + c                       y⟨−1⟩ = 0

The cell is the `Jordan` module below: five parameters and a `step` that runs inside
`with tg.scope("jordan"):` and marks the state it hands on with `tg.autograd.mark(y, "h")`.
That is all the renderer needs: each entry of the scope becomes a time step, the marked tensor
the recurrent state, so the unrolled graph is drawn with one column per step and a "jordan" lane
in each, as nn.RNNCell's is (tinygrad_rnn/viz/graph.py says how steps are found).

The task: predict the next value of sine waves of random phase and frequency. Copying the current
value scores the "persistence" MSE; the same cell with W_y held at zero (no feedback: a per-step
MLP of x⟨t⟩ alone) can do no better, since x⟨t⟩ alone does not say whether the wave is rising or
falling. The fed-back prediction y⟨t−1⟩ does: the trained Jordan net beats both.

What to look at, in --out:
  jordan-loss.png          training loss with and without the feedback, and the persistence baseline
  jordan-op.dot/.svg       the unrolled graph of --graph-steps steps, every op, with the path from the
                           loss back to the feedback weight W_y in red (.svg when graphviz's dot is installed)
  jordan-cell.dot/.svg     the same at cell detail: one node per step, y⟨t⟩ feeding the next
  jordan-flow.png          ‖∂L/∂y⟨t⟩‖ against t for the last step's error: how far back it reaches

    python examples/jordan.py            # about 10 seconds on 2 CPU cores
    python examples/jordan.py --docs     # the same run, its pictures into docs/img/examples/jordan/
"""
import math
import shutil
from pathlib import Path

import numpy as np

from common import parser, progress, pyplot, report, save_figure, setup

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim, viz

# beside the other examples' figures (docs/img/examples/<name>/), where the graph pictures' check doesn't look
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img" / "examples" / "jordan"


class Jordan(nn.Module):
    """x (T, B, input_size) -> y (T, B, output_size); the state carried between steps is y itself."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.weight_x = nn.Parameter(tg.zeros(hidden_size, input_size))
        self.weight_y = nn.Parameter(tg.zeros(hidden_size, output_size))
        self.bias = nn.Parameter(tg.zeros(hidden_size))
        self.weight_o = nn.Parameter(tg.zeros(output_size, hidden_size))
        self.bias_o = nn.Parameter(tg.zeros(output_size))
        for p in self.parameters():  # torch's init for its recurrent cells
            nn.init.uniform_(p, -1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))

    def step(self, x, y):
        """x⟨t⟩ (B, input_size), y⟨t−1⟩ (B, output_size) -> y⟨t⟩ (B, output_size)."""
        with tg.scope("jordan"):  # one entry per call: the renderer's time step
            # the recurrent term first: the renderer draws the initial state's cut into the step's
            # first op computed from parameters alone, which should be the one that read y⟨t−1⟩
            h = (y @ self.weight_y.T + x @ self.weight_x.T + self.bias).tanh()
            y_next = h @ self.weight_o.T + self.bias_o
            # "h" is the renderer's name for the state a step hands on; a state with no graph
            # behind it (the initial zeros) is drawn as a cut, where backward stops
            return tg.autograd.mark(y_next, "h", None if y.requires_grad else "zero")

    def forward(self, x):
        y = tg.zeros(x.shape[1], self.bias_o.shape[0], dtype=x.dtype)
        outputs = []
        for t in range(x.shape[0]):
            y = self.step(x[t], y)
            outputs.append(y)
        return tg.stack(outputs)


def sine_waves(rng, length, batch):
    """Inputs s⟨0..T−1⟩ and targets s⟨1..T⟩, each (T, B, 1), of sin(ωt + φ) with ω and φ per wave."""
    omega = rng.uniform(0.1, 0.3, size=batch)
    phase = rng.uniform(0.0, 2 * np.pi, size=batch)
    waves = np.sin(np.arange(length + 1)[:, None] * omega + phase)[..., None].astype(np.float32)
    return tg.tensor(waves[:-1]), tg.tensor(waves[1:])


def train(model, parameters, args, desc):
    """Adam on fresh waves at every step -> the training losses."""
    rng = np.random.default_rng([args.seed, 1])  # both runs see the same waves
    optimizer = optim.Adam(parameters, lr=args.lr)
    losses = []
    for _ in progress(range(args.steps), args, desc=desc):
        x, target = sine_waves(rng, args.length, args.batch_size)
        loss = nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def held_out_mse(model, x, target):
    with tg.no_grad():
        return nn.functional.mse_loss(model(x), target).item()


def draw(model, args):
    """The unrolled graph of a short sequence at op and cell detail, the path to W_y in red ->
    the .dot files written (and an .svg beside each when the dot binary is installed)."""
    x, target = sine_waves(np.random.default_rng([args.seed, 3]), args.graph_steps, 2)
    loss = nn.functional.mse_loss(model(x), target)  # drawn before any backward: highlight needs the graph
    written = []
    for detail in ("op", "cell"):
        options = dict(params=model, detail=detail, highlight="weight_y",
                       title=f"Jordan network, {args.graph_steps} steps, in red: the gradient's path to W_y")
        path = args.out / f"jordan-{detail}.dot"
        path.write_text(viz.to_dot(loss, **options), encoding="utf-8")
        if shutil.which("dot"):
            path.with_suffix(".svg").write_bytes(viz.make_dot(loss, **options).pipe(format="svg"))
        written.append(path)
    return written


def plot_flow(model, args):
    """‖∂L⟨T−1⟩/∂y⟨t⟩‖ against t from the renderer's trace: the last prediction's error, sent back
    through the fed-back outputs."""
    x, target = sine_waves(np.random.default_rng([args.seed, 4]), args.length, args.batch_size)
    last = nn.functional.mse_loss(model(x)[-1], target[-1])
    trace = viz.trace_backward(last, model)
    model.zero_grad()
    figure = viz.plot_grad_flow(trace, title="the last step's error, reaching back through y⟨t⟩")
    save_figure(figure, args, "jordan-flow")
    return trace.hidden_norms()["jordan"]


def plot_losses(runs, persistence, args):
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for name, losses in runs.items():
        ax.plot(losses, label=name, alpha=0.9)
    ax.axhline(persistence, color="grey", linestyle="--", label="copy x⟨t⟩ (persistence)")
    ax.set(yscale="log", xlabel="step", ylabel="training MSE", title="next value of a sine wave")
    ax.legend()
    save_figure(figure, args, "jordan-loss")


def main(args):
    if args.docs:
        args.out = DOCS_IMG
    setup(args)
    x, target = sine_waves(np.random.default_rng([args.seed, 2]), args.length, 512)
    persistence = nn.functional.mse_loss(x, target).item()

    tg.manual_seed(args.seed)
    model = Jordan(1, args.hidden, 1)
    losses = train(model, model.parameters(), args, desc="jordan")

    tg.manual_seed(args.seed)  # the same draw, then W_y pinned at zero and left out of the optimiser
    no_feedback = Jordan(1, args.hidden, 1)
    nn.init.zeros_(no_feedback.weight_y)
    ablation = train(no_feedback, [p for n, p in no_feedback.named_parameters() if n != "weight_y"], args,
                     desc="no feedback")

    plot_losses({"Jordan": losses, "W_y = 0 (no feedback)": ablation}, persistence, args)
    dots = draw(model, args)
    flow = plot_flow(model, args)
    report("jordan", first_loss=losses[0], final_loss=float(np.mean(losses[-20:])),
           held_out_mse=held_out_mse(model, x, target), no_feedback_mse=held_out_mse(no_feedback, x, target),
           persistence_mse=persistence, dot=[p.name for p in dots],
           # the factor ‖∂L/∂y⟨t⟩‖ shrinks by per step back, on average: how short the feedback's memory is
           flow_per_step=(flow[0] / flow[-1]) ** (1 / (len(flow) - 1)),
           svg=bool(shutil.which("dot")))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=300, help="Adam steps per run (default 300)")
    p.add_argument("--length", type=int, default=30, help="steps per training sequence")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--graph-steps", type=int, default=4, help="steps in the drawn graph")
    p.add_argument("--docs", action="store_true", help=f"write the pictures to {DOCS_IMG} (for docs/jordan.md)")
    main(p.parse_args())
