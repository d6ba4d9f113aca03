"""Composite ops: built only from the primitive Tensor methods (ops.py's Functions through
tensor.py's dispatch), so their gradients come for free and need no backward of their own.

`CompositeOps` is a base class of Tensor; it never builds a Tensor itself (constants come
from `self._wrap(array)`), so this module does not import tensor.py.
"""
from __future__ import annotations

import math
import operator
from collections import namedtuple

from . import backend
from .backend import get_array_module
from .errors import DTypeError, OutOfRangeError, ShapeError
from .ops import check_index_array

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def wrap_dim(dim, ndim):
    """torch's one rule for a dim argument: an int in [-ndim, ndim - 1] (a 0-d tensor takes -1 and 0,
    as torch's do), returned in 0..ndim - 1. Never modulo: permute(1, 2) on 2 dims is a mistake, not a
    transpose. Ops that make a dim (unsqueeze, stack) pass ndim + 1."""
    dim = operator.index(dim)  # floats are refused, as in torch
    bound = max(ndim, 1)
    if not -bound <= dim < bound:
        raise OutOfRangeError(f"Dimension out of range (expected to be in range of [{-bound}, {bound - 1}], "
                              f"but got {dim})")
    return dim + bound if dim < 0 else dim


def normalize_axes(dim, ndim):
    """None, an int or a sequence of ints (negative allowed) -> None or a sorted tuple of axes.
    A 0-d tensor has no axes to reduce: its valid dims (0, -1) give ()."""
    if dim is None:
        return None
    dims = [wrap_dim(d, ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    for d in set(dims):
        if dims.count(d) > 1:
            raise ShapeError(f"dim {d} appears multiple times in the list of dims {tuple(dims)}")
    return tuple(sorted(dims)) if ndim else ()


def _pick(dim, axis):
    """Accept torch's `dim` or numpy's `axis` for the same argument."""
    return axis if dim is None else dim


def _reduced_shape(shape, axes):
    if axes is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _count(shape, axes):
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)


def _require_float(t, op):
    """Ops whose result is a fraction of the input refuse integer tensors, as torch's do: rounding the
    result back, or quietly making it float64, would both surprise."""
    if t.dtype.kind not in "fc":
        raise DTypeError(f"{op}(): input dtype must be floating point, got {t.dtype} (shape {t.shape}); "
                         "cast it first with .float()")


def _split_sizes(split_size, length):
    """torch's pieces for one split_size: as many full pieces as fit, then the rest; always at least one."""
    if split_size < 0:
        raise ShapeError(f"split expects split_size be non-negative, but got split_size={split_size}")
    if split_size == 0:
        if length:
            raise ShapeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {length}")
        return [0]
    count = max(-(-length // split_size), 1)
    return [split_size] * (count - 1) + [length - split_size * (count - 1)]


class CompositeOps:
    __slots__ = ()

    # ---- moments -------------------------------------------------------------------
    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        _require_float(self, "mean")
        axes = normalize_axes(_pick(dim, axis), self.ndim)
        return self.sum(axes, keepdim=bool(keepdims or keepdim)) / _count(self.shape, axes)

    def var(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        """Variance; like torch, unbiased (correction=1) unless told otherwise."""
        if unbiased is not None:
            correction = int(unbiased)
        _require_float(self, "var")
        axes = normalize_axes(_pick(dim, axis), self.ndim)
        centred = self - self.mean(axes, keepdim=True)
        squares = (centred * centred).sum(axes, keepdim=bool(keepdims or keepdim))
        return squares / max(_count(self.shape, axes) - correction, 0)

    def std(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        return self.var(dim, keepdim, axis=axis, keepdims=keepdims, correction=correction,
                        unbiased=unbiased).sqrt()

    # ---- extremes ------------------------------------------------------------------
    def _extreme(self, reduce, arg, dim, keepdim, axis, keepdims):
        """torch's max/min: a tensor over all elements, or (values, indices) along one dim."""
        d = _pick(dim, axis)
        keep = bool(keepdims or keepdim)
        values = reduce(normalize_axes(d, self.ndim), keep)
        if d is None or not isinstance(d, int):
            return values
        return MaxResult(values, arg(d, keepdim=keep))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extreme(self.amax, self.argmax, dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extreme(self.amin, self.argmin, dim, keepdim, axis, keepdims)

    # ---- the softmax family --------------------------------------------------------
    def logsumexp(self, dim=None, keepdim=False):
        """log(sum(exp(x))) shifted by the (detached) max: stable, and its gradient is exact."""
        if self.dtype.kind not in "fc":  # torch's logsumexp takes integers, in the default float dtype
            return self.to(dtype=backend.get_default_dtype()).logsumexp(dim, keepdim)
        axes = normalize_axes(dim, self.ndim)
        xp = get_array_module(self.data)
        peak = self.detach().amax(axes, keepdim=True).data
        shift = self._wrap(xp.where(xp.isfinite(peak), peak, 0))
        out = (self - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.reshape(_reduced_shape(self.shape, axes))

    def log_softmax(self, dim=-1):
        _require_float(self, "log_softmax")
        return self - self.logsumexp(dim, keepdim=True)

    def softmax(self, dim=-1):
        _require_float(self, "softmax")
        shifted = self - self.detach().amax(dim, keepdim=True)
        e = shifted.exp()
        return e / e.sum(dim, keepdim=True)

    # ---- pieces --------------------------------------------------------------------
    def split(self, split_size, dim=0):
        """torch.split: pieces of `split_size` along dim (the last one shorter), or of the sizes listed."""
        dim = self._split_dim(dim, "split")
        length = self.shape[dim]
        if isinstance(split_size, (tuple, list)):
            sizes = [operator.index(n) for n in split_size]
            if any(n < 0 for n in sizes) or sum(sizes) != length:
                raise ShapeError(f"split: sizes {sizes} must be non-negative and add up to {length}, "
                                 f"the size of dim {dim} of {self.shape}")
        else:
            sizes = _split_sizes(operator.index(split_size), length)
        pieces, start, lead = [], 0, (slice(None),) * dim
        for size in sizes:
            pieces.append(self[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def chunk(self, chunks, dim=0):
        """torch.chunk: at most `chunks` pieces of ceil(size / chunks) along dim."""
        if operator.index(chunks) <= 0:
            raise ShapeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
        length = self.shape[self._split_dim(dim, "chunk")]
        if length == 0:  # an empty dim gives `chunks` empty pieces, as in torch
            return self.split([0] * chunks, dim)
        return self.split(-(-length // chunks), dim)

    def unbind(self, dim=0):
        """The slices along dim, without it (torch.unbind); iterating a tensor is unbind(0)."""
        if self.ndim == 0:
            raise OutOfRangeError("Dimension specified as 0 but tensor has no dimensions (unbind of a 0-d tensor)")
        dim = wrap_dim(dim, self.ndim)
        lead = (slice(None),) * dim
        return tuple(self[lead + (i,)] for i in range(self.shape[dim]))

    def _split_dim(self, dim, op):
        if self.ndim == 0:
            raise ShapeError(f"{op} expects at least a 1-dimensional tensor, got a 0-d tensor")
        return wrap_dim(dim, self.ndim)

    def gather(self, dim, index):
        """torch.gather: out[i][j] = self[i][index[i][j]] along `dim`."""
        data = getattr(index, "data", None)  # a Tensor's array; lists, numpy and torch go through the host
        # a copy, kept by the graph: a later write to the caller's index must not move the gradient
        index = data.copy() if backend.is_array(data) else backend.asarray(backend.host_array(index),
                                                                            device=self.device, copy=True)
        check_index_array(index, "gather")
        if index.ndim != self.ndim:
            raise ShapeError(f"gather: index of shape {tuple(index.shape)} must have as many dims as "
                             f"the input of shape {self.shape}")
        dim = wrap_dim(dim, self.ndim)
        xp = get_array_module(self.data)
        grids = list(xp.meshgrid(*[xp.arange(n) for n in index.shape], indexing="ij", sparse=True))
        grids[dim] = index
        return self[tuple(grids)]
