"""Type promotion as torch's (tinygrad_rnn/dtypes.py), not numpy's: the result dtype of every binary op
over every pair of dtypes and scalar kinds, tg.tensor's inference, and the gradients' dtypes."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from oracle import needs_torch, torch
from tinygrad_rnn import dtypes
from tinygrad_rnn.errors import DTypeError

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]
# Python scalars, and numpy scalars that torch reads as Python ones. (np.bool_ is left out: torch 2.13
# reads it as a float; here it is a bool, like Python's.)
SCALARS = [True, 3, 2.5, np.float64(2.5), np.float32(2.5), np.int64(3), np.int32(3)]
OPS = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "lt": lambda a, b: a < b,
    "eq": lambda a, b: a == b,
}


def _pair(dtype, ndim):
    """The same values (ones) as ours and torch's tensor, with dims (2, 3) or 0-d."""
    values = np.ones((2, 3) if ndim else (), dtype=dtype)
    return tg.tensor(values), torch.from_numpy(values.copy())


def _numpy_name(dtype):
    return str(dtype).removeprefix("torch.")


def _operands():
    """(label, ours, torch's) for every tensor kind and scalar kind."""
    for dtype in DTYPES:
        for ndim in (1, 0):
            ours, theirs = _pair(dtype, ndim)
            yield f"{dtype}{'' if ndim else ' 0-d'}", ours, theirs
    for scalar in SCALARS:
        yield f"{type(scalar).__name__} {scalar!r}", scalar, scalar


@needs_torch
@pytest.mark.parametrize("op", list(OPS))
def test_result_dtype_of_every_pair_matches_torch(op):
    """Each tensor kind (7 dtypes, with dims and 0-d) against each tensor and scalar kind, on both sides:
    the result dtype is torch's, and so are the values."""
    fn, wrong = OPS[op], []
    operands = list(_operands())
    for left_label, left, torch_left in operands:
        for right_label, right, torch_right in operands:
            if not (isinstance(left, tg.Tensor) or isinstance(right, tg.Tensor)):
                continue
            expected = fn(torch_left, torch_right)
            try:
                got = fn(left, right)
            except Exception as e:  # noqa: BLE001 (collected: the table reports every mismatch at once)
                wrong.append(f"{left_label} {op} {right_label}: raised {type(e).__name__}: {e}")
                continue
            if str(got.dtype) != _numpy_name(expected.dtype):
                wrong.append(f"{left_label} {op} {right_label}: {got.dtype}, torch {_numpy_name(expected.dtype)}")
            elif not np.allclose(got.numpy().astype(float), expected.numpy().astype(float), rtol=1e-3):
                wrong.append(f"{left_label} {op} {right_label}: values {got.numpy()} vs torch {expected.numpy()}")
    assert not wrong, f"{len(wrong)} pairs differ from torch:\n" + "\n".join(wrong)


@needs_torch
@pytest.mark.parametrize("op", ["sub", "pow", "maximum", "minimum", "where"])
def test_other_binary_ops_promote_as_torch(op):
    pairs = [("int64", "float32"), ("float32", "float64"), ("int32", "int64"), ("uint8", "int32"),
             ("float16", "int64"), ("bool", "int32"), ("int64", "float16")]
    condition = np.array([[True, False, True], [False, True, False]])
    fns = {
        "sub": lambda lib, a, b: a - b,
        "pow": lambda lib, a, b: a ** b,
        "maximum": lambda lib, a, b: lib.maximum(a, b),
        "minimum": lambda lib, a, b: lib.minimum(a, b),
        "where": lambda lib, a, b: lib.where(lib.tensor(condition) if lib is tg else torch.from_numpy(condition),
                                             a, b),
    }
    for left, right in pairs:
        if op == "sub" and "bool" in (left, right):
            continue  # torch refuses - on bools
        (a, ta), (b, tb) = _pair(left, 1), _pair(right, 1)
        got, expected = fns[op](tg, a, b), fns[op](torch, ta, tb)
        assert str(got.dtype) == _numpy_name(expected.dtype), (op, left, right)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("exponent", [2, 2.5, np.float64(2.0)])
def test_pow_with_a_scalar_exponent_promotes_as_torch(dtype, exponent):
    ours, theirs = _pair(dtype, 1)
    assert str((ours ** exponent).dtype) == _numpy_name((theirs ** exponent).dtype)
    assert str((exponent ** ours).dtype) == _numpy_name((exponent ** theirs).dtype)


def test_the_cases_that_ran_in_float64():
    """The ones that made a float32 model run in float64 (or fail later, at a matmul)."""
    x = tg.ones(3)
    assert (tg.tensor([1, 2, 3]) * x).dtype == np.float32
    assert (x / tg.arange(1, 4)).dtype == np.float32
    assert (tg.arange(1, 4) / tg.arange(1, 4)).dtype == np.float32
    assert (tg.arange(1, 4) * 2.5).dtype == np.float32
    assert (x * np.float64(2)).dtype == np.float32 and (np.float64(2) * x).dtype == np.float32
    assert (x * tg.tensor(2.0, dtype="float64")).dtype == np.float32  # a 0-d tensor: by category only
    assert tg.tensor([1, 2.5]).dtype == np.float32
    assert (x @ (tg.ones(3, 2) * tg.tensor([1, 2]))).dtype == np.float32  # no matmul dtype error


def test_default_dtype_is_what_integers_promote_to():
    tg.set_default_dtype("float64")
    try:
        assert (tg.arange(3) / 2).dtype == np.float64
        assert (tg.arange(3) * 2.5).dtype == np.float64
        assert tg.tensor([1, 2.5]).dtype == np.float64
        assert (tg.ones(3, dtype="float32") * 2.5).dtype == np.float32
    finally:
        tg.set_default_dtype("float32")


def test_numpy_arrays_are_tensors_of_their_own_dtype():
    x = tg.ones(3)
    assert (x * np.ones(3)).dtype == np.float64  # as torch (a float64 tensor with dims)
    assert (x * np.ones(3, dtype=np.float32)).dtype == np.float32
    assert (tg.arange(3) * np.ones(3, dtype=np.int32)).dtype == np.int64
    assert tg.tensor(np.ones(3)).dtype == np.float64


def test_an_integer_scalar_wraps_into_a_narrow_integer_tensor_as_torch():
    assert (tg.ones(3, dtype="uint8") + 300).tolist() == [45, 45, 45]  # torch: 45
    assert (tg.ones(3, dtype="int8") + 200).tolist() == [-55, -55, -55]
    assert (tg.zeros(1, dtype="uint8") - 1).tolist() == [255]
    with pytest.raises(DTypeError, match="does not fit int64"):
        tg.ones(1, dtype="int64") + 2 ** 70


def test_comparisons_happen_in_the_common_dtype_as_torch():
    # int64 16777217 against a float: torch compares in float32, where it is 16777216
    assert not bool((tg.tensor([16777217]) > 16777216.0).item())
    assert (tg.arange(3) < 1.5).dtype == np.bool_


def test_in_place_ops_keep_the_target_dtype_or_refuse_as_torch():
    f = tg.ones(3)
    f += tg.arange(3)
    f *= np.float64(2.0)
    f /= tg.tensor([1, 2, 4])
    assert f.dtype == np.float32
    np.testing.assert_allclose(f.numpy(), [2, 2, 1.5])
    i = tg.arange(3)
    with pytest.raises(DTypeError, match="float32 cannot be cast to the tensor's int64"):
        i += 2.5
    with pytest.raises(DTypeError, match="float32 cannot be cast to the tensor's int64"):
        i /= 2


def test_promotion_on_every_backend(device):
    x = tg.ones(2, 3, device=device)
    for y in (x * tg.arange(3, device=device), x / tg.arange(1, 4, device=device), x + 2.5, 1 - x,
              tg.arange(3, device=device) / 2, tg.where(x > 0, x, 0), x.maximum(tg.arange(3, device=device))):
        assert y.dtype == np.float32 and y.device == device
    assert (tg.ones(2, dtype="uint8", device=device) + 300).tolist() == [45, 45]


# ---- tg.tensor and tg.full infer as torch -----------------------------------------------------

TENSOR_DATA = [
    [1, 2.5], [1.5, 2], [[1, 2], [3, 4.0]], [[1], [2.0]], [1, 2], [True, 2], [True, False], 2, 2.5, True,
    [], [[]], (1, 2.5), [np.float64(2.0)], [1, np.float64(2.0)], np.float64(2.0), np.float32(2.0),
    [np.float32(2.0), 1], [np.int32(1)], np.int32(1), [np.float16(1.0), 2], [np.True_], [[True], [1.5]],
]


@needs_torch
@pytest.mark.parametrize("data", TENSOR_DATA, ids=repr)
def test_tensor_infers_the_dtype_as_torch(data):
    assert str(tg.tensor(data).dtype) == _numpy_name(torch.tensor(data).dtype)
    np.testing.assert_array_equal(tg.tensor(data).numpy(), torch.tensor(data).numpy())


def test_tensor_infers_from_tensors_and_arrays_in_a_list_as_torch():
    # torch 2.13's answers (asking it warns that a list of arrays is slow)
    assert tg.tensor([np.array([1, 2], dtype=np.int32), [3, 4]]).dtype == np.int64
    assert tg.tensor([tg.tensor(1.0, dtype="float64"), 2.0]).dtype == np.float64


def test_a_tensor_of_a_numpy_scalar_is_a_0d_tensor_of_its_dtype():
    t = tg.tensor(np.float64(2.0), requires_grad=True)  # it held the numpy scalar itself: t * 2 raised DeviceError
    assert t.shape == () and t.dtype == np.float64
    (t * 2).backward()
    assert t.grad.dtype == np.float64 and t.grad.item() == 2.0


@needs_torch
@pytest.mark.parametrize("fill", [7, True, 2.5, np.float64(2.5)], ids=repr)
def test_full_infers_the_dtype_from_the_fill_value_as_torch(fill):
    assert str(tg.full((2,), fill).dtype) == _numpy_name(torch.full((2,), fill).dtype)


def test_ragged_or_non_numeric_data_is_refused_with_the_package_error():
    with pytest.raises(DTypeError, match="could not make a float32 tensor"):
        tg.tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(DTypeError, match="could not infer a numeric dtype"):
        tg.tensor(["a", "b"])


# ---- gradients come back in each input's own dtype ------------------------------------------------

@needs_torch
def test_gradients_keep_each_inputs_dtype():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)  # float32
    y = x * tg.tensor([1, 2, 3])  # an int64 constant
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [1, 2, 3])

    a = tg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    b = tg.tensor([3.0, 4.0], requires_grad=True)  # float32
    ta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([3.0, 4.0], requires_grad=True)
    for out, t_out in (((a * b) / (b + 1)).sum(), ((ta * tb) / (tb + 1)).sum()), ((b ** a).sum(), (tb ** ta).sum()):
        assert str(out.dtype) == _numpy_name(t_out.dtype) == "float64"
        a.grad = b.grad = ta.grad = tb.grad = None
        out.backward()
        t_out.backward()
        assert a.grad.dtype == np.float64 and b.grad.dtype == np.float32
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-6)
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-6)


# ---- the rule itself ------------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("a", DTYPES)
@pytest.mark.parametrize("b", DTYPES)
def test_promote_types_matches_torch(a, b):
    expected = torch.promote_types(getattr(torch, a), getattr(torch, b))
    assert str(dtypes.promote_types(a, b)) == _numpy_name(expected)


def test_promote_types_refuses_what_torch_refuses():
    with pytest.raises(DTypeError, match="uint64 and int64"):
        dtypes.promote_types("uint64", "int64")
