"""Flagship demo (until the example gallery lands): an Elman RNN written directly on the
engine learns to predict a sine wave one step ahead by backpropagation through time."""
import numpy as np

import tinygrad_rnn as tg

tg.manual_seed(0)
T, B, H = 30, 16, 24
phase = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(1, B))
wave = np.sin(np.arange(T + 1)[:, None] * 0.3 + phase).astype(np.float32)  # (T+1, B)
inputs, targets = tg.tensor(wave[:-1, :, None]), tg.tensor(wave[1:, :, None])

params = {
    "w_ih": tg.randn(1, H) * 0.5, "w_hh": tg.randn(H, H) * (1 / np.sqrt(H)),
    "b_h": tg.zeros(H), "w_out": tg.randn(H, 1) * (1 / np.sqrt(H)), "b_out": tg.zeros(1),
}
params = {k: v.detach().requires_grad_() for k, v in params.items()}
learning_rate = 0.05

for step in range(301):
    h = tg.zeros(B, H)
    loss = 0.0
    for t in range(T):  # unrolled over time: BPTT walks back through every step
        with tg.scope(f"t{t}"):
            h = (inputs[t] @ params["w_ih"] + h @ params["w_hh"] + params["b_h"]).tanh()
            prediction = h @ params["w_out"] + params["b_out"]
            loss = loss + ((prediction - targets[t]) ** 2).mean()
    loss = loss / T
    for p in params.values():
        p.zero_grad()
    loss.backward()
    with tg.no_grad():
        for p in params.values():
            p.data = p.data - learning_rate * np.clip(p.grad.data, -1, 1)
    if step % 50 == 0:
        print(f"step {step:4d}  mean squared error {loss.item():.5f}")
