"""Composite ops: built only from the primitive Tensor methods (ops.py's Functions through
tensor.py's dispatch), so their gradients come for free and need no backward of their own.

`CompositeOps` is a base class of Tensor; it never builds a Tensor itself (constants come
from `self._wrap(array)`), so this module does not import tensor.py.
"""
from __future__ import annotations

import math
from collections import namedtuple

from . import backend
from .backend import get_array_module
from .errors import ShapeError
from .ops import check_index_array

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def normalize_axes(dim, ndim):
    """None, an int or a sequence of ints (negative allowed) -> None or a sorted tuple."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise ShapeError(f"dimension {d} out of range for a tensor of {ndim} dims")
        out.append(d % max(ndim, 1))
    return tuple(sorted(set(out)))


def _pick(dim, axis):
    """Accept torch's `dim` or numpy's `axis` for the same argument."""
    return axis if dim is None else dim


def _reduced_shape(shape, axes):
    if axes is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _count(shape, axes):
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)


class CompositeOps:
    __slots__ = ()

    # ---- moments -------------------------------------------------------------------
    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes = normalize_axes(_pick(dim, axis), self.ndim)
        return self.sum(axes, keepdim=bool(keepdims or keepdim)) / _count(self.shape, axes)

    def var(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        """Variance; like torch, unbiased (correction=1) unless told otherwise."""
        if unbiased is not None:
            correction = int(unbiased)
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
        axes = normalize_axes(dim, self.ndim)
        xp = get_array_module(self.data)
        peak = self.detach().amax(axes, keepdim=True).data
        shift = self._wrap(xp.where(xp.isfinite(peak), peak, 0))
        out = (self - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.reshape(_reduced_shape(self.shape, axes))

    def log_softmax(self, dim=-1):
        return self - self.logsumexp(dim, keepdim=True)

    def softmax(self, dim=-1):
        shifted = self - self.detach().amax(dim, keepdim=True)
        e = shifted.exp()
        return e / e.sum(dim, keepdim=True)

    # ---- pieces --------------------------------------------------------------------
    def split(self, split_size, dim=0):
        """torch.split: chunks of `split_size` along dim, or of the sizes listed."""
        dim = dim % self.ndim
        length = self.shape[dim]
        sizes = ([split_size] * (length // split_size) + ([length % split_size] if length % split_size else [])
                 if isinstance(split_size, int) else list(split_size))
        if sum(sizes) != length:
            raise ShapeError(f"split: sizes {sizes} do not add up to {length}, the size of dim {dim} of {self.shape}")
        pieces, start = [], 0
        for size in sizes:
            pieces.append(self[(slice(None),) * dim + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def chunk(self, chunks, dim=0):
        length = self.shape[dim % self.ndim]
        return self.split(max(1, -(-length // chunks)), dim)

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
        dim = dim % self.ndim
        xp = get_array_module(self.data)
        grids = list(xp.meshgrid(*[xp.arange(n) for n in index.shape], indexing="ij", sparse=True))
        grids[dim] = index
        return self[tuple(grids)]
