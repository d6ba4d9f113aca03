"""Training step of a BatchNorm MLP: tinygrad_rnn against a hand-written numpy floor (and torch).

    python benchmarks/mlp.py [--steps 20] [--threads N]

Model: Linear(784, 512) -> BatchNorm1d -> ReLU -> Linear(512, 512) -> BatchNorm1d -> ReLU ->
Linear(512, 10) -> cross-entropy (mean over batch 128), then an Adam step. All float32, train mode.
Implementations, on the same weights and data:
  tinygrad_rnn   nn.Sequential of nn.Linear / nn.BatchNorm1d / nn.ReLU, F.cross_entropy, optim.Adam
  tinygrad_rnn numba kernels  the same under tg.kernels("numba"): Adam's update in one JIT pass
                 (tinygrad_rnn/jit/adam.py), when numba is installed (--no-jit leaves it out)
  numpy manual   numpy_mlp.py: hand-written backward, the floor for a numpy engine
  torch          the same model in torch (own block)
The numpy-based ones take turns round by round; torch runs in its own block afterwards.
tests/test_benchmark_references.py checks the numpy floor against tinygrad_rnn on identical weights.
"""
import numpy as np
import numpy_mlp
from common import parser as common_parser
from common import banner, blas_threads, import_torch, jit_row, report, time_ms, under

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

SIZES, BATCH, LR = (784, 512, 512, 10), 128, 1e-3


def build(module):
    """The benchmark's model out of `module` (tinygrad_rnn.nn or torch.nn): one Sequential, so both
    libraries name the parameters alike."""
    a, b, c, d = SIZES
    return module.Sequential(module.Linear(a, b), module.BatchNorm1d(b), module.ReLU(),
                             module.Linear(b, c), module.BatchNorm1d(c), module.ReLU(), module.Linear(c, d))


def make_data(rng, dtype=np.float32, batch=BATCH):
    return rng.standard_normal((batch, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], size=batch)


def state_arrays(model):
    """(parameters, buffers) of our model as fresh numpy arrays, under nn.Sequential's names."""
    state = {k: np.array(v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    params = {k: state.pop(k) for k, _ in model.named_parameters()}
    return params, state


def tinygrad_step(model, x, targets):
    opt = optim.Adam(model.parameters(), lr=LR)
    x, y = tg.tensor(x), tg.tensor(targets)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def numpy_step(params, buffers, x, targets):
    params = {k: v.copy() for k, v in params.items()}
    buffers = {k: v.copy() for k, v in buffers.items()}
    opt = numpy_mlp.Adam(params, lr=LR)

    def step():
        loss, grads = numpy_mlp.loss_and_grads(params, buffers, x, targets)
        opt.step(grads)
        return loss
    return step


def torch_step(torch, params, buffers, x, targets):
    model = build(torch.nn)
    model.load_state_dict({k: torch.tensor(v) for k, v in {**params, **buffers}.items()}, strict=False)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.tensor(x), torch.tensor(targets)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def main():
    parser = common_parser(__doc__, steps=20)
    args = parser.parse_args()

    threads = blas_threads(args.threads)
    torch = import_torch(threads)
    banner(threads, torch)
    tg.manual_seed(0)
    x, targets = make_data(np.random.default_rng(0))
    model = build(nn)
    params, buffers = state_arrays(model)  # copied before any step: every implementation starts equal
    steps = {"numpy manual": numpy_step(params, buffers, x, targets), "tinygrad_rnn": tinygrad_step(model, x, targets)}
    jit = jit_row(args)
    if jit:
        jit_model = build(nn)
        jit_model.load_state_dict(model.state_dict())
        steps["tinygrad_rnn numba kernels"] = under(jit, tinygrad_step(jit_model, x, targets))
    first_losses = {name: step() for name, step in steps.items()}
    results = time_ms(steps, args.steps, args.warmup)
    if torch is not None:
        torch_one = torch_step(torch, params, buffers, x, targets)
        first_losses["torch"] = torch_one()
        results.update(time_ms({"torch": torch_one}, args.steps, args.warmup))
    spread = max(first_losses.values()) - min(first_losses.values())
    print(f"BatchNorm MLP training step: {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, Adam; "
          f"median (min) of {args.steps} steps (first-step losses agree to {spread:.1e})")
    report(results, "numpy manual", "torch" if torch is not None else None)


if __name__ == "__main__":
    main()
