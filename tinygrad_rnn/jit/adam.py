"""Adam's update in one pass over the arrays (optim/adam.py's adam_update_ makes thirteen).

The same float32 operations in the same order as numpy's routine, without fastmath (no FMA
contraction, no reassociation), so the two agree bit for bit; what changes is that each element
is read once and its moments and parameter written once (an MLP of 670k parameters: see
docs/performance.md).
"""
from __future__ import annotations

import numpy as np

from .compile import njit

_FLOAT32 = np.dtype(np.float32)


@njit(nogil=True, error_model="numpy")
def _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, low, lerp_factor, beta2, one_minus_beta2, neg_step_size,
          bias_correction2_sqrt, eps):
    amsgrad = max_exp_avg_sq.shape[0] != 0
    for j in range(param.shape[0]):
        g = grad[j]
        # torch.lerp's two branches, as optim.adam._lerp_ (lerp_factor: the weight, or 1 - weight)
        m = exp_avg[j] + (g - exp_avg[j]) * lerp_factor if low else g - (g - exp_avg[j]) * lerp_factor
        exp_avg[j] = m
        v = exp_avg_sq[j] * beta2 + g * one_minus_beta2 * g
        exp_avg_sq[j] = v
        if amsgrad:
            best = max_exp_avg_sq[j]
            v = v if v >= best or v != v else best  # numpy.maximum: a nan on either side wins
            max_exp_avg_sq[j] = v
        param[j] += m * neg_step_size / (np.sqrt(v) / bias_correction2_sqrt + eps)


_NONE = np.zeros(0, np.float32)


def _flat(a, shape, written=True):
    """a as a 1-d view when it is a C-contiguous float32 numpy array of `shape` (and writable, when
    the kernel writes it), else None."""
    if type(a) is np.ndarray and a.dtype is _FLOAT32 and a.shape == shape and a.flags.c_contiguous and \
            (a.flags.writeable or not written):
        return a.reshape(-1)
    return None


def adam_update_(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, step_size, bias_correction2_sqrt,
                 eps):
    arrays = [_flat(param, param.shape), _flat(grad, param.shape, written=False), _flat(exp_avg, param.shape),
              _flat(exp_avg_sq, param.shape), _NONE if max_exp_avg_sq is None else _flat(max_exp_avg_sq, param.shape)]
    if any(a is None for a in arrays):
        return NotImplemented
    f = np.float32
    # the scalars as float32, as numpy casts a Python float meeting a float32 array
    low = abs(weight) < 0.5
    _adam(*arrays, low, f(weight if low else 1 - weight), f(beta2), f(1 - beta2), f(-step_size),
          f(bias_correction2_sqrt), f(eps))
    return None
