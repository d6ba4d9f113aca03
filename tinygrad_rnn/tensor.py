"""The Tensor: a backend array, the node of the graph that made it, and a version counter.

`apply` is the dispatch: it runs an op's forward on the inputs' arrays, wraps the result in a
Tensor and records the op's node. Every Tensor method that computes goes through it; the
composite ops (mean, var, softmax, split, ...) live in composite.py, built from the primitives.

Versions: every storage has a counter, shared by the views of it, that in-place writes bump
(in-place ops, `t[i] = v`, optimiser steps). A node records the versions of the tensors it
saved, and backward refuses to use one that changed since.
"""
from __future__ import annotations

import math
import operator
import threading

import numpy as np

from . import autograd, backend, dtypes, linalg
from . import ops as F
from .composite import CompositeOps, normalize_axes, require_float, wrap_dim
from .errors import DeviceError, DTypeError, GraphError, OutOfRangeError, ShapeError, TinyGradRNNError

_state = autograd.state
_ndarray = np.ndarray
_new = object.__new__
_NO_PARENTS = [(None,) * n for n in range(8)]
_grad_lock = threading.Lock()
_SHAPES = {}  # the output shapes nodes record, interned: a kept graph of an unroll repeats a few shapes
_next_number = autograd.node_numbers.__next__
_anomaly_threads = autograd.anomaly_threads  # empty unless some thread turned anomaly mode on
ensure_array = backend.ensure_array
# The seed of backward() from a scalar, made once per dtype: backwards never write into
# their incoming gradient, so sharing a read-only array is safe.
_ONES = {np.dtype(t): np.ones((), t) for t in (np.float16, np.float32, np.float64)}
for _one in _ONES.values():
    _one.flags.writeable = False


class Tensor(CompositeOps):
    # _vc: the storage's version counter, [n], made on first need and shared with views;
    # _view: (base tensor, chain of view ops from it, base version when this node was made) or None
    __slots__ = ("_data", "_grad", "requires_grad", "_ctx", "_vc", "_view", "__dict__", "__weakref__")
    name = None  # an optional label for graph rendering
    _hooks = None  # a leaf's {handle id: hook}, run on its summed gradient before .grad
    __array_priority__ = 1000  # numpy scalars on the left defer to our __radd__ etc.

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data._data
        if dtype is None and not backend.is_array(data):
            dtype = dtypes.infer_dtype(data)  # torch's: [1, 2.5] is float32, not numpy's float64
        # A copy, as torch.tensor makes: in-place optimiser steps must not reach the caller's array.
        try:
            self._data = backend.asarray(data, dtype=dtype, copy=True,
                                        device=device if device is not None else _device_or_cpu(data))
        except ValueError as e:  # ragged lists, which numpy refuses once it is told the dtype
            raise DTypeError(f"tensor(): could not make a {dtype} tensor from {_describe(data)} ({e})") from None
        if self._data.dtype.kind not in _NUMERIC_KINDS:  # None, strings, ragged lists: numpy makes object arrays
            raise DTypeError(f"tensor(): could not infer a numeric dtype from {_describe(data)} "
                             f"(numpy made {self._data.dtype})")
        self._grad = self._ctx = self._vc = self._view = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, requires_grad=False, ctx=None):
        t = _new(cls)
        t._data = data if type(data) is _ndarray else ensure_array(data)
        t.requires_grad, t._ctx = requires_grad, ctx
        t._grad = t._vc = t._view = None
        return t

    # ---- properties ----------------------------------------------------------------
    # The array lives in `_data`: the engine reads it on every op, and a slot read is the cheapest
    # there is. `.data` is torch's, for ported code (`p.data.add_(p.grad, alpha=-lr)`).
    @property
    def data(self):
        """torch's .data: a Tensor on the same storage that does not require grad and has no graph.
        As in torch, it has a version counter of its own, so writes through it are invisible to
        autograd: a node that saved this storage will not notice (use `with tg.no_grad():` and the
        tensor itself to be caught)."""
        return Tensor._make(self._data)

    @data.setter
    def data(self, value):
        """`t.data = other`: t takes other's storage (shape and dtype too, as in torch) and keeps its
        requires_grad, graph node and .grad."""
        if not isinstance(value, Tensor):
            raise DTypeError(f"Tensor.data has to be set to a Tensor, but got {type(value).__name__}")
        # t no longer views its old storage: a fresh counter, and no base to be made again from
        self._data, self._vc, self._view = value._data, None, None

    @property
    def shape(self):
        return self._data.shape  # a tuple on every backend

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def ndim(self):
        return self._data.ndim

    def size(self, dim=None):
        """The shape (a tuple, as torch.Size is), or the length of one dim; numel() counts elements."""
        if dim is None:
            return self.shape
        if self.ndim == 0:
            raise OutOfRangeError(f"size({dim}): dimension specified as {dim} but the tensor has no dimensions")
        return self.shape[wrap_dim(dim, self.ndim)]

    def numel(self):
        return int(self._data.size)

    def dim(self):
        return self._data.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        """The rows, as torch iterates (`for row in t`, `h, c = t`): unbind(0)."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    @property
    def is_leaf(self):
        return self._fresh()._ctx is None

    @property
    def grad_fn(self):
        return self._fresh()._ctx

    def _fresh(self):
        """self, with its node made again if it is a view whose base was written since (apply does
        this for its inputs; every other way in to the graph goes through here)."""
        if self._view is not None and self._view[2] != self._vc[0]:
            _refresh_view(self)
        return self

    def _grad_target(self):
        """What the engine sends this tensor's gradient to: its node, or itself as a leaf."""
        ctx = self._fresh()._ctx
        return self if ctx is None else ctx

    @property
    def _version(self):
        """How many in-place writes this tensor's storage has had (torch's `_version`)."""
        return 0 if self._vc is None else self._vc[0]

    def __repr__(self):
        extra = f", device='{self.device}'" if self.device != "cpu" else ""
        if self._ctx is not None:
            extra += f", grad_fn=<{self._ctx.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    # ---- conversion ------------------------------------------------------------------
    def numpy(self):
        return backend.to_numpy(self._data)

    def tolist(self):
        return self.numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        """np.asarray(t): the values on the host, as numpy() gives them."""
        array = self.numpy()
        if dtype is not None and array.dtype != dtype:
            return array.astype(dtype)
        return array.copy() if copy else array

    def item(self):
        if self._data.size != 1:
            raise ShapeError(f"item(): only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def to(self, device=None, dtype=None):
        """Move to a device and/or cast to a dtype (differentiable, as in torch)."""
        device, dtype = split_device_dtype(device, dtype)
        out = self
        if device is not None and device != self.device:
            out = apply(F.ToDevice, out, device=device)
        if dtype is not None and dtype != out.dtype:
            out = apply(F.Cast, out, dtype=dtype)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def half(self):
        return self.to(dtype=np.float16)

    def long(self):
        return self.to(dtype=np.int64)

    def astype(self, dtype):
        return self.to(dtype=dtype)

    def type(self, dtype=None):
        """Without an argument, the type's name in torch's style ('tinygrad_rnn.FloatTensor'); with a
        dtype (or such a name, torch's or ours), .to(dtype)."""
        if dtype is None:
            return f"tinygrad_rnn.{_TYPE_NAMES.get(self.dtype, str(self.dtype))}"
        if isinstance(dtype, str) and "." in dtype:
            module, _, name = dtype.partition(".")
            by_name = {v: k for k, v in _TYPE_NAMES.items()}
            if module not in ("torch", "tinygrad_rnn") or name not in by_name:
                raise DTypeError(f"type(): invalid type {dtype!r}; expected one of "
                                 f"{sorted('tinygrad_rnn.' + n for n in by_name)}")
            dtype = by_name[name]
        return self.to(dtype=dtype)

    def contiguous(self):
        """self: numpy arrays need no reordering before the ops here use them."""
        return self

    # ---- new tensors with self's dtype and device (torch's new_*) ----------------------
    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        size = _shape_args((size,) if isinstance(size, int) else tuple(size))
        if any(n < 0 for n in size):
            raise ShapeError(f"new_full: trying to create a tensor with negative dimension: {size}")
        device = self.device if device is None else backend.canonical_device(device)
        array = backend.xp_for(device).full(size, fill_value, dtype=self.dtype if dtype is None else np.dtype(dtype))
        return Tensor._make(array).requires_grad_(requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_shape_args(size), 0, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_shape_args(size), 1, dtype=dtype, device=device, requires_grad=requires_grad)

    # torch's new_empty leaves the memory uninitialised; zeros cost little more and are never garbage
    new_empty = new_zeros

    def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
        """A copy of data (never sharing memory, as torch's), in self's dtype and device unless told."""
        data = data.detach()._data if isinstance(data, Tensor) else data
        return Tensor(data, dtype=self.dtype if dtype is None else dtype,
                      device=self.device if device is None else device, requires_grad=requires_grad)

    # ---- graph -----------------------------------------------------------------------
    def detach(self):
        """The same storage (and version counter), cut from the graph (truncated BPTT)."""
        t = Tensor._make(self._data)
        t._vc = _counter(self)
        return t

    def clone(self):
        """A copy that keeps the graph: gradients flow back to self."""
        return apply(F.Clone, self)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.dtype.kind not in "fc":
            raise DTypeError(f"only floating tensors can require grad, got {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise GraphError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in `.grad` after backward (leaves always do)."""
        if not self._fresh().requires_grad:
            raise GraphError(f"retain_grad() on a tensor of shape {self.shape} that does not require grad")
        if self._ctx is not None:
            self._ctx.retain(self)
        return self

    @property
    def retains_grad(self):
        ctx = self._ctx
        return ctx is not None and ctx.retained is not None and ctx.retained() is self

    def register_hook(self, hook):
        """hook(grad: Tensor) -> Tensor or None, called with this tensor's gradient during backward;
        what it returns (same shape and dtype) replaces the gradient. Returns a handle whose
        remove() unregisters it."""
        if not self._fresh().requires_grad:
            raise GraphError(f"register_hook on a tensor of shape {self.shape} that does not require grad")
        on_arrays = _array_hook(hook)
        if self._ctx is not None:
            return self._ctx.register_hook(on_arrays)
        if self._hooks is None:
            self._hooks = {}
        handle = autograd.RemovableHandle(self._hooks)
        self._hooks[handle.id] = on_arrays
        return handle

    @property
    def grad(self):
        """The gradient backward accumulated into this tensor (a Tensor of its shape, dtype and
        device), or None. Assigning checks what torch checks: a Tensor (or None) of this tensor's
        shape, dtype and device; anything else would be broadcast, cast or crash later, in backward
        or in an optimizer step."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            check_grad_fits(self, value)
        self._grad = value

    def zero_grad(self):
        self._grad = None

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        if create_graph:
            raise GraphError("backward(create_graph=True): higher-order gradients are not supported")
        autograd.run_backward([self], [self._seed(gradient)], bool(retain_graph))

    def _seed(self, gradient=None):
        """The gradient array backward starts from: ones for a one-element tensor, else `gradient`."""
        if not self._fresh().requires_grad:
            raise GraphError(f"backward() on a tensor of shape {self.shape} that does not require grad "
                             "(no input had requires_grad=True, or it was made under no_grad())")
        data = self._data
        if gradient is None:
            if data.size != 1:
                raise GraphError(f"backward() on a non-scalar tensor of shape {self.shape} needs an "
                                 "explicit gradient of that shape")
            seed = _ONES.get(data.dtype) if type(data) is _ndarray else None
            if seed is None or seed.shape != data.shape:
                seed = backend.get_array_module(data).ones(data.shape, dtype=data.dtype)
            return seed
        seed = gradient._data if isinstance(gradient, Tensor) else backend.asarray(gradient, device=self.device)
        if tuple(seed.shape) != self.shape:
            raise ShapeError(f"backward(): gradient of shape {tuple(seed.shape)} for a tensor of shape {self.shape}")
        return seed.astype(self.dtype, copy=False)

    def _accumulate_grad(self, grad, owned=False):
        """Add a gradient array into .grad (the engine calls this for leaves and retained grads).
        Under a lock: two threads' backwards into one shared parameter must both count."""
        dtype = self._data.dtype
        if grad.dtype is not dtype and grad.dtype != dtype:
            grad, owned = grad.astype(dtype), True
        with _grad_lock:
            if self._grad is None:
                # Unless the engine made it, a copy: an op's backward may hand one array to several inputs.
                self._grad = Tensor._make(grad if owned else grad.copy())
            else:
                self._grad._data = ensure_array(self._grad._data + grad)

    def _bump_version(self):
        """Record an in-place write to the storage (optimisers call this after updating ._data)."""
        _counter(self)[0] += 1

    # ---- helpers to lift constants -------------------------------------------------
    def _lift(self, other):
        """other as a Tensor beside self: a Python/numpy scalar as a 0-d constant of the dtype torch gives
        `self op other` (float32 * 2.5 stays float32, int64 * 2.5 is float32); an array or a list as
        tg.tensor makes it (its own dtype)."""
        if isinstance(other, Tensor):
            return other
        if dtypes.is_scalar(other):
            dtype = dtypes.result_type_with_scalar(self._data.dtype, other)
            return Tensor._make(_scalar_array(other, dtype, get_xp(self)))
        return Tensor(other, device=self.device)

    def _wrap(self, array):
        """A constant tensor (no graph) holding `array`; composite ops use it."""
        return Tensor._make(array)

    # ---- arithmetic ----------------------------------------------------------------
    # Promotion only when the operands are not two Tensors of one dtype (the common case pays two attribute
    # reads). `is`: numpy hands out one dtype object per builtin dtype; an equal but distinct one (a
    # byte-swapped array's) merely takes the slow path, which finds nothing to cast.
    def __add__(self, other):
        if not (isinstance(other, Tensor) and other._data.dtype is self._data.dtype):
            self, other = _promoted(self, other)
        return apply(F.Add, self, other)

    def __radd__(self, other):
        return apply(F.Add, *_promoted(other, self))

    def __sub__(self, other):
        if not (isinstance(other, Tensor) and other._data.dtype is self._data.dtype):
            self, other = _promoted(self, other)
        return apply(F.Sub, self, other)

    def __rsub__(self, other):
        return apply(F.Sub, *_promoted(other, self))

    def __mul__(self, other):
        if not (isinstance(other, Tensor) and other._data.dtype is self._data.dtype):
            self, other = _promoted(self, other)
        return apply(F.Mul, self, other)

    def __rmul__(self, other):
        return apply(F.Mul, *_promoted(other, self))

    def __truediv__(self, other):
        dtype = self._data.dtype
        if not (isinstance(other, Tensor) and other._data.dtype is dtype and dtype.kind in "fc"):
            self, other = _promoted(self, other, true_divide=True)
        return apply(F.Div, self, other)

    def __rtruediv__(self, other):
        return apply(F.Div, *_promoted(other, self, true_divide=True))

    def __pow__(self, exponent):
        if dtypes.is_scalar(exponent):
            dtype = dtypes.result_type_with_scalar(self.dtype, exponent)  # int64 ** 2.5 is float32, bool ** 2 int64
            # a Python number: numpy would let a float64 numpy scalar widen a float32 array
            exponent = exponent.item() if isinstance(exponent, np.generic) else exponent
            return apply(F.PowScalar, self if self.dtype == dtype else self.to(dtype=dtype), exponent=exponent)
        return apply(F.Pow, *_promoted(self, exponent))

    def __rpow__(self, base):
        return apply(F.Pow, *_promoted(base, self))

    def __neg__(self):
        return apply(F.Neg, self)

    def __matmul__(self, other):
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    add, sub, mul, div, pow, neg = __add__, __sub__, __mul__, __truediv__, __pow__, __neg__

    # ---- in place: the new value is computed out of place, then written into the storage ----
    def _inplace(self, compute, what):
        """self's storage = compute(self); the graph then continues from the new value's node."""
        view = self._view
        owner = self if view is None else view[0]
        _check_view_write(self, what)
        if _state.grad_enabled and owner.requires_grad and owner._ctx is None:
            of = "a view of a leaf" if view is not None else "a leaf"
            raise GraphError(f"{what}: {of} tensor of shape {owner.shape} that requires grad cannot be changed "
                             "in place while grad is enabled; do it under tg.no_grad() (as optimisers do), or "
                             "on a .clone()")
        new = self._fitted(compute(self), what)
        if new.requires_grad and _saves_storage_of(new._ctx, self):
            new = self._fitted(compute(self.clone()), what)  # the op saved the values about to be overwritten
        if new.requires_grad and view is not None:
            self._write_region(owner, view[1], new)
            return self
        self._write(lambda data: _assign(data, Ellipsis, new._data), what)
        if new.requires_grad:
            _move_retained(self, new._ctx)
            self._ctx, self.requires_grad = new._ctx, True
        return self

    def _fitted(self, new, what):
        """new, checked to fit self's shape and device and cast to its dtype as torch's in-place ops do."""
        if new.shape != self.shape:
            raise ShapeError(f"{what}: the result has shape {new.shape}, which cannot be written into the "
                             f"tensor of shape {self.shape} (in-place ops do not broadcast their target)")
        if new.dtype != self.dtype:
            if not np.can_cast(new.dtype, self.dtype, "same_kind"):
                raise DTypeError(f"{what}: result type {new.dtype} cannot be cast to the tensor's {self.dtype}")
            new = new.to(dtype=self.dtype)
        return new

    def _write(self, write, what):
        try:
            write(self._data)
        except ValueError as e:  # a read-only broadcast view (expand) refuses writes
            raise ShapeError(f"{what}: cannot write into this tensor of shape {self.shape} ({e}); "
                             "expanded tensors share memory between elements, .clone() it first") from None
        self._bump_version()

    def _write_region(self, base, chain, value):
        """base's region under chain = value, recorded (CopySlices); self, a view of base, follows."""
        out = apply(F.CopySlices, base, value, chain=chain, inplace=True)
        self._bump_version()  # base and its views share the counter
        _move_retained(base, out._ctx)
        base._ctx, base.requires_grad = out._ctx, True
        if self is not base:
            _refresh_view(self)

    def __setitem__(self, index, value):
        index = _normalize_index(index, self)
        value = self._fitted_value(value)
        _check_view_write(self, "t[...] = v", value)
        view = self._view
        base, chain = (self, ()) if view is None else view[:2]
        if _state.grad_enabled and (base.requires_grad or value.requires_grad):
            if base.requires_grad and base._ctx is None:
                raise GraphError(f"t[...] = v: the leaf tensor of shape {base.shape} that requires grad cannot be "
                                 "written in place while grad is enabled; do it under tg.no_grad() or on a .clone()")
            self._write_region(base, chain + ((F.GetItem, {"index": index}),), value)
        else:
            self._write(lambda data: _assign(data, index, value._data), "t[...] = v")

    def _fitted_value(self, value, what="t[...] = v"):
        """A value to write into self (setitem, fill_, masked_fill_, copy_): moved nowhere, but cast
        to self's dtype as torch does (0.7 into an int tensor is 0)."""
        value = self._lift(value)
        if value.device != self.device:
            raise DeviceError(f"{what}: value on {value.device}, tensor on {self.device}")
        if value.dtype != self.dtype:
            if value.requires_grad and self.dtype.kind not in "fc":
                raise DTypeError(f"{what}: a {value.dtype} value that requires grad cannot be written into a "
                                 f"{self.dtype} tensor")
            value = value.to(dtype=self.dtype)
        return value

    def add_(self, other, alpha=1):
        return self._inplace(lambda s: s + (other if alpha == 1 else self._lift(other) * alpha), "add_")

    def sub_(self, other, alpha=1):
        return self._inplace(lambda s: s - (other if alpha == 1 else self._lift(other) * alpha), "sub_")

    def mul_(self, other):
        return self._inplace(lambda s: s * other, "mul_")

    def div_(self, other):
        return self._inplace(lambda s: s / other, "div_")

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda s: s.clamp(min, max), "clamp_")

    clip_ = clamp_

    def masked_fill_(self, mask, value):
        value = self._fitted_value(value, "masked_fill_")
        return self._inplace(lambda s: where(mask, value, s), "masked_fill_")

    def masked_fill(self, mask, value):
        """self with value where mask holds (out of place; mask and self broadcast, as torch's)."""
        return where(mask, self._fitted_value(value, "masked_fill"), self)

    def fill_(self, value):
        value = self._fitted_value(value, "fill_")
        return self._inplace(lambda s: where(True, value, s), "fill_")

    def zero_(self):
        return self.fill_(0)

    def normal_(self, mean=0.0, std=1.0):
        """In place, values from N(mean, std^2), drawn on the host from the global generator
        (tg.manual_seed) as nn.init's are."""
        return self._fill_from_host(backend.host_rng().normal(mean, std, size=self.shape), "normal_")

    def uniform_(self, low=0.0, high=1.0):
        """In place, values from U[low, high) (torch's `from`, `to`: positional, as Python spells it)."""
        return self._fill_from_host(backend.host_rng().uniform(low, high, size=self.shape), "uniform_")

    def _fill_from_host(self, values, what):
        if self.dtype.kind not in "fc":
            raise DTypeError(f"{what}: expects a floating tensor, got {self.dtype}")
        value = Tensor._make(backend.asarray(values.astype(self.dtype), device=self.device))
        return self._inplace(lambda s: where(True, value, s), what)

    def copy_(self, src):
        """Copy src's values (broadcast, cast, moved) into self; gradients flow to src."""
        src = self._fitted_value(src.to(self.device) if isinstance(src, Tensor) else src, "copy_")
        return self._inplace(lambda s: where(True, src, s), "copy_")

    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_

    # ---- comparisons: no grad --------------------------------------------------------
    def _compare(self, other, op):
        a, b = _promoted(self, other)  # compared in the common dtype, as torch does (int64 vs 2.5: as float32)
        return Tensor._make(op(a._data, b._data))

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
        return apply(F.Exp, self)

    def log(self):
        return apply(F.Log, self)

    def tanh(self):
        return apply(F.Tanh, self)

    def sigmoid(self):
        return apply(F.Sigmoid, self)

    def relu(self):
        return apply(F.Relu, self)

    def sqrt(self):
        return apply(F.Sqrt, self)

    def sin(self):
        return apply(F.Sin, self)

    def cos(self):
        return apply(F.Cos, self)

    def erf(self):
        return apply(F.Erf, self)

    def abs(self):
        return apply(F.Abs, self)

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: at least one of min and max must be given")
        return apply(F.Clip, self, low=min, high=max)

    clamp = clip

    def maximum(self, other):
        return apply(F.Maximum, *_promoted(self, other))

    def minimum(self, other):
        return apply(F.Minimum, *_promoted(self, other))

    # ---- reductions ------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        if dim is None and axis is None and not keepdim and not keepdims:  # the loss's usual sum
            return apply(F.Sum, self)
        axes = normalize_axes(axis if dim is None else dim, self.ndim)
        return apply(F.Sum, self, axis=axes, keepdims=bool(keepdims or keepdim))

    def log_softmax(self, dim=-1):
        """x - logsumexp(x, dim): one node (ops.LogSoftmax), not the formula's six."""
        require_float(self, "log_softmax")
        return apply(F.LogSoftmax, self, axis=normalize_axes(dim, self.ndim))

    def amax(self, dim=None, keepdim=False):
        return apply(F.Max, self, axis=normalize_axes(dim, self.ndim), keepdims=keepdim)

    def amin(self, dim=None, keepdim=False):
        return apply(F.Min, self, axis=normalize_axes(dim, self.ndim), keepdims=keepdim)

    def argmax(self, dim=None, keepdim=False):
        return self._arg(get_xp(self).argmax, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._arg(get_xp(self).argmin, dim, keepdim)

    def _arg(self, fn, dim, keepdim):
        if dim is None:
            return Tensor._make(fn(self._data.reshape(-1)).astype(np.int64))
        dim = wrap_dim(dim, self.ndim)
        data = self._data if self.ndim else self._data.reshape(1)  # a 0-d tensor's one element is at 0
        return Tensor._make(fn(data, axis=dim, keepdims=keepdim and self.ndim > 0).astype(np.int64))

    # ---- shape -----------------------------------------------------------------------
    def reshape(self, *shape):
        """A view of shape `shape` (one entry may be -1). Always a new tensor, even for the same shape:
        `p.reshape(p.shape).requires_grad_(False)` must not freeze p."""
        shape = _view_shape(_shape_args(shape), self)
        try:
            return apply(F.Reshape, self, shape=shape)
        except ShapeError:
            raise ShapeError(f"reshape: cannot view shape {self.shape} ({self.numel()} elements) "
                             f"as {shape}") from None

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = wrap_dim(start_dim, self.ndim), wrap_dim(end_dim, self.ndim)
        if start > end:
            raise ShapeError(f"flatten() has invalid args: start_dim ({start_dim}) cannot come after end_dim "
                             f"({end_dim}) for a tensor of shape {self.shape}")
        if start == end:
            return self  # as torch: nothing to merge
        return self.reshape(self.shape[:start] + (math.prod(self.shape[start:end + 1]),) + self.shape[end + 1:])

    def permute(self, *dims):
        dims = _shape_args(dims)
        if len(dims) != self.ndim:
            raise ShapeError(f"permute: {dims} names {len(dims)} dims, but the tensor of shape {self.shape} "
                             f"has {self.ndim}")
        axes = tuple(wrap_dim(d, self.ndim) for d in dims)
        if len(set(axes)) != len(axes):
            raise ShapeError(f"permute(): duplicate dims are not allowed, got {dims}")
        return apply(F.Permute, self, axes=axes)

    def transpose(self, dim0=-2, dim1=-1):
        axes = list(range(self.ndim))
        dim0, dim1 = wrap_dim(dim0, self.ndim), wrap_dim(dim1, self.ndim)
        if self.ndim == 0:
            return apply(F.Permute, self, axes=())
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return apply(F.Permute, self, axes=tuple(axes))

    def t(self):
        """torch's t(): a 2-D tensor transposed; 0-d and 1-d ones as they are."""
        if self.ndim > 2:
            raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D "
                             f"(shape {self.shape}); use transpose(dim0, dim1) or permute")
        return self.transpose(0, -1) if self.ndim == 2 else self

    def norm(self, p="fro", dim=None, keepdim=False):
        """torch's Tensor.norm for vectors: p in {'fro' (= 2), numbers, inf, -inf} (linalg.vector_norm)."""
        if isinstance(p, str):
            if p != "fro":
                raise ValueError(f"norm: p={p!r} is not supported; use a number or 'fro'")
            p = 2
        return linalg.vector_norm(self, p, dim, keepdim)

    @property
    def T(self):
        return apply(F.Permute, self, axes=tuple(reversed(range(self.ndim))))

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
        return apply(F.Expand, self, shape=shape)

    def unsqueeze(self, dim):
        dim = wrap_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Without the size-1 dims (all of them, or those of dim: an int or a tuple); always a new tensor."""
        dims = range(self.ndim) if dim is None else normalize_axes(dim, self.ndim)
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or i not in dims))

    def __getitem__(self, index):
        return apply(F.GetItem, self, index=_normalize_index(index, self))

    def one_hot(self, num_classes=-1):
        return one_hot(self, num_classes)


# torch's legacy type names, for Tensor.type()
_TYPE_NAMES = {np.dtype(k): v for k, v in ((np.float32, "FloatTensor"), (np.float64, "DoubleTensor"),
                                           (np.float16, "HalfTensor"), (np.int64, "LongTensor"),
                                           (np.int32, "IntTensor"), (np.int16, "ShortTensor"),
                                           (np.int8, "CharTensor"), (np.uint8, "ByteTensor"), (np.bool_, "BoolTensor"))}


# ---- type promotion --------------------------------------------------------------------

def _promoted(a, b, true_divide=False):
    """a and b (at least one of them a Tensor; the other may be a scalar, an array or a list) as two
    Tensors of torch's result dtype (dtypes.result_type; for true division, integers go to the default
    float dtype). The hottest binary ops call this only when their operands are not already two Tensors of
    one dtype, and `apply` never does: promotion costs nothing in the common case. A cast operand that
    requires grad goes through a Cast node, so its gradient comes back in its own dtype."""
    if not isinstance(a, Tensor):
        a = b._lift(a)
    elif not isinstance(b, Tensor):
        b = a._lift(b)
    # a lifted scalar already has the result dtype: the general rule is for two tensors of different dtypes
    dtype_a, dtype_b = a._data.dtype, b._data.dtype
    dtype = dtype_a if dtype_a == dtype_b else dtypes.result_type(a, b)
    if true_divide:
        dtype = dtypes.true_divide_type(dtype)
    return (a if dtype_a == dtype else a.to(dtype=dtype)), (b if dtype_b == dtype else b.to(dtype=dtype))


def _scalar_array(value, dtype, xp):
    """A Python/numpy scalar as a 0-d array of dtype. An integer outside dtype's range wraps, as torch's
    cast does (a uint8 tensor + 300 adds 44); one outside int64's is refused."""
    value = value.item() if isinstance(value, np.generic) else value
    try:
        return xp.asarray(value, dtype=dtype)
    except OverflowError:
        try:
            return xp.asarray(value, dtype=np.int64).astype(dtype)
        except OverflowError:
            raise DTypeError(f"the Python integer {value} does not fit int64, so it cannot combine with "
                             f"a {dtype} tensor") from None


# ---- the dispatch ----------------------------------------------------------------------

def apply(op, *inputs, **kwargs):
    """Run `op` (a Function subclass) on Tensors: forward on their arrays, the result wrapped in
    a Tensor, and the op's node recorded when grad mode is on and an input requires grad.
    The hot path of the whole engine: kept free of generators and context managers."""
    ctx = _new(op)
    first = type(inputs[0]._data)
    requires_grad = False
    arrays, parents = [], []
    for t in inputs:
        if t._view is not None and t._view[2] != t._vc[0]:
            _refresh_view(t)  # its base was written in place since its node was made
        if t.requires_grad:
            requires_grad = True
            parents.append(t if t._ctx is None else t._ctx)  # (not `or`: a user's Function may be falsy)
        else:
            parents.append(None)
        data = t._data
        if type(data) is not first:
            _raise_device_mix(ctx, inputs)
        arrays.append(data)
    if first is not _ndarray and len(inputs) > 1:
        _check_same_device(ctx, inputs)
    record = requires_grad and op.differentiable and _state.grad_enabled
    # known before forward, so that forward can save only what the wanted gradients use
    ctx.parents = tuple(parents) if record else _NO_PARENTS[len(inputs)] if len(inputs) < 8 else (None,) * len(inputs)
    try:
        out = ctx.forward(*arrays, **kwargs)
    except (ValueError, IndexError) as e:
        if isinstance(e, TinyGradRNNError) or op.__module__ != F.__name__:
            raise  # the package's own message, or a user Function's error as it is
        if isinstance(e, IndexError):  # an index out of range: still an IndexError, so iteration can stop
            raise OutOfRangeError(f"{ctx.name}: {e} (tensor of shape {tuple(inputs[0].shape)})") from None
        shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
        raise ShapeError(f"{ctx.name}: cannot combine inputs of shapes {shapes}: {e}") from None
    if _anomaly_threads and _state.anomaly:
        autograd.check_finite(out, f"forward of {ctx.name}")
    t = _new(Tensor)
    t._data = out if type(out) is first else ensure_array(out)
    t._grad = t._vc = t._view = None
    if record:
        ctx._sequence_nr = _next_number()
        ctx.scope = _state.scope
        shape = out.shape  # a new tuple each time numpy is asked: nodes keep one per distinct shape
        interned = _SHAPES.get(shape)  # (not `or`: the 0-d shape () is falsy)
        ctx.shape, ctx.dtype = _intern_shape(shape) if interned is None else interned, out.dtype
        if ctx.saved:
            _record_versions(ctx, inputs, t)
        t.requires_grad, t._ctx = True, ctx
    else:
        t.requires_grad, t._ctx = False, None
    if first is not _ndarray or out.base is not None:
        _share_storage(t, inputs, op, kwargs)
    return t


def _intern_shape(shape):
    if len(_SHAPES) < 4096:  # a program whose shapes never repeat gains nothing from keeping them
        _SHAPES[shape] = shape
    return shape


def _record_versions(ctx, inputs, out):
    """For each saved array that is an input's or the output's own array, that tensor's version
    now: backward compares, so a later in-place write is an error, not a wrong gradient.
    Ops save inputs, the output, or arrays they made (tests/test_gradcheck.py checks that no op
    saves a view of an input or output instead), so identity finds them. Records are
    (counter, version, input index or -1 for the output, position in saved)."""
    records = []
    position = -1
    for array in ctx.saved:
        position += 1
        if array is None:
            continue
        index = 0
        for holder in inputs:
            if array is holder._data:
                break
            index += 1
        else:
            if array is not out._data:
                continue  # made in forward (a mask): nobody else can write it
            holder, index = out, -1
        counter = holder._vc
        if counter is None:
            counter = holder._vc = [0]
        records.append((counter, counter[0], index, position))
    ctx.saved_versions = tuple(records)


def _storage(array):
    if type(array) is _ndarray:
        base = array.base
        return array if base is None else base
    return backend.storage(array)


def _share_storage(t, inputs, op, kwargs):
    """An output that is a view of an input shares its version counter and remembers how to be
    made again from the base (for writes through it, and when the base is written)."""
    owner = _storage(t._data)
    for source in inputs:
        if _storage(source._data) is owner:
            t._vc = _counter(source)
            if op is not F.CopySlices:  # that one writes its input: the base itself, not a view
                base, chain = (source, ()) if source._view is None else source._view[:2]
                t._view = (base, chain + ((op, kwargs),), t._vc[0], _state.grad_enabled)
            return


def _refresh_view(t):
    """A view whose base was written in place: its node is made again from the base's current one."""
    if not _state.grad_enabled:
        return
    base, chain, _, made_with_grad = t._view
    regenerated = base
    for op, kwargs in chain:
        regenerated = apply(op, regenerated, **kwargs)
    if regenerated._ctx is not None:
        _move_retained(t, regenerated._ctx)
    t._ctx, t.requires_grad = regenerated._ctx, regenerated.requires_grad
    t._view = (base, chain, t._vc[0], made_with_grad)


def _counter(t):
    counter = t._vc
    if counter is None:
        counter = t._vc = [0]
    return counter


def _saves_storage_of(node, t):
    """Whether a node made from t (by an in-place op's out-of-place value: a few nodes down to
    t's own) saved t's storage, which the in-place write is about to overwrite."""
    if t._vc is None:
        return False
    stack, stop = [node], t._ctx
    while stack:
        node = stack.pop()
        if any(record[0] is t._vc for record in node.saved_versions):
            return True
        stack.extend(p for p in node.parents if isinstance(p, autograd.Function) and p is not stop)
    return False


def _check_view_write(t, what, value=None):
    """As torch: a view made under no_grad cannot be written in place where the write would enter
    a graph, since the view's own history was never recorded."""
    view = t._view
    if view is None or view[3] or not _state.grad_enabled:
        return
    if view[0].requires_grad or (value is not None and value.requires_grad) or t.requires_grad:
        raise GraphError(f"{what}: this view of shape {t.shape} was made under no_grad() and is written in place "
                         "with grad enabled; its base's graph cannot follow. Take the view with grad enabled, "
                         "or write under no_grad()")


def _array_hook(hook):
    """A user's tensor hook (Tensor in, Tensor or None out) as the engine's array hook."""
    def on_arrays(grad):
        result = hook(Tensor._make(grad))
        if result is None:
            return None
        return result._data if isinstance(result, Tensor) else backend.asarray(result, device=backend.device_of(grad))
    on_arrays.__name__ = getattr(hook, "__name__", "hook")
    return on_arrays


def _move_retained(t, node):
    """retain_grad() follows the tensor to the node of its new value, as in torch."""
    old = t._ctx
    if old is not None and old.retained is not None and old.retained() is t:
        node.retain(t)
        old.retain(None)


def _assign(data, index, value):
    data[index] = value


def _check_same_device(ctx, inputs):
    """Same array type is not enough off the CPU: two GPUs share cupy's array type."""
    if len({t.device for t in inputs}) > 1:
        _raise_device_mix(ctx, inputs)


def _raise_device_mix(ctx, inputs):
    devices = " and ".join(sorted({str(x.device) for x in inputs}))
    raise DeviceError(f"{ctx.name}: inputs are on different devices ({devices}); "
                      "move them with .to(device) first")


def get_xp(t):
    return backend.get_array_module(t._data)


def _device_or_cpu(data):
    try:
        return backend.device_of(data)
    except TypeError:
        return "cpu"


_NUMERIC_KINDS = frozenset("biufc")


def _describe(data):
    text = repr(data)
    return f"{type(data).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _is_dtype_name(name):
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


def split_device_dtype(device=None, dtype=None):
    """The argument forms of torch's .to(): (device), (dtype), (device, dtype), keywords;
    a dtype may be a numpy type, a dtype, or a name ("float64"). -> (canonical device or None, dtype or None)."""
    if isinstance(device, (type, np.dtype)) or (isinstance(device, str) and _is_dtype_name(device)):
        device, dtype = None, device
    return (None if device is None else backend.canonical_device(device),
            None if dtype is None else np.dtype(dtype))


def _shape_args(shape):
    """(2, 3), ((2, 3),) or ([2, 3],) -> (2, 3); sizes must be integers (2.5 is refused, as in torch)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        return tuple(operator.index(n) for n in shape)
    except TypeError:
        raise DTypeError(f"sizes must be integers, got {tuple(shape)}") from None


def _view_shape(shape, t):
    """A reshape target: sizes >= 0 and at most one -1 (numpy would take any negative as -1)."""
    for i, n in enumerate(shape):
        if n < -1:
            raise ShapeError(f"reshape: invalid shape dimension {n} at index {i} of shape {shape} "
                             f"(tensor of shape {t.shape})")
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be inferred, got shape {shape}")
    return shape


def _normalize_index(index, tensor):
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        # Index arrays are copied: the graph keeps them, and a later write to the caller's index
        # tensor or array must not move where the gradient goes.
        if isinstance(i, Tensor):
            i = i._data.copy()
        elif isinstance(i, (list, np.ndarray)) or hasattr(i, "__array__") or hasattr(i, "__dlpack__"):
            i = backend.asarray(backend.host_array(i), device=tensor.device, copy=True)  # lists, numpy, torch
        if hasattr(i, "dtype") and hasattr(i, "shape"):
            F.check_index_array(i)
            if backend.device_of(i) != tensor.device:
                raise DeviceError(f"getitem: index on {backend.device_of(i)}, tensor on {tensor.device}")
        elif isinstance(i, float):
            raise DTypeError(f"getitem: float index {i!r}; indices must be integers")
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
    out = apply(F.MatMul, a, b)
    if squeeze_a:
        out = out.squeeze(-2)
    if squeeze_b:
        out = out.squeeze(-1)
    return out


def cat(tensors, dim=0):
    tensors = _tensor_list(tensors, "cat")
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise ShapeError(f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated")
    return apply(F.Cat, *tensors, axis=wrap_dim(dim, tensors[0].ndim))


concatenate = cat


def stack(tensors, dim=0):
    tensors = _tensor_list(tensors, "stack")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    return apply(F.Stack, *tensors, axis=wrap_dim(dim, tensors[0].ndim + 1))


def _tensor_list(tensors, op):
    """cat's and stack's argument: a non-empty sequence of Tensors (arrays are refused, as in torch)."""
    tensors = list(tensors)
    if not tensors:
        raise ShapeError(f"{op}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise DTypeError(f"{op}: expected Tensor as element {i}, but got {type(t).__name__}")
    return tensors


def where(condition, a, b):
    """a where condition holds, else b (promoted to one dtype as torch does); the condition (any dtype,
    read as bool) gets no gradient. With two Python scalars, as torch.where(mask, 1.0, 0.0), the result
    takes the condition's device and the scalars' dtype (the default float dtype for floats)."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        on = condition._data if isinstance(condition, Tensor) else condition
        a = Tensor(a, device=backend.device_of(on) if backend.is_array(on) else None)
    a, b = _promoted(a, b)
    if isinstance(condition, Tensor):
        condition = condition._data
    elif not backend.is_array(condition):  # a bool, a list, or a foreign (torch) tensor
        condition = backend.asarray(backend.host_array(condition), device=a.device)
    if backend.device_of(condition) != a.device:
        raise DeviceError(f"where: condition on {backend.device_of(condition)}, values on {a.device}")
    return apply(F.Where, a, b, condition=condition.astype(bool))


def one_hot(indices, num_classes=-1):
    """Integer tensor (...) -> (..., num_classes) of 0/1 as int64, as torch (`.float()` for a model's input); no grad.
    Classes must lie in [0, num_classes), as torch demands: a zero row would hide a bad label."""
    data = indices._data
    F.check_index_array(data, "one_hot")
    xp = backend.get_array_module(data)
    if num_classes < 0 and data.size == 0:
        raise ShapeError(f"one_hot: can not infer the number of classes from an empty tensor of shape "
                         f"{indices.shape}; pass num_classes")
    if data.size:
        low, high = int(data.min()), int(data.max())
        if low < 0:
            raise OutOfRangeError(f"one_hot: class values must be non-negative, got {low}")
        if num_classes < 0:
            num_classes = high + 1
        elif high >= num_classes:
            raise OutOfRangeError(f"one_hot: class values must be smaller than num_classes ({num_classes}), "
                                  f"got {high}")
    return Tensor._make((data[..., None] == xp.arange(num_classes)).astype(np.int64))


def check_grad_fits(tensor, grad, what="assigned grad"):
    """Raise unless `grad` is a Tensor of tensor's shape, dtype and device (what torch demands of
    `.grad`): the `.grad` setter's check, and the optimizer step's (where `.grad.data = other` may
    have swapped the storage since). The error names both sides and `what` was being checked."""
    if not isinstance(grad, Tensor):
        raise DTypeError(f"{what} must be a Tensor or None, got {type(grad).__name__} (wrap an array with tg.tensor)")
    if grad.shape != tensor.shape:
        raise ShapeError(f"{what} of shape {grad.shape} for a tensor of shape {tensor.shape}")
    if grad.dtype != tensor.dtype:
        raise DTypeError(f"{what} of dtype {grad.dtype} for a tensor of dtype {tensor.dtype}")
    if grad.device != tensor.device:
        raise DeviceError(f"{what} on {grad.device} for a tensor on {tensor.device}")
