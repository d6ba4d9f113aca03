"""Gradient clipping, as in torch.nn.utils: rescale (or clamp) the `.grad` of parameters in place.

Norms are kept as 1-element arrays rather than numpy scalars, so they stay on the gradients'
device and in their dtype until the total is handed back as a 0-d Tensor.
"""
from __future__ import annotations

from . import rnn  # noqa: F401  (nn.utils.rnn.pad_sequence, as in torch)

import math

import numpy as np

from ... import backend, buffers
from ...errors import AnomalyError
from ...tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _vector_norm(array, norm_type):
    """The norm_type-norm of all elements of `array`, shape (1,) (torch.linalg.vector_norm)."""
    xp = backend.get_array_module(array)
    flat = array.reshape(-1)
    if flat.size == 0:
        return xp.zeros(1, dtype=array.dtype)
    if norm_type == 2:  # x * x is |x| * |x|: one scratch array, from the buffer cache (a fresh one is faulted in)
        return xp.sqrt(xp.sum(xp.multiply(flat, flat, out=buffers.empty_like(flat)), keepdims=True))
    magnitudes = xp.abs(flat)
    if norm_type == math.inf:
        return xp.max(magnitudes, keepdims=True)
    if norm_type == -math.inf:
        return xp.min(magnitudes, keepdims=True)
    if norm_type == 0:
        return xp.sum(magnitudes != 0, keepdims=True).astype(array.dtype)
    if norm_type == 1:
        return xp.sum(magnitudes, keepdims=True)
    return xp.sum(magnitudes ** norm_type, keepdims=True) ** (1.0 / norm_type)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False):
    """The norm of the norms of `tensors` (Tensors or arrays), as a 0-d Tensor on the first one's device."""
    arrays = [t._data if isinstance(t, Tensor) else t for t in tensors]
    if not arrays:
        return Tensor(0.0)
    norm_type = float(norm_type)
    device = backend.device_of(arrays[0])
    dtype = np.result_type(*[a.dtype for a in arrays])
    norms = [backend.to_device(_vector_norm(a, norm_type), device).astype(dtype, copy=False) for a in arrays]
    xp = backend.get_array_module(norms[0])
    total = _vector_norm(xp.concatenate(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total).all()):
        raise AnomalyError(
            f"The total norm of order {norm_type} for gradients from {len(arrays)} tensors is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the non-finite "
            "norm anyway, set `error_if_nonfinite=False`")
    return Tensor(total.reshape(()))


def clip_grads_with_norm_(parameters, max_norm, total_norm):
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)); total_norm from get_total_norm."""
    grads = _grads(parameters)
    if not grads:
        return
    total = total_norm._data if isinstance(total_norm, Tensor) else total_norm
    xp = backend.get_array_module(total)
    coef = xp.minimum(float(max_norm) / (total.reshape(1) + 1e-6), 1.0).reshape(())
    for g in grads:
        scale = backend.to_device(coef, g.device).astype(g.dtype, copy=False)
        if getattr(g._data.flags, "writeable", True):
            g._data *= scale  # in place, as torch's mul_: a new array per gradient is faulted in
            g._bump_version()
        else:
            g._data = g._data * scale


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Rescale gradients so that their joint norm is at most max_norm; returns that norm (before
    clipping) as a 0-d Tensor. Parameters without a gradient are skipped."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        g._data = backend.get_array_module(g._data).clip(g._data, -clip_value, clip_value)
