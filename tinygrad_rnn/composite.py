"""Composite ops: built only from the primitive Tensor methods (ops.py's Functions through
tensor.py's dispatch), so their gradients come for free and need no backward of their own.

`CompositeOps` is a base class of Tensor; it never builds a Tensor itself (constants come
from `self._wrap(array)`), so this module does not import tensor.py.
"""
from __future__ import annotations

import math
import operator
from collections import namedtuple

import numpy as np

from . import backend
from .backend import get_array_module
from .errors import DTypeError, InvalidValueError, OutOfRangeError, ShapeError
from .ops import check_index_array

MaxResult = namedtuple("MaxResult", ["values", "indices"])
SortResult = namedtuple("SortResult", ["values", "indices"])
TopKResult = namedtuple("TopKResult", ["values", "indices"])


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


def require_float(t, op):
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
        require_float(self, "mean")
        axes = normalize_axes(_pick(dim, axis), self.ndim)
        return self.sum(axes, keepdim=bool(keepdims or keepdim)) / _count(self.shape, axes)

    def var(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        """Variance; like torch, unbiased (correction=1) unless told otherwise."""
        if unbiased is not None:
            correction = int(unbiased)
        require_float(self, "var")
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
        xp = get_array_module(self._data)
        peak = self.detach().amax(axes, keepdim=True)._data
        shift = self._wrap(xp.where(xp.isfinite(peak), peak, 0))
        out = (self - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.reshape(_reduced_shape(self.shape, axes))

    def softmax(self, dim=-1):
        require_float(self, "softmax")
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

    def narrow(self, dim, start, length):
        """self[..., start:start + length, ...] along dim (a view, as torch's); start may be negative."""
        if self.ndim == 0:
            raise ShapeError("narrow() cannot be applied to a 0-dim tensor")
        dim = wrap_dim(dim, self.ndim)
        size, start, length = self.shape[dim], operator.index(start), operator.index(length)
        if not -size <= start <= size:
            raise OutOfRangeError(f"narrow: start out of range (expected to be in range of [{-size}, {size}], "
                                  f"but got {start}) for dim {dim} of shape {self.shape}")
        start = start + size if start < 0 else start
        if length < 0 or start + length > size:
            raise OutOfRangeError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({size}) "
                                  f"of dim {dim} of shape {self.shape}")
        return self[(slice(None),) * dim + (slice(start, start + length),)]

    def repeat(self, *sizes):
        """torch's repeat (numpy's tile): each dim tiled sizes[i] times; extra leading sizes add dims."""
        sizes = tuple(operator.index(n) for n in (sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (tuple, list))
                                                  else sizes))
        if len(sizes) < self.ndim:
            raise ShapeError(f"repeat: number of dimensions of repeat dims {sizes} can not be smaller than "
                             f"number of dimensions of tensor {self.shape}")
        if any(n < 0 for n in sizes):
            raise ShapeError(f"repeat: repeats {sizes} must be non-negative")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        # each dim n becomes (1, n), expanded to (repeats, n), merged: the tiles lie one after another
        paired = self.reshape(tuple(d for n in shape for d in (1, n)))
        tiled = paired.expand(tuple(d for r, n in zip(sizes, shape) for d in (r, n)))
        return tiled.reshape(tuple(r * n for r, n in zip(sizes, shape)))

    # ---- ordering ------------------------------------------------------------------
    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along dim. Always stable, whatever `stable` says: equal elements keep
        their order (in either direction), so results are deterministic (torch leaves ties unspecified
        unless stable=True). NaN sorts as the largest, as in torch. Values are differentiable."""
        if self.ndim == 0:
            return SortResult(self.clone(), self._wrap(get_array_module(self._data).zeros((), dtype="int64")))
        dim = wrap_dim(dim, self.ndim)
        xp = get_array_module(self._data)
        if descending:
            # the stable ascending order of the reversed values, reversed: descending, ties in order
            flipped = xp.flip(self._data, axis=dim)
            order = xp.flip(xp.argsort(flipped, axis=dim, kind="stable"), axis=dim)
            order = self.shape[dim] - 1 - order
        else:
            order = xp.argsort(self._data, axis=dim, kind="stable")
        indices = self._wrap(order.astype("int64"))
        return SortResult(self.gather(dim, indices), indices)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """The k largest (or smallest) along dim, as (values, indices), always in sorted order; among
        equal elements the earlier one comes first (see sort)."""
        dim = wrap_dim(dim, self.ndim)
        size = self.shape[dim] if self.ndim else 1
        if not 0 <= operator.index(k) <= size:
            raise OutOfRangeError(f"topk: selected index k={k} out of range for dim {dim} of size {size} "
                                  f"(shape {self.shape})")
        values, indices = self.sort(dim, descending=largest)
        if self.ndim == 0:
            return TopKResult(values, indices)
        keep = (slice(None),) * dim + (slice(0, k),)
        return TopKResult(values[keep], indices[keep])

    # ---- sampling ------------------------------------------------------------------
    def multinomial(self, num_samples, replacement=False):
        """torch.multinomial: num_samples category indices per row of weights (C,) or (N, C) (not
        necessarily normalised) -> int64 (num_samples,) or (N, num_samples). Drawn on the host from
        the global generator (tg.manual_seed). Without replacement, successive draws proportional to
        the remaining weights (the keys w / Exp(1), largest first); zero weights come only after every
        positive one is taken, as in torch."""
        if self.ndim not in (1, 2):
            raise ShapeError(f"multinomial: prob_dist must be 1 or 2 dim, got shape {self.shape}")
        require_float(self, "multinomial")
        num_samples = operator.index(num_samples)
        categories = self.shape[-1]
        if num_samples <= 0:
            raise ShapeError(f"multinomial: cannot sample n_sample <= 0 samples (got {num_samples})")
        if not replacement and num_samples > categories:
            raise ShapeError(f"multinomial: cannot sample n_sample ({num_samples}) > prob_dist.size(-1) "
                             f"({categories}) samples without replacement (shape {self.shape})")
        weights = backend.to_numpy(self._data).astype("float64").reshape(-1, categories)
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise InvalidValueError(f"multinomial: probability tensor of shape {self.shape} contains either "
                             "`inf`, `nan` or element < 0")
        if (weights.sum(axis=1) <= 0).any():
            raise InvalidValueError(f"multinomial: invalid multinomial distribution (sum of probabilities <= 0) "
                             f"in a row of the tensor of shape {self.shape}")
        rng = backend.host_rng()
        if replacement:
            cdf = weights.cumsum(axis=1)
            cdf /= cdf[:, -1:]  # the last entry exactly 1: a uniform in [0, 1) never passes it
            uniforms = rng.random((len(weights), num_samples))
            samples = np.stack([np.searchsorted(row, u, side="right") for row, u in zip(cdf, uniforms)])
        else:
            keys = weights / rng.standard_exponential(weights.shape)
            samples = np.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
        samples = samples.astype("int64").reshape(self.shape[:-1] + (num_samples,))
        return self._wrap(backend.asarray(samples, device=self.device))

    def gather(self, dim, index):
        """torch.gather: out[i][j] = self[i][index[i][j]] along `dim`."""
        data = getattr(index, "_data", None)  # a Tensor's array; lists, numpy and torch go through the host
        # a copy, kept by the graph: a later write to the caller's index must not move the gradient
        index = data.copy() if backend.is_array(data) else backend.asarray(backend.host_array(index),
                                                                            device=self.device, copy=True)
        check_index_array(index, "gather")
        if index.ndim != self.ndim:
            raise ShapeError(f"gather: index of shape {tuple(index.shape)} must have as many dims as "
                             f"the input of shape {self.shape}")
        dim = wrap_dim(dim, self.ndim)
        xp = get_array_module(self._data)
        grids = list(xp.meshgrid(*[xp.arange(n) for n in index.shape], indexing="ij", sparse=True))
        grids[dim] = index
        return self[tuple(grids)]
