"""Training step of a character-level LSTM: tinygrad_rnn against torch and a hand-written numpy floor.

    python benchmarks/rnn.py [--steps 10] [--warmup 1] [--hidden 128 512] [--threads N]

Model: one-hot characters (vocab 65) -> LSTM(65, hidden) -> Linear(hidden, 65) -> cross-entropy
(mean over batch 32 x 64 steps); then clip_grad_norm_(5) and an Adam step. All float32.
Implementations, on the same weights and data:
  tinygrad_rnn       nn.LSTM, nn.Linear, nn.functional.cross_entropy, nn.utils.clip_grad_norm_, optim.Adam
  torch nn.LSTM      the fused C++ layer
  torch LSTMCell     nn.LSTMCell called in a Python loop over time
  numpy manual       benchmarks/numpy_lstm.py: hand-written BPTT, the practical floor for a numpy engine
torch runs with as many threads as numpy's BLAS (--threads overrides both when threadpoolctl is
installed). Before timing, the numpy floor's gradients are checked against tinygrad_rnn's in float64.
"""
import argparse
import time

import numpy as np
import numpy_lstm

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

VOCAB, BATCH, STEPS, CLIP, LR = 65, 32, 64, 5.0, 2e-3


class CharLSTM(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lstm = nn.LSTM(VOCAB, hidden)
        self.decoder = nn.Linear(hidden, VOCAB)

    def forward(self, inputs):
        out, _ = self.lstm(inputs)
        return self.decoder(out.reshape(-1, out.shape[-1]))


def numpy_name(name):
    """'lstm.weight_ih_l0' -> 'weight_ih', 'decoder.bias' -> 'bias' (numpy_lstm's names; torch's cell names)."""
    attr = name.split(".")[-1]
    return attr[:-3] if attr.endswith("_l0") else attr


def numpy_params(model):
    """Our model's weights under numpy_lstm's names, as fresh arrays."""
    return {numpy_name(k): np.array(v) for k, v in model.state_dict().items()}


def make_data(rng, dtype=np.float32, steps=STEPS, batch=BATCH):
    tokens = rng.integers(0, VOCAB, size=(steps + 1, batch))
    inputs = np.eye(VOCAB, dtype=dtype)[tokens[:-1]]
    return inputs, tokens[1:]


# ---- one training step per implementation ------------------------------------------------

def tinygrad_step(hidden, inputs, targets):
    model = CharLSTM(hidden)
    opt = optim.Adam(model.parameters(), lr=LR)
    x, y = tg.tensor(inputs), tg.tensor(targets.reshape(-1))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        return loss.item()
    return step, model


def torch_step(torch, recurrent, inputs, targets, weights):
    """recurrent: torch's nn.LSTM (the fused layer) or nn.LSTMCell (called in a Python loop over time)."""
    hidden = recurrent.hidden_size
    decoder = torch.nn.Linear(hidden, VOCAB)
    _load_torch(torch, recurrent, decoder, weights)
    params = list(recurrent.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    x, y = torch.tensor(inputs), torch.tensor(targets.reshape(-1))

    def sequence():
        if isinstance(recurrent, torch.nn.LSTM):
            return recurrent(x)[0]
        h = c = torch.zeros(BATCH, hidden)
        outputs = []
        for t in range(x.shape[0]):
            h, c = recurrent(x[t], (h, c))
            outputs.append(h)
        return torch.stack(outputs)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(decoder(sequence().reshape(-1, hidden)), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return loss.item()
    return step


def _load_torch(torch, recurrent, decoder, weights):
    with torch.no_grad():
        for name, p in recurrent.named_parameters():
            p.copy_(torch.tensor(weights[numpy_name(name)]))
        decoder.weight.copy_(torch.tensor(weights["weight"]))
        decoder.bias.copy_(torch.tensor(weights["bias"]))


def numpy_step(weights, inputs, targets):
    params = {k: v.copy() for k, v in weights.items()}
    opt = numpy_lstm.Adam(params, lr=LR)

    def step():
        loss, grads = numpy_lstm.loss_and_grads(params, inputs, targets)
        numpy_lstm.clip_grad_norm_(grads, CLIP)
        opt.step(grads)
        return loss
    return step


# ---- checks and timing ---------------------------------------------------------------------

def check_numpy_floor_gradients():
    """The hand-written BPTT must compute what tinygrad_rnn computes (float64, small sizes)."""
    model = CharLSTM(16).double()
    inputs, targets = make_data(np.random.default_rng(1), np.float64, steps=9, batch=4)
    loss = nn.functional.cross_entropy(model(tg.tensor(inputs)), tg.tensor(targets.reshape(-1)))
    loss.backward()
    ref_loss, grads = numpy_lstm.loss_and_grads(numpy_params(model), inputs, targets)
    np.testing.assert_allclose(ref_loss, loss.item(), rtol=1e-12)
    ours = {numpy_name(name): p.grad.numpy() for name, p in model.named_parameters()}
    assert set(grads) == set(ours)
    for name, grad in ours.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-9, atol=1e-12, err_msg=name)


def time_ms(steps, count, warmup, block=5):
    """{name: (median, min) ms per step}. The implementations take turns in blocks of `block` steps,
    so a change in the machine's load hits them all alike; each block starts with `warmup` untimed
    steps, which also lets the previous library's idle threads go to sleep."""
    times = {name: [] for name in steps}
    while any(len(t) < count for t in times.values()):
        for name, step in steps.items():
            for _ in range(warmup):
                step()
            for _ in range(min(block, count - len(times[name]))):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: (1e3 * float(np.median(t)), 1e3 * float(np.min(t))) for name, t in times.items()}


def blas_threads(requested):
    """Threads numpy's BLAS uses (set to `requested` when given and threadpoolctl is present)."""
    try:
        import threadpoolctl
    except ImportError:
        return requested
    if requested:
        threadpoolctl.threadpool_limits(requested, user_api="blas")
    counts = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return counts[0] if counts else requested


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per implementation")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each block of 5")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: numpy's)")
    args = parser.parse_args()

    check_numpy_floor_gradients()
    threads = blas_threads(args.threads)
    try:
        import torch
        if threads:
            torch.set_num_threads(threads)
    except ImportError:
        torch = None
        print("torch not installed: no torch rows in this run")
    print(f"char-LSTM training step: vocab {VOCAB}, batch {BATCH}, seq {STEPS}, float32, Adam + clip {CLIP}; "
          f"numpy BLAS threads {threads}, torch threads {torch.get_num_threads() if torch else '-'}; "
          f"median (min) of {args.steps} steps")
    print("numpy floor gradients checked against tinygrad_rnn (float64): ok")
    for hidden in args.hidden:
        tg.manual_seed(0)
        inputs, targets = make_data(np.random.default_rng(0))
        ours_step, model = tinygrad_step(hidden, inputs, targets)
        weights = numpy_params(model)  # copied before any step: every implementation starts equal
        steps = {"numpy manual": numpy_step(weights, inputs, targets)}
        if torch is not None:
            steps["torch nn.LSTM"] = torch_step(torch, torch.nn.LSTM(VOCAB, hidden), inputs, targets, weights)
            steps["torch LSTMCell loop"] = torch_step(torch, torch.nn.LSTMCell(VOCAB, hidden), inputs, targets,
                                                      weights)
        steps["tinygrad_rnn"] = ours_step
        first_losses = {name: step() for name, step in steps.items()}  # same weights: same first loss
        spread = max(first_losses.values()) - min(first_losses.values())
        results = time_ms(steps, args.steps, args.warmup)
        print(f"\nhidden {hidden} (first-step losses agree to {spread:.1e})")
        floor = results["numpy manual"][0]
        layer = results.get("torch nn.LSTM", (None,))[0]
        for name, (median, best) in results.items():
            ratios = f"{median / floor:6.2f}x numpy manual"
            if layer:
                ratios += f"   {median / layer:6.2f}x torch nn.LSTM"
            print(f"  {name:20s} {median:9.1f} ms/step ({best:7.1f})   {ratios}")


if __name__ == "__main__":
    main()
