"""A character-level LSTM + linear decoder trained by hand-written BPTT in plain numpy.

The practical floor for any engine that runs on numpy: no graph, no per-op bookkeeping,
buffers preallocated, and the weight gradients of all time steps taken in one matmul each.
Parameters use torch's layout (nn.LSTM gates i, f, g, o; nn.Linear), under the names
  weight_ih (4H, V), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,), weight (V, H), bias (V,).
"""
import numpy as np


def _sigmoid(a):
    return 0.5 * np.tanh(0.5 * a) + 0.5


def loss_and_grads(params, inputs, targets):
    """inputs (T, B, V) one-hot, targets (T, B) ints -> (mean cross-entropy, {name: gradient})."""
    w_ih, w_hh, b_ih, b_hh = (params[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    steps, batch, vocab = inputs.shape
    hidden = w_hh.shape[1]
    dtype = w_hh.dtype

    # forward: keep the activated gates and every h, c for the backward sweep
    gates = (inputs.reshape(steps * batch, vocab) @ w_ih.T + (b_ih + b_hh)).reshape(steps, batch, 4 * hidden)
    hs = np.zeros((steps + 1, batch, hidden), dtype)  # hs[t + 1] = h_t; hs[0] = h_{-1} = 0
    cs = np.zeros((steps + 1, batch, hidden), dtype)
    for t in range(steps):
        g = gates[t]
        g += hs[t] @ w_hh.T
        g[:, :2 * hidden] = _sigmoid(g[:, :2 * hidden])   # i, f
        g[:, 2 * hidden:3 * hidden] = np.tanh(g[:, 2 * hidden:3 * hidden])
        g[:, 3 * hidden:] = _sigmoid(g[:, 3 * hidden:])   # o
        i, f, gg, o = g[:, :hidden], g[:, hidden:2 * hidden], g[:, 2 * hidden:3 * hidden], g[:, 3 * hidden:]
        cs[t + 1] = f * cs[t] + i * gg
        hs[t + 1] = o * np.tanh(cs[t + 1])

    loss, grads, d_hs = decoder_loss(params, hs[1:], targets)
    d_gates = np.empty_like(gates)
    d_h = np.zeros((batch, hidden), dtype)
    d_c = np.zeros((batch, hidden), dtype)
    for t in reversed(range(steps)):
        g = gates[t]
        i, f, gg, o = g[:, :hidden], g[:, hidden:2 * hidden], g[:, 2 * hidden:3 * hidden], g[:, 3 * hidden:]
        tanh_c = np.tanh(cs[t + 1])
        d_h += d_hs[t]
        d_c += d_h * o * (1 - tanh_c * tanh_c)
        dg = d_gates[t]
        dg[:, :hidden] = d_c * gg * i * (1 - i)
        dg[:, hidden:2 * hidden] = d_c * cs[t] * f * (1 - f)
        dg[:, 2 * hidden:3 * hidden] = d_c * i * (1 - gg * gg)
        dg[:, 3 * hidden:] = d_h * tanh_c * o * (1 - o)
        d_c *= f
        d_h = dg @ w_hh
    input_grads(grads, d_gates, inputs, hs[:-1])
    grads["bias_hh"] = grads["bias_ih"].copy()
    return loss, grads


def decoder_loss(params, hs, targets):
    """Linear decoder + mean cross-entropy over hs (T, B, H) -> (loss, decoder grads, d loss / d hs)."""
    steps, batch, hidden = hs.shape
    flat_h = hs.reshape(steps * batch, hidden)
    logits = flat_h @ params["weight"].T + params["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    rows, flat_targets = np.arange(steps * batch), targets.reshape(-1)
    loss = float(-np.log(probs[rows, flat_targets]).mean())
    d_logits = probs
    d_logits[rows, flat_targets] -= 1
    d_logits /= steps * batch
    grads = {"weight": d_logits.T @ flat_h, "bias": d_logits.sum(axis=0)}
    return loss, grads, (d_logits @ params["weight"]).reshape(steps, batch, hidden)


def input_grads(grads, d_gates, inputs, hs_before):
    """The input-side and recurrent weight gradients of all steps, one matmul each."""
    steps, batch, vocab = inputs.shape
    flat_d_gates = d_gates.reshape(steps * batch, d_gates.shape[-1])
    grads["weight_ih"] = flat_d_gates.T @ inputs.reshape(steps * batch, vocab)
    grads["weight_hh"] = flat_d_gates.T @ hs_before.reshape(steps * batch, hs_before.shape[-1])
    grads["bias_ih"] = flat_d_gates.sum(axis=0)
    return grads


def clip_grad_norm_(grads, max_norm):
    """Scale every gradient by min(1, max_norm / (total norm + 1e-6)), as torch does."""
    total = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
    scale = min(1.0, max_norm / (total + 1e-6))
    for g in grads.values():
        g *= scale
    return total


class Adam:
    """torch.optim.Adam's update (no weight decay), in place on the arrays of `params`."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.steps = params, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads):
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.steps)
        correction2 = (1 - beta2 ** self.steps) ** 0.5
        for name, p in self.params.items():
            g = grads[name]
            self.m[name] += (1 - beta1) * (g - self.m[name])
            self.v[name] *= beta2
            self.v[name] += (1 - beta2) * g * g
            p -= step_size * self.m[name] / (np.sqrt(self.v[name]) / correction2 + self.eps)
