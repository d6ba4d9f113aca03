"""A BatchNorm MLP (Linear-BatchNorm1d-ReLU twice, then Linear) trained by hand-written backward in
plain numpy: the floor for a numpy engine on a feed-forward step.

Parameters use torch's layout and nn.Sequential's names for
  Linear(784, 512), BatchNorm1d(512), ReLU, Linear(512, 512), BatchNorm1d(512), ReLU, Linear(512, 10):
  0.weight, 0.bias, 1.weight, 1.bias, 3.weight, 3.bias, 4.weight, 4.bias, 6.weight, 6.bias,
and the BatchNorm buffers 1.running_mean, 1.running_var, 4.running_mean, 4.running_var (updated in
train mode as torch does: momentum 0.1, unbiased variance).
"""
import numpy as np
from numpy_lstm import Adam  # noqa: F401  (the same torch-equivalent update, re-exported for the benchmark)

LINEARS = ("0", "3", "6")
NORMS = ("1", "4")
EPS, MOMENTUM = 1e-5, 0.1


def loss_and_grads(params, buffers, x, targets):
    """x (N, 784), targets (N,) ints -> (mean cross-entropy, {name: gradient}); updates `buffers`."""
    n = x.shape[0]
    saved = []
    h = x
    for lin, norm in zip(LINEARS, NORMS):
        z = h @ params[lin + ".weight"].T
        z += params[lin + ".bias"]
        mean = z.mean(axis=0)
        z -= mean
        var = np.einsum("ij,ij->j", z, z) / n
        inv_std = 1.0 / np.sqrt(var + EPS)
        z *= inv_std  # z is now x-hat
        _blend(buffers, norm, mean, var * (n / (n - 1)))
        out = z * params[norm + ".weight"]
        out += params[norm + ".bias"]
        np.maximum(out, 0, out=out)
        saved.append((h, z, inv_std, out))
        h = out
    logits = h @ params["6.weight"].T
    logits += params["6.bias"]
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(-np.log(logits[rows, targets]).mean())
    d = logits
    d[rows, targets] -= 1
    d /= n
    grads = {"6.weight": d.T @ h, "6.bias": d.sum(axis=0)}
    d = d @ params["6.weight"]
    for lin, norm in zip(reversed(LINEARS[:2]), reversed(NORMS)):
        h_in, x_hat, inv_std, out = saved.pop()
        d *= out > 0
        grads[norm + ".bias"] = d.sum(axis=0)
        grads[norm + ".weight"] = np.einsum("ij,ij->j", d, x_hat)
        # d z = gamma * inv_std * (d - mean(d) - x_hat * mean(d * x_hat)), the BatchNorm backward
        d -= grads[norm + ".bias"] / n
        d -= x_hat * (grads[norm + ".weight"] / n)
        d *= params[norm + ".weight"] * inv_std
        grads[lin + ".weight"] = d.T @ h_in
        grads[lin + ".bias"] = d.sum(axis=0)
        if lin != LINEARS[0]:
            d = d @ params[lin + ".weight"]
    return loss, grads


def _blend(buffers, norm, mean, unbiased_var):
    for name, value in (("running_mean", mean), ("running_var", unbiased_var)):
        buf = buffers[f"{norm}.{name}"]
        buf *= 1 - MOMENTUM
        buf += MOMENTUM * value
