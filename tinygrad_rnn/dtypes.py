"""torch's type promotion: the one place that decides the dtype of a result from its operands' dtypes.

numpy's rules differ in the cases that matter to a float32 model: there `int64 * float32`,
`float32 / arange(n)` and `int / int` are float64, and a float64 numpy scalar widens a float32 array.
torch's rules, which these follow:

- dtypes fall in categories, bool < integer < floating (< complex). Between tensors the higher
  category wins (`int64 * float32` is float32, `float16 + int64` is float16), and within a
  category the wider dtype (`int32 + int64` is int64, `uint8 + int8` is int16).
- a Python scalar, or a numpy scalar (torch reads `np.float64(2)` as a Python float), takes part
  by category only: it never widens a tensor within the tensor's category (float32 * 2.5 stays
  float32, int32 + 7 stays int32), and when its category is higher it brings the default dtype
  for it (int64 * 2.5 is float32; bool + 1 is int64).
- a 0-d tensor does the same beside tensors with dims, but brings its own dtype when its category
  is higher (int32 * tensor(2.5, float64) is float64); among 0-d tensors and scalars alone, 0-d
  tensors promote as tensors do.
- true division of integers or bools gives the default float dtype (`int / int` is float32).

The binary ops apply this on the Tensor side (tensor.py) before dispatch, and only when the
operands' dtypes differ: the common case of two tensors of one dtype costs nothing.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend
from .errors import DTypeError

# bool < integer < floating < complex; numpy's kinds: b(ool), u(nsigned), i(nteger), f(loat), c(omplex)
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
_BOOL, _INT64 = np.dtype(bool), np.dtype(np.int64)
_PYTHON_SCALARS = {bool: _BOOL, int: _INT64, float: None}  # exact types first: the ABC checks cost ~1 us


def category(dtype):
    """0 for bool, 1 for integers, 2 for floats, 3 for complex."""
    try:
        return _CATEGORY[dtype.kind]
    except KeyError:
        raise DTypeError(f"no type promotion for {dtype}: tensors hold bool, integer, float or complex "
                         "values") from None


def promote_types(a, b):
    """torch.promote_types: the higher category's dtype, or within one category the wider of the two."""
    a, b = np.dtype(a), np.dtype(b)
    if a == b:
        return a
    category_a, category_b = category(a), category(b)
    if category_a != category_b:
        return a if category_a > category_b else b
    out = np.promote_types(a, b)
    if category(out) != category_a:  # uint64 with a signed integer: numpy goes to float64, torch refuses
        raise DTypeError(f"promote_types: no integer dtype holds both {a} and {b}; cast one with .to(dtype)")
    return out


def is_scalar(value):
    """A Python or numpy scalar (bool, int, float, complex): the operands that promote by category only."""
    return type(value) in _PYTHON_SCALARS or isinstance(value, (numbers.Number, np.bool_))


def scalar_dtype(value):
    """The dtype a scalar brings when its category wins: bool, int64, or the default float (complex) dtype."""
    kind = type(value)
    if kind in _PYTHON_SCALARS:
        return _PYTHON_SCALARS[kind] or backend.get_default_dtype()
    if isinstance(value, np.bool_):
        return _BOOL
    if isinstance(value, numbers.Integral):
        return _INT64
    default = backend.get_default_dtype()
    if isinstance(value, numbers.Real):
        return default
    return np.promote_types(default, np.complex64)  # torch's default complex: complex64, or complex128 for float64


def result_type(*operands):
    """torch.result_type: the dtype of an elementwise op over tensors (anything with `dtype` and `ndim`:
    Tensors, arrays) and Python/numpy scalars. Tensors with dims decide first, then 0-d tensors, then
    scalars, each later group counting only when its category is higher."""
    dims = zero_dims = scalars = None
    for x in operands:
        if is_scalar(x):
            scalars = _promote_optional(scalars, scalar_dtype(x))
        elif x.ndim:
            dims = _promote_optional(dims, x.dtype)
        else:
            zero_dims = _promote_optional(zero_dims, x.dtype)
    return _by_category(_by_category(dims, zero_dims), scalars)


def result_type_with_scalar(dtype, value):
    """result_type(a tensor of `dtype`, the scalar `value`): the scalar operand of a binary op, without the
    general walk (x * 0.5 is common)."""
    return _by_category(dtype, scalar_dtype(value))


def true_divide_type(dtype):
    """The dtype of a true division whose operands promote to `dtype`: integers and bools divide in the
    default float dtype, as in torch."""
    return dtype if category(dtype) >= 2 else backend.get_default_dtype()


def infer_dtype(data):
    """The dtype torch.tensor(data) gives Python data (a scalar or nested lists and tuples): every
    element promotes, a Python bool as bool, an int as int64, a float as the default dtype, a numpy
    scalar, array or Tensor as its own dtype ([1, 2.5] is float32; [True, 2] int64; [] the default
    float dtype). None where an element is none of those (strings, None): numpy decides and the
    caller refuses what is not numeric."""
    if not isinstance(data, (list, tuple)):
        return _element_dtype(data)
    found, stack = None, [data]
    while stack:  # a stack, not recursion: nesting depth is the caller's
        for element in stack.pop():
            if isinstance(element, (list, tuple)):
                stack.append(element)
                continue
            dtype = _element_dtype(element)
            if dtype is None:
                return None
            found = promote_types(found, dtype) if found is not None else dtype
    return backend.get_default_dtype() if found is None else found


def _element_dtype(element):
    if isinstance(element, np.generic):  # np.float64(2) in tensor() keeps float64, as torch's does
        return element.dtype
    if is_scalar(element):
        return scalar_dtype(element)
    dtype = getattr(element, "dtype", None)  # an array of a backend, or a Tensor
    return dtype if isinstance(dtype, np.dtype) else None


def _promote_optional(a, b):
    return b if a is None else promote_types(a, b)


def _by_category(higher, lower):
    """torch's combine_categories: `lower` (0-d tensors, or scalars) counts only when its category is higher."""
    if higher is None:
        return lower
    if lower is None or category(higher) >= category(lower):
        return higher
    return lower
