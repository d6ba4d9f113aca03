"""Tensor factories, named and shaped as in torch."""
from __future__ import annotations

import numpy as np

from . import backend, dtypes
from .backend import manual_seed  # noqa: F401  (re-exported: the one global seed)
from .errors import DTypeError, ShapeError
from .tensor import Tensor, _shape_args


def _sizes(shape, who):
    """A factory's sizes: integers >= 0, checked here so the message names the factory, not numpy."""
    sizes = _shape_args(shape)
    for n in sizes:
        if n < 0:
            raise ShapeError(f"{who}: trying to create a tensor with negative dimension {n}: {sizes}")
    return sizes


def _dtype(dtype):
    return backend.get_default_dtype() if dtype is None else np.dtype(dtype)


def _make(array, device, requires_grad):
    device = backend.canonical_device(device)
    t = Tensor._make(backend.to_device(array, device) if device != "cpu" else array, False, None)
    return t.requires_grad_(True) if requires_grad else t


def tensor(data, dtype=None, device=None, requires_grad=False):
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array):
    """A CPU tensor sharing array's memory, as torch's: writes to either show in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray (got {type(array).__name__})")
    if array.dtype.kind not in "biuf":
        raise DTypeError(f"from_numpy: can't convert np.ndarray of type {array.dtype}; the only supported "
                         "types are float, integer and bool")
    return Tensor._make(array)


def as_tensor(data, dtype=None, device=None):
    """data as a tensor without copying when it can be (torch's as_tensor): a Tensor of that dtype and
    device is returned as it is (graph included), else converted with .to(); a numpy array of that dtype
    on the CPU shares its memory; anything else is copied, as tensor() does."""
    dtype = None if dtype is None else np.dtype(dtype)
    if isinstance(data, Tensor):
        return data.to(device, dtype)
    if isinstance(data, np.ndarray) and dtype in (None, data.dtype) and data.dtype.kind in "biuf" \
            and backend.canonical_device(device or "cpu") == "cpu":
        return Tensor._make(data)
    return Tensor(data, dtype=dtype, device=device)


def _filled(value, shape, dtype, device, requires_grad, who):
    xp = backend.xp_for(device)
    array = xp.full(_sizes(shape, who), value, dtype=_dtype(dtype))
    t = Tensor._make(array, False, None)
    return t.requires_grad_(True) if requires_grad else t


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(0, shape, dtype, device, requires_grad, "zeros")


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(1, shape, dtype, device, requires_grad, "ones")


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    """Without a dtype, the fill value's, as torch infers a scalar's: 7 gives int64, True bool, 2.5 (or
    np.float64(2.5)) the default float dtype."""
    if dtype is None and dtypes.is_scalar(fill_value):
        dtype = dtypes.scalar_dtype(fill_value)
    return _filled(fill_value, (shape,) if isinstance(shape, int) else tuple(shape), dtype, device,
                   requires_grad, "full")


def randn(*shape, dtype=None, device=None, requires_grad=False):
    array = backend.host_rng().standard_normal(_sizes(shape, "randn")).astype(_dtype(dtype))
    return _make(array, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    array = backend.host_rng().random(_sizes(shape, "rand")).astype(_dtype(dtype))
    return _make(array, device, requires_grad)


def randint(low, high=None, size=(), dtype=np.int64, device=None):
    if high is None:
        low, high = 0, low
    if low >= high:
        raise ShapeError(f"randint: expected low < high, got low={low}, high={high}")
    array = backend.host_rng().integers(low, high, size=_sizes((tuple(size),), "randint")).astype(dtype)
    return _make(array, device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else backend.get_default_dtype()
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ShapeError(f"arange: upper bound and lower bound inconsistent with step sign "
                         f"(start={start}, end={end}, step={step})")
    array = np.arange(start, end, step, dtype=np.dtype(dtype))
    return _make(array, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    _sizes((n,) if m is None else (n, m), "eye")
    return _make(np.eye(n, m, dtype=_dtype(dtype)), device, requires_grad)


def _like(factory):
    def like(t, dtype=None, device=None, requires_grad=False):
        return factory(*t.shape, dtype=t.dtype if dtype is None else dtype,
                       device=t.device if device is None else device, requires_grad=requires_grad)
    like.__name__ = factory.__name__ + "_like"
    like.__doc__ = f"{factory.__name__} with the shape, dtype and device of `t`."
    return like


zeros_like, ones_like, randn_like, rand_like = map(_like, (zeros, ones, randn, rand))


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype,
                device=t.device if device is None else device, requires_grad=requires_grad)
