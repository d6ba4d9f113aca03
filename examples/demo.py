"""Flagship demo (until the example gallery lands): an LSTM built from tinygrad_rnn.nn learns
to continue sine waves one step ahead, trained by backpropagation through time with Adam.

    python examples/demo.py [--steps 150]
"""
import argparse

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim


class Forecaster(nn.Module):
    """(T, B, 1) signal -> (T, B, 1) prediction of the next value at every step."""

    def __init__(self, hidden_size=32):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output)


def sine_batch(rng, steps=40, batch=32):
    """Waves of random phase and frequency: inputs x[0..T-1], targets x[1..T]."""
    phase = rng.uniform(0, 2 * np.pi, size=(1, batch, 1))
    frequency = rng.uniform(0.15, 0.35, size=(1, batch, 1))
    wave = np.sin(np.arange(steps + 1)[:, None, None] * frequency + phase).astype(np.float32)
    return tg.tensor(wave[:-1]), tg.tensor(wave[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()

    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Forecaster()
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    print(model)
    for step in range(args.steps + 1):
        inputs, targets = sine_batch(rng)
        loss = nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()  # BPTT through all 40 unrolled steps
        norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 25 == 0:
            print(f"step {step:4d}  mse {loss.item():.5f}  grad norm {norm.item():.3f}")

    model.eval()
    with tg.no_grad():
        inputs, targets = sine_batch(np.random.default_rng(1), batch=256)
        held_out = nn.functional.mse_loss(model(inputs), targets).item()
    print(f"held-out mse {held_out:.5f} (predicting the previous value would give "
          f"{nn.functional.mse_loss(inputs, targets).item():.5f})")


if __name__ == "__main__":
    main()
