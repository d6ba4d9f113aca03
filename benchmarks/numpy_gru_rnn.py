"""The GRU and the vanilla (tanh) RNN of benchmarks/rnn.py by hand-written BPTT in plain numpy:
the floor for those cells, as numpy_lstm.py is for the LSTM (the same decoder, loss and Adam).
Parameters in torch's layout (nn.GRU gates r, z, n; nn.RNN), under numpy_lstm's names."""
import numpy as np
from numpy_lstm import _sigmoid, decoder_loss, input_grads


def _weights(params):
    return (params[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def gru_loss_and_grads(params, inputs, targets):
    """inputs (T, B, V) one-hot, targets (T, B) ints -> (mean cross-entropy, {name: gradient})."""
    w_ih, w_hh, b_ih, b_hh = _weights(params)
    steps, batch, vocab = inputs.shape
    hidden = w_hh.shape[1]
    x_proj = (inputs.reshape(steps * batch, vocab) @ w_ih.T + b_ih).reshape(steps, batch, 3 * hidden)
    hs = np.zeros((steps + 1, batch, hidden), w_hh.dtype)
    rzs = np.empty((steps, batch, 2 * hidden), w_hh.dtype)
    ns, h_ns = np.empty_like(hs[1:]), np.empty_like(hs[1:])
    for t in range(steps):
        hp = hs[t] @ w_hh.T + b_hh
        rzs[t] = _sigmoid(x_proj[t, :, :2 * hidden] + hp[:, :2 * hidden])
        h_ns[t] = hp[:, 2 * hidden:]
        ns[t] = np.tanh(x_proj[t, :, 2 * hidden:] + rzs[t, :, :hidden] * h_ns[t])
        hs[t + 1] = ns[t] + rzs[t, :, hidden:] * (hs[t] - ns[t])

    loss, grads, d_hs = decoder_loss(params, hs[1:], targets)
    d_x = np.empty_like(x_proj)
    d_hp = np.empty_like(x_proj)
    d_h = np.zeros((batch, hidden), w_hh.dtype)
    for t in reversed(range(steps)):
        r, z, n = rzs[t, :, :hidden], rzs[t, :, hidden:], ns[t]
        d_h += d_hs[t]
        d_n = d_h * (1 - z) * (1 - n * n)
        d_z = d_h * (hs[t] - n) * z * (1 - z)
        d_r = d_n * h_ns[t] * r * (1 - r)
        d_x[t, :, :hidden], d_x[t, :, hidden:2 * hidden], d_x[t, :, 2 * hidden:] = d_r, d_z, d_n
        d_hp[t, :, :2 * hidden] = d_x[t, :, :2 * hidden]
        d_hp[t, :, 2 * hidden:] = d_n * r
        d_h = d_h * z + d_hp[t] @ w_hh
    input_grads(grads, d_x, inputs, hs[:-1])
    flat_d_hp = d_hp.reshape(steps * batch, 3 * hidden)
    grads["weight_hh"] = flat_d_hp.T @ hs[:-1].reshape(steps * batch, hidden)
    grads["bias_hh"] = flat_d_hp.sum(axis=0)
    return loss, grads


def rnn_loss_and_grads(params, inputs, targets):
    """h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh): inputs (T, B, V) one-hot, targets (T, B)."""
    w_ih, w_hh, b_ih, b_hh = _weights(params)
    steps, batch, vocab = inputs.shape
    hidden = w_hh.shape[1]
    pre = (inputs.reshape(steps * batch, vocab) @ w_ih.T + (b_ih + b_hh)).reshape(steps, batch, hidden)
    hs = np.zeros((steps + 1, batch, hidden), w_hh.dtype)
    for t in range(steps):
        hs[t + 1] = np.tanh(pre[t] + hs[t] @ w_hh.T)

    loss, grads, d_hs = decoder_loss(params, hs[1:], targets)
    d_pre = np.empty_like(pre)
    d_h = np.zeros((batch, hidden), w_hh.dtype)
    for t in reversed(range(steps)):
        d_h += d_hs[t]
        d_pre[t] = d_h * (1 - hs[t + 1] * hs[t + 1])
        d_h = d_pre[t] @ w_hh
    input_grads(grads, d_pre, inputs, hs[:-1])
    grads["bias_hh"] = grads["bias_ih"].copy()
    return loss, grads
