"""The Tensor: a backend array plus the node of the graph that made it.

Primitive ops live in ops.py; the composite ops here (mean, var, softmax,
log_softmax, logsumexp, split, chunk, stack, gather, ...) are built from them,
so their gradients come for free.
"""
from __future__ import annotations

import math
from collections import namedtuple
from numbers import Number

import numpy as np

from . import autograd, backend
from . import ops as F
from .errors import DeviceError, DTypeError, GraphError, ShapeError

_NUMPY_SCALARS = backend.NUMPY_SCALARS
# The seed of backward() from a scalar, made once per dtype: backwards never write into
# their incoming gradient, so sharing a read-only array is safe.
_ONES = {np.dtype(t): np.ones((), t) for t in (np.float16, np.float32, np.float64)}
for _one in _ONES.values():
    _one.flags.writeable = False
MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _normalize_axes(dim, ndim):
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


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__dict__", "__weakref__")
    # Rarely set, so class defaults: a new tensor (one per op) stores four slots, not six.
    _retains_grad = False
    name = None  # an optional label for graph rendering
    __array_priority__ = 1000  # numpy scalars on the left defer to our __radd__ etc.

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if dtype is None and _is_python_float_data(data):
            dtype = backend.get_default_dtype()
        # A copy, as torch.tensor makes: in-place optimiser steps must not reach the caller's array.
        self.data = backend.asarray(data, dtype=dtype, copy=True,
                                    device=device if device is not None else _device_or_cpu(data))
        self.grad = None
        self._ctx = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, requires_grad, ctx):
        t = object.__new__(cls)
        if type(data) in _NUMPY_SCALARS:  # numpy reduces 0-d results to scalars; keep arrays
            data = np.asarray(data)
        t.data, t.requires_grad, t._ctx, t.grad = data, requires_grad, ctx, None
        return t

    # ---- properties ----------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def ndim(self):
        return self.data.ndim

    def size(self, dim=None):
        """Number of elements, or the length of one dim (torch's `size(dim)`)."""
        return int(self.data.size) if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def dim(self):
        return self.data.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def __repr__(self):
        extra = f", device='{self.device}'" if self.device != "cpu" else ""
        if self._ctx is not None:
            extra += f", grad_fn=<{self._ctx.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    # ---- conversion / graph ----------------------------------------------------------
    def numpy(self):
        return backend.to_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.data.size != 1:
            raise ShapeError(f"item(): only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def detach(self):
        """The same data, cut from the graph (truncated BPTT)."""
        return Tensor._make(self.data, False, None)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.dtype.kind not in "fc":
            raise DTypeError(f"only floating tensors can require grad, got {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise GraphError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in `.grad` after backward."""
        self._retains_grad = True
        return self

    def zero_grad(self):
        self.grad = None

    def backward(self, grad=None, retain_graph=False):
        if not self.requires_grad:
            raise GraphError(f"backward() on a tensor of shape {self.shape} that does not require grad "
                             "(no input had requires_grad=True, or it was made under no_grad())")
        if grad is None:
            data = self.data
            if data.size != 1:
                raise GraphError(f"backward() on a non-scalar tensor of shape {self.shape} needs an "
                                 "explicit `grad` of that shape")
            grad = _ONES.get(data.dtype) if type(data) is np.ndarray else None
            if grad is None or grad.shape != data.shape:
                grad = backend.get_array_module(data).ones(data.shape, dtype=data.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad, device=self.device)
            if tuple(grad.shape) != self.shape:
                raise ShapeError(f"backward(): grad of shape {tuple(grad.shape)} for a tensor of shape {self.shape}")
            grad = grad.astype(self.dtype, copy=False)
        autograd.run_backward(self, grad, retain_graph)

    def to(self, device=None, dtype=None):
        """Move to a device and/or cast to a dtype (differentiable, as in torch)."""
        if isinstance(device, (type, np.dtype)) or (isinstance(device, str) and _is_dtype_name(device)):
            device, dtype = None, device
        out = self
        if device is not None and backend.canonical_device(device) != self.device:
            out = F.ToDevice.apply(out, device=backend.canonical_device(device))
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = F.Cast.apply(out, dtype=np.dtype(dtype))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def long(self):
        return self.to(dtype=np.int64)

    def astype(self, dtype):
        return self.to(dtype=dtype)

    # ---- helpers to lift constants -------------------------------------------------
    def _lift(self, other):
        """A Python/numpy scalar or array as a constant tensor beside self, without upcasting float32."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, Number) or (isinstance(other, np.generic) and other.ndim == 0):
            value = other.item() if isinstance(other, np.generic) else other
            dtype = np.result_type(self.dtype, value)  # NEP 50: a Python float keeps float32
            return Tensor._make(get_xp(self).asarray(value, dtype=dtype), False, None)
        return Tensor(other, device=self.device)

    # ---- arithmetic ----------------------------------------------------------------
    def __add__(self, other):
        return F.Add.apply(self, other if type(other) is Tensor else self._lift(other))

    def __radd__(self, other):
        return F.Add.apply(self._lift(other), self)

    def __sub__(self, other):
        return F.Sub.apply(self, other if type(other) is Tensor else self._lift(other))

    def __rsub__(self, other):
        return F.Sub.apply(self._lift(other), self)

    def __mul__(self, other):
        return F.Mul.apply(self, other if type(other) is Tensor else self._lift(other))

    def __rmul__(self, other):
        return F.Mul.apply(self._lift(other), self)

    def __truediv__(self, other):
        return F.Div.apply(self, other if type(other) is Tensor else self._lift(other))

    def __rtruediv__(self, other):
        return F.Div.apply(self._lift(other), self)

    def __pow__(self, exponent):
        if isinstance(exponent, Number):
            return F.PowScalar.apply(self, exponent=exponent)
        return F.Pow.apply(self, self._lift(exponent))

    def __rpow__(self, base):
        return F.Pow.apply(self._lift(base), self)

    def __neg__(self):
        return F.Neg.apply(self)

    def __matmul__(self, other):
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    add, sub, mul, div, pow, neg, matmul = (
        __add__, __sub__, __mul__, __truediv__, __pow__, __neg__, __matmul__)

    # ---- comparisons: no grad --------------------------------------------------------
    def _compare(self, other, op):
        other = self._lift(other)
        return Tensor._make(op(self.data, other.data), False, None)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    __hash__ = object.__hash__

    # ---- elementwise ---------------------------------------------------------------
    def exp(self):
        return F.Exp.apply(self)

    def log(self):
        return F.Log.apply(self)

    def tanh(self):
        return F.Tanh.apply(self)

    def sigmoid(self):
        return F.Sigmoid.apply(self)

    def relu(self):
        return F.Relu.apply(self)

    def sqrt(self):
        return F.Sqrt.apply(self)

    def abs(self):
        return F.Abs.apply(self)

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: at least one of min and max must be given")
        return F.Clip.apply(self, low=min, high=max)

    clamp = clip

    def maximum(self, other):
        return F.Maximum.apply(self, self._lift(other))

    def minimum(self, other):
        return F.Minimum.apply(self, self._lift(other))

    # ---- reductions ------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        if dim is None and axis is None and not keepdim and not keepdims:  # the loss's usual sum
            return F.Sum.apply(self)
        axes = _normalize_axes(_pick(dim, axis), self.ndim)
        return F.Sum.apply(self, axis=axes, keepdims=bool(keepdims or keepdim))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        axes = _normalize_axes(_pick(dim, axis), self.ndim)
        count = self.data.size if axes is None else math.prod(self.shape[a] for a in axes)
        return self.sum(axes, keepdim=bool(keepdims or keepdim)) / count

    def var(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        """Variance; like torch, unbiased (correction=1) unless told otherwise."""
        if unbiased is not None:
            correction = int(unbiased)
        axes = _normalize_axes(_pick(dim, axis), self.ndim)
        count = self.data.size if axes is None else math.prod(self.shape[a] for a in axes)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim=bool(keepdims or keepdim)) / max(count - correction, 0)

    def std(self, dim=None, keepdim=False, *, axis=None, keepdims=None, correction=1, unbiased=None):
        return self.var(dim, keepdim, axis=axis, keepdims=keepdims, correction=correction,
                        unbiased=unbiased).sqrt()

    def _extreme(self, fn, dim, keepdim, axis, keepdims):
        """torch's max/min: a tensor over all elements, or (values, indices) along one dim."""
        d = _pick(dim, axis)
        keep = bool(keepdims or keepdim)
        if d is None or not isinstance(d, int):
            return fn.apply(self, axis=_normalize_axes(d, self.ndim), keepdims=keep)
        values = fn.apply(self, axis=_normalize_axes(d, self.ndim), keepdims=keep)
        arg = self.argmax if fn is F.Max else self.argmin
        return MaxResult(values, arg(d, keepdim=keep))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extreme(F.Max, dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extreme(F.Min, dim, keepdim, axis, keepdims)

    def amax(self, dim=None, keepdim=False):
        return F.Max.apply(self, axis=_normalize_axes(dim, self.ndim), keepdims=keepdim)

    def amin(self, dim=None, keepdim=False):
        return F.Min.apply(self, axis=_normalize_axes(dim, self.ndim), keepdims=keepdim)

    def argmax(self, dim=None, keepdim=False):
        return self._arg(get_xp(self).argmax, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._arg(get_xp(self).argmin, dim, keepdim)

    def _arg(self, fn, dim, keepdim):
        if dim is None:
            return Tensor._make(fn(self.data.reshape(-1)).astype(np.int64), False, None)
        return Tensor._make(fn(self.data, axis=dim, keepdims=keepdim).astype(np.int64), False, None)

    def logsumexp(self, dim=None, keepdim=False):
        """log(sum(exp(x))) shifted by the (detached) max: stable, and its gradient is exact."""
        axes = _normalize_axes(dim, self.ndim)
        shift = self.detach().amax(axes, keepdim=True)
        shift = Tensor._make(get_xp(self).where(get_xp(self).isfinite(shift.data), shift.data, 0),
                             False, None)
        out = (self - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.reshape(_reduced_shape(self.shape, axes))

    def log_softmax(self, dim=-1):
        return self - self.logsumexp(dim, keepdim=True)

    def softmax(self, dim=-1):
        shifted = self - self.detach().amax(dim, keepdim=True)
        e = shifted.exp()
        return e / e.sum(dim, keepdim=True)

    # ---- shape -----------------------------------------------------------------------
    def reshape(self, *shape):
        shape = _shape_args(shape)
        if shape == self.shape:
            return self
        try:
            return F.Reshape.apply(self, shape=shape)
        except ShapeError:
            raise ShapeError(f"reshape: cannot view shape {self.shape} ({self.numel()} elements) "
                             f"as {shape}") from None

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        end = end_dim % max(self.ndim, 1)
        shape = self.shape[:start_dim] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def permute(self, *axes):
        axes = tuple(a % self.ndim for a in _shape_args(axes))
        if sorted(axes) != list(range(self.ndim)):
            raise ShapeError(f"permute: {axes} is not a permutation of the {self.ndim} dims of {self.shape}")
        return F.Permute.apply(self, axes=axes)

    def transpose(self, dim0=-2, dim1=-1):
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return F.Permute.apply(self, axes=tuple(axes))

    @property
    def T(self):
        return F.Permute.apply(self, axes=tuple(reversed(range(self.ndim))))

    def expand(self, *shape):
        shape = _shape_args(shape)
        lead = len(shape) - self.ndim
        if lead < 0:
            raise ShapeError(f"expand: cannot expand shape {self.shape} to fewer dims {shape}")
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        for i, n in enumerate(self.shape):
            if n != 1 and n != shape[i + lead]:
                raise ShapeError(f"expand: shape {self.shape} cannot expand to {shape} "
                                 f"(dim {i} has size {n}, not 1)")
        return F.Expand.apply(self, shape=shape)

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dim = dim % self.ndim
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

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
            index = (slice(None),) * dim + (slice(start, start + size),)
            pieces.append(self[index])
            start += size
        return tuple(pieces)

    def chunk(self, chunks, dim=0):
        length = self.shape[dim % self.ndim]
        return self.split(max(1, -(-length // chunks)), dim)

    def __getitem__(self, index):
        index = _normalize_index(index, self)
        return F.GetItem.apply(self, index=index)

    def gather(self, dim, index):
        """torch.gather: out[i][j] = self[i][index[i][j]] along `dim`."""
        index = index.data if isinstance(index, Tensor) else backend.asarray(index, device=self.device)
        F.check_index_array(index, "gather")
        if index.ndim != self.ndim:
            raise ShapeError(f"gather: index of shape {tuple(index.shape)} must have as many dims as "
                             f"the input of shape {self.shape}")
        dim = dim % self.ndim
        xp = get_xp(self)
        grids = list(xp.meshgrid(*[xp.arange(n) for n in index.shape], indexing="ij", sparse=True))
        grids[dim] = index
        return F.GetItem.apply(self, index=tuple(grids))

    # ---- misc ------------------------------------------------------------------------
    def one_hot(self, num_classes=-1):
        return one_hot(self, num_classes)


autograd._make_tensor, autograd._Tensor = Tensor._make, Tensor


def get_xp(t):
    return backend.get_array_module(t.data)


def _device_or_cpu(data):
    try:
        return backend.device_of(data)
    except TypeError:
        return "cpu"


def _is_python_float_data(data):
    """Python floats (or lists of them) become the default dtype, as in torch."""
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return type(data) is float  # not np.float64, a float subclass that keeps its own dtype


def _is_dtype_name(name):
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(n) for n in shape)


def _reduced_shape(shape, axes):
    if axes is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _normalize_index(index, tensor):
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        if isinstance(i, Tensor):
            i = i.data
        elif isinstance(i, (list, np.ndarray)) or hasattr(i, "__array__") or hasattr(i, "__dlpack__"):
            i = backend.asarray(backend.host_array(i), device=tensor.device)  # lists, numpy, torch
        if hasattr(i, "dtype") and hasattr(i, "shape"):
            F.check_index_array(i)
            if backend.device_of(i) != tensor.device:
                raise DeviceError(f"getitem: index on {backend.device_of(i)}, tensor on {tensor.device}")
        elif isinstance(i, float):
            raise F.DTypeError(f"getitem: float index {i!r}; indices must be integers")
        out.append(i)
    return tuple(out)


# ---- free functions --------------------------------------------------------------------

def matmul(a, b):
    """numpy/torch matmul: 1-D operands are promoted to matrices and the extra dim dropped."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = a.reshape(1, -1)
    if squeeze_b:
        b = b.reshape(-1, 1)
    out = F.MatMul.apply(a, b)
    if squeeze_a:
        out = out.squeeze(-2)
    if squeeze_b:
        out = out.squeeze(-1)
    return out


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("cat: needs at least one tensor")
    dim = dim % tensors[0].ndim
    return F.Cat.apply(*tensors, axis=dim)


concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    dim = dim % (tensors[0].ndim + 1)
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def where(condition, a, b):
    """a where condition holds, else b; the condition (any dtype, read as bool) gets no gradient."""
    if not isinstance(a, Tensor):
        a = b._lift(a)
    if not isinstance(b, Tensor):
        b = a._lift(b)
    if isinstance(condition, Tensor):
        condition = condition.data
    elif not backend.is_array(condition):  # a list, or a foreign (torch) tensor
        condition = backend.asarray(backend.host_array(condition), device=a.device)
    if backend.device_of(condition) != a.device:
        raise DeviceError(f"where: condition on {backend.device_of(condition)}, values on {a.device}")
    return F.Where.apply(a, b, condition=condition.astype(bool))


def one_hot(indices, num_classes=-1):
    """Integer tensor (...) -> (..., num_classes) of 0/1 in the default float dtype; no grad."""
    data = indices.data
    F.check_index_array(data, "one_hot")
    xp = backend.get_array_module(data)
    if num_classes < 0:
        num_classes = int(data.max()) + 1
    return Tensor._make((data[..., None] == xp.arange(num_classes)).astype(backend.get_default_dtype()),
                        False, None)
