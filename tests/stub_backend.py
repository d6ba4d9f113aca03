"""A numpy-backed stand-in for a GPU array library, strict where cupy is strict.

Its arrays refuse to mix with plain numpy arrays, refuse implicit conversion
(`np.asarray(stub)`), and refuse numpy functions and ufuncs called on them. An op that
reaches for numpy instead of `get_array_module(x)` therefore fails here, on a machine
without a GPU, as it would fail on cupy. Like cupy, reductions return 0-d arrays,
never numpy scalars.
"""
from __future__ import annotations

import numpy as np

from tinygrad_rnn import backend

PREFIX = "stub"


class StubError(TypeError):
    pass


def _unwrap(value, allow_host=False):
    """StubArray -> its ndarray, recursively through lists/tuples; plain ndarrays refused."""
    if isinstance(value, StubArray):
        return value._a
    if isinstance(value, np.ndarray):
        if allow_host:
            return value
        raise StubError(f"a plain numpy array of shape {value.shape} was mixed with stub arrays "
                        "(on cupy this fails too): create arrays through the backend's array module")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, allow_host) for v in value)
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return StubArray(value)
    if isinstance(value, np.generic):
        return StubArray(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


class StubArray:
    __slots__ = ("_a",)

    def __init__(self, array):
        self._a = array

    # numpy must not silently take these over
    __array_ufunc__ = None

    def __array_function__(self, func, types, args, kwargs):
        raise StubError(f"numpy.{func.__name__} was called on a stub array: use the backend's array module")

    def __array__(self, dtype=None, copy=None):
        raise StubError("implicit conversion of a stub array to numpy (cupy refuses it too): use backend.to_numpy")

    def __getattr__(self, name):
        attr = getattr(self._a, name)
        if callable(attr):
            return _Func(attr)
        return _wrap(attr)

    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index)])

    def __setitem__(self, index, value):
        self._a[_unwrap(index)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __repr__(self):
        return f"stub({self._a!r})"

    def __iter__(self):
        return (_wrap(x) for x in self._a)


def _binary(name):
    def method(self, other):
        return _wrap(getattr(self._a, name)(_unwrap(other)))
    method.__name__ = name
    return method


def _unary(name):
    def method(self):
        return _wrap(getattr(self._a, name)())
    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lt", "le", "gt", "ge", "eq", "ne"):
    for _form in ("__{}__", "__r{}__", "__i{}__"):
        _dunder = _form.format(_name)
        if hasattr(np.ndarray, _dunder):
            setattr(StubArray, _dunder, _binary(_dunder))
for _dunder in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(StubArray, _dunder, _unary(_dunder))
StubArray.__hash__ = None


class _Func:
    """A numpy callable (function, ufunc, method) that unwraps its arguments and wraps its results."""

    __slots__ = ("fn", "allow_host")

    def __init__(self, fn, allow_host=False):
        self.fn, self.allow_host = fn, allow_host

    def __call__(self, *args, **kwargs):
        args = _unwrap(args, self.allow_host)
        kwargs = {k: _unwrap(v, self.allow_host) for k, v in kwargs.items()}
        return _wrap(self.fn(*args, **kwargs))

    def __getattr__(self, name):  # ufunc.at, ufunc.reduce, ...
        return _Func(getattr(self.fn, name), self.allow_host)


class _Namespace:
    """The stub's `xp`: numpy's names, over stub arrays. Host arrays enter only via asarray/array."""

    HOST_ENTRY = {"asarray", "array", "ascontiguousarray"}

    def __init__(self, module=np):
        self._module = module

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if isinstance(attr, type) or isinstance(attr, (int, float, np.dtype)) or attr is None:
            return attr  # dtypes, constants
        if callable(attr):
            return _Func(attr, allow_host=name in self.HOST_ENTRY)
        if hasattr(attr, "__name__") and type(attr).__name__ == "module":
            return _Namespace(attr)
        return attr


xp = _Namespace()


def register():
    backend.register_backend(backend.Backend(
        PREFIX, xp, StubArray,
        device_of=lambda a: f"{PREFIX}:0",
        to_host=lambda a: a._a.copy(),
        from_host=lambda a, device: StubArray(np.array(a, copy=True)),
        storage=lambda a: a._a if a._a.base is None else a._a.base))
