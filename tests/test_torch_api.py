"""torch API additions (sin/cos/erf, multinomial, masked_fill ... new_*, norm, sort/topk, LayerNorm/GELU),
each equal to torch on identical float64 input: values and gradients to 1e-10."""
import math

import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.ops import _erf


def _pair(shape, seed=0, data=None):
    data = np.random.default_rng(seed).standard_normal(shape) if data is None else np.asarray(data, np.float64)
    return tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)


def assert_same(fn_ours, fn_torch, shape=(3, 4), seed=0, data=None):
    """fn(x) for both libraries: equal values, and equal gradients of a weighted sum of the outputs."""
    x, xt = _pair(shape, seed, data)
    out, ref = fn_ours(x), fn_torch(xt)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    weights = np.random.default_rng(seed + 1).standard_normal(tuple(ref.shape))
    (out * tg.tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    # torch leaves .grad None where its backward gives an undefined (zero) gradient: ord-0 norms
    expected = np.zeros(x.shape) if xt.grad is None else xt.grad.numpy()
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-10, atol=1e-10)


# ---- 1. sin, cos (and erf) ----------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("name", ["sin", "cos", "erf"])
def test_unary_matches_torch(name):
    assert_same(lambda x: getattr(x, name)(), lambda x: getattr(x, name)(), (4, 5))
    assert_same(lambda x: getattr(tg, name)(x), lambda x: getattr(torch, name)(x), (6,), seed=3)


def test_erf_is_float64_accurate_on_a_dense_grid():
    x = np.concatenate([np.linspace(-8, 8, 400_001), np.geomspace(1e-300, 10, 2001), [0.46875, 4.0, 30.0]])
    x = np.concatenate([x, -x])
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(_erf(x) - expected)) < 1e-14
    small = np.geomspace(1e-300, 0.5, 1001)  # relative accuracy where erf(x) is tiny
    assert np.max(np.abs(_erf(small) / np.array([math.erf(v) for v in small]) - 1)) < 1e-14
    assert _erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0] and np.isnan(_erf(np.array(np.nan)))


def test_erf_keeps_float32_and_works_through_the_backend(device):
    x = tg.tensor([-1.0, 0.25, 3.0], dtype=np.float32, device=device)
    out = x.erf()
    assert out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), [math.erf(v) for v in (-1.0, 0.25, 3.0)], rtol=1e-6)


# ---- 2. multinomial ---------------------------------------------------------------------------

def _chi_square(counts, probs):
    expected = probs / probs.sum() * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("replacement", [True, False])
def test_multinomial_frequencies_follow_the_weights(replacement):
    weights = np.array([1.0, 2.0, 3.0, 0.0, 4.0])  # not normalised, with a zero category
    draws = 20_000
    if replacement:
        samples = tg.tensor(weights).multinomial(draws, replacement=True).numpy()
        first = samples
    else:  # the first of each row's draws: a single draw from the weights
        samples = tg.tensor(np.tile(weights, (draws, 1))).multinomial(2).numpy()
        first = samples[:, 0]
        assert (samples[:, 0] != samples[:, 1]).all()
    counts = np.bincount(first, minlength=5)
    assert counts[3] == 0
    kept = weights > 0
    # 3 degrees of freedom: the 99.99th percentile of chi-square(3) is about 21
    assert _chi_square(counts[kept], weights[kept]) < 21


def test_multinomial_without_replacement_second_draw_follows_the_remaining_weights():
    weights = np.array([5.0, 3.0, 2.0])
    samples = tg.tensor(np.tile(weights, (30_000, 1))).multinomial(2).numpy()
    second = samples[samples[:, 0] == 0, 1]  # after 0 is taken, 1 and 2 in the ratio 3:2
    counts = np.bincount(second, minlength=3)[1:]
    assert _chi_square(counts, weights[1:]) < 15  # 1 degree of freedom, 99.99th percentile ~15


def test_multinomial_is_fixed_by_manual_seed_and_int64():
    probs = tg.tensor([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    tg.manual_seed(7)
    a = probs.multinomial(4, replacement=True)
    tg.manual_seed(7)
    b = tg.multinomial(probs, 4, replacement=True)
    assert a.dtype == np.int64 and a.shape == (2, 4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_multinomial_stays_on_the_device(device):
    out = tg.tensor([[0.0, 1.0], [1.0, 0.0]], device=device).multinomial(3, replacement=True)
    assert out.device == device and out.tolist() == [[1, 1, 1], [0, 0, 0]]


@needs_torch
@pytest.mark.parametrize("data, n, replacement", [
    ([0.1, 0.9], 3, True), ([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], 2, False), ([[1.0, 1.0]], 5, True),
    ([[0.0, 0.0, 1.0]], 3, False),
])
def test_multinomial_shapes_and_support_match_torch(data, n, replacement):
    """Same shape and dtype as torch's; every draw (without replacement: every draw until the positive
    weights run out, then the zero ones) lands where torch's can."""
    ours = tg.tensor(data).multinomial(n, replacement)
    ref = torch.tensor(data).multinomial(n, replacement)
    assert ours.shape == tuple(ref.shape) and ours.dtype == np.int64
    weights = np.atleast_2d(np.asarray(data))
    for row, samples in zip(weights, ours.numpy().reshape(len(weights), n)):
        positive = min(n, int((row > 0).sum()))
        assert (row[samples[:positive]] > 0).all()
        if not replacement:
            assert len(set(samples.tolist())) == n


@needs_torch
@pytest.mark.parametrize("data, n, replacement, ours, match", [
    ([1.0, -1.0], 1, False, ValueError, "element < 0"),
    ([1.0, float("nan")], 1, True, ValueError, "nan"),
    ([0.0, 0.0], 1, True, ValueError, "sum of probabilities <= 0"),
    ([[1.0, 2.0], [0.0, 0.0]], 1, True, ValueError, "sum of probabilities <= 0"),
    ([1.0, 2.0], 3, False, tg.ShapeError, "without replacement"),
    ([1.0, 2.0], 0, True, tg.ShapeError, "n_sample <= 0"),
    ([[[1.0]]], 1, True, tg.ShapeError, "1 or 2 dim"),
    ([1, 2], 1, True, tg.DTypeError, "floating point"),
])
def test_multinomial_errors_match_torch(data, n, replacement, ours, match):
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.tensor(data), n, replacement)
    with pytest.raises(ours, match=match):
        tg.tensor(data).multinomial(n, replacement)


# ---- 3. masked_fill, repeat, narrow, t, contiguous, type, new_*, from_numpy, as_tensor -----------

@needs_torch
def test_masked_fill_is_out_of_place_and_matches_torch():
    mask = np.random.default_rng(5).random((3, 4)) > 0.5
    assert_same(lambda x: x.masked_fill(tg.tensor(mask), -2.5), lambda x: x.masked_fill(torch.tensor(mask), -2.5))
    assert_same(lambda x: x.masked_fill(tg.tensor(mask[0]), 1.0), lambda x: x.masked_fill(torch.tensor(mask[0]), 1.0))
    x = tg.tensor([1.0, 2.0])
    y = x.masked_fill(tg.tensor([True, False]), 0)
    assert x.tolist() == [1.0, 2.0] and y.tolist() == [0.0, 2.0]
    assert tg.tensor([1, 2]).masked_fill(tg.tensor([True, False]), 7.9).tolist() == [7, 2]  # self's dtype


@needs_torch
@pytest.mark.parametrize("sizes", [(2, 3), (1, 1), (2, 1, 3), ((3, 2),), (2, 0)])
def test_repeat_matches_torch(sizes):
    assert_same(lambda x: x.repeat(*sizes), lambda x: x.repeat(*sizes), (2, 3))


def test_repeat_refuses_fewer_sizes_than_dims():
    with pytest.raises(tg.ShapeError, match="can not be smaller"):
        tg.ones(2, 3).repeat(2)


@needs_torch
@pytest.mark.parametrize("dim, start, length", [(0, 1, 2), (1, -3, 2), (-1, 0, 4), (1, 4, 0)])
def test_narrow_matches_torch(dim, start, length):
    assert_same(lambda x: x.narrow(dim, start, length), lambda x: x.narrow(dim, start, length))
    assert_same(lambda x: tg.narrow(x, dim, start, length), lambda x: torch.narrow(x, dim, start, length))


@needs_torch
@pytest.mark.parametrize("start, length", [(5, 1), (-6, 1), (2, 3), (0, -1)])
def test_narrow_errors_match_torch(start, length):
    with pytest.raises((RuntimeError, IndexError)):
        torch.zeros(3, 4).narrow(1, start, length)
    with pytest.raises(tg.OutOfRangeError):
        tg.zeros(3, 4).narrow(1, start, length)


@needs_torch
@pytest.mark.parametrize("shape", [(), (4,), (3, 4)])
def test_t_matches_torch(shape):
    assert_same(lambda x: x.t() * 1, lambda x: x.t() * 1, shape)
    assert_same(lambda x: tg.t(x) * 1, lambda x: torch.t(x) * 1, shape)


def test_t_refuses_three_dims_and_contiguous_is_self():
    with pytest.raises(tg.ShapeError, match="<= 2 dimensions, but self is 3D"):
        tg.zeros(2, 3, 4).t()
    x = tg.zeros(2, 3)
    assert x.contiguous() is x and x.T.contiguous().shape == (3, 2)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "uint8", "bool"])
def test_type_names_follow_torch(dtype):
    ours, ref = tg.zeros(2, dtype=dtype), torch.zeros(2, dtype=getattr(torch, dtype))
    assert ours.type() == ref.type().replace("torch.", "tinygrad_rnn.")
    assert ours.type(ref.type()).dtype == ours.dtype  # torch's name is understood too


def test_type_casts_like_to():
    x = tg.tensor([1.5, 2.5], dtype=np.float64, requires_grad=True)
    y = x.type(tg.float32)
    assert y.dtype == np.float32 and y.requires_grad
    assert x.type("tinygrad_rnn.LongTensor").tolist() == [1, 2]
    with pytest.raises(tg.DTypeError, match="invalid type"):
        x.type("torch.NoSuchTensor")


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_new_factories_match_torch(dtype):
    ours, ref = tg.zeros(2, dtype=dtype), torch.zeros(2, dtype=getattr(torch, dtype))
    for name, args in [("new_zeros", (2, 3)), ("new_ones", ((3,),)), ("new_empty", (4,)),
                       ("new_full", ((2, 2), 7)), ("new_tensor", ([1, 2, 3],))]:
        out, expected = getattr(ours, name)(*args), getattr(ref, name)(*args)
        assert out.shape == tuple(expected.shape) and str(out.dtype) == str(expected.dtype).replace("torch.", "")
        if name != "new_empty":
            np.testing.assert_array_equal(out.numpy(), expected.numpy())
    assert ours.new_ones(2, dtype=tg.float32, requires_grad=True).requires_grad
    assert ours.new_tensor([1.5], dtype=tg.float64).dtype == np.float64


def test_new_factories_keep_the_device_and_copy(device):
    x = tg.zeros(2, device=device)
    assert x.new_zeros(3).device == device and x.new_full((1,), 2.0).device == device
    source = np.ones(2, dtype=np.float32)
    copy = x.new_tensor(source)
    source[0] = 5
    assert copy.tolist() == [1.0, 1.0]
    with pytest.raises(tg.ShapeError, match="negative dimension"):
        x.new_zeros(-1)


def test_from_numpy_shares_memory():
    array = np.zeros(3, dtype=np.float32)
    t = tg.from_numpy(array)
    array[0] = 2
    t.add_(1)  # no grad: the write goes into the shared memory
    assert t.dtype == np.float32 and array.tolist() == [3.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="expected np.ndarray"):
        tg.from_numpy([1.0, 2.0])


def test_as_tensor_copies_only_when_it_must():
    array = np.arange(3.0)
    assert np.shares_memory(tg.as_tensor(array)._data, array)
    assert not np.shares_memory(tg.as_tensor(array, dtype=tg.float32)._data, array)
    t = tg.tensor([1.0], requires_grad=True)
    assert tg.as_tensor(t) is t
    converted = tg.as_tensor(t, dtype=tg.float64)
    assert converted.dtype == np.float64 and converted.requires_grad  # .to(): still in the graph
    assert tg.as_tensor([1, 2]).dtype == np.int64 and tg.as_tensor(2.5).dtype == np.float32


# ---- 4. norm and linalg.vector_norm -----------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("p", [2, 1, float("inf"), float("-inf"), 0, 3, 0.5, 1.5, -1, "fro"])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), ((0, 1), True), (-1, True)])
def test_norm_matches_torch(p, dim, keepdim):
    assert_same(lambda x: x.norm(p, dim, keepdim), lambda x: x.norm(p, dim, keepdim), (3, 4), seed=11)
    if p != "fro":
        assert_same(lambda x: tg.linalg.vector_norm(x, p, dim, keepdim),
                    lambda x: torch.linalg.vector_norm(x, p, dim, keepdim), (2, 3, 4), seed=12)


@needs_torch
@pytest.mark.parametrize("p", [2, 1, 3, float("inf"), 0])
def test_norm_gradient_at_zero_matches_torch(p):
    """torch's gradient of a zero norm is 0, not the formula's nan (for p = 2 and the general p)."""
    data = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.0]])
    assert_same(lambda x: x.norm(p, dim=1), lambda x: x.norm(p, dim=1), data=data)
    x = tg.zeros(3, dtype=np.float64, requires_grad=True)
    x.norm(p).backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_norm_refuses_integers_and_nuclear():
    with pytest.raises(tg.DTypeError, match="floating point"):
        tg.tensor([1, 2]).norm()
    with pytest.raises(ValueError, match="not supported"):
        tg.ones(2, 2).norm("nuc")


# ---- 5. sort and topk -------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_torch(dim, descending):
    assert_same(lambda x: x.sort(dim, descending).values, lambda x: x.sort(dim, descending).values, (4, 5))
    x, xt = _pair((4, 5))
    np.testing.assert_array_equal(tg.sort(x, dim, descending=descending).indices.numpy(),
                                  torch.sort(xt, dim, descending=descending).indices.numpy())


@needs_torch
@pytest.mark.parametrize("descending", [False, True])
def test_sort_ties_are_stable_as_torchs_stable_sort(descending):
    data = np.array([[2.0, 1.0, 2.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.0, -1.0, 0.0, float("nan")]])
    ours = tg.tensor(data).sort(descending=descending)
    ref = torch.tensor(data).sort(descending=descending, stable=True)
    np.testing.assert_array_equal(ours.indices.numpy(), ref.indices.numpy())
    np.testing.assert_array_equal(ours.values.numpy(), ref.values.numpy())
    assert ours.indices.dtype == np.int64
    assert tg.tensor(True).sort().values.dtype == np.bool_
    ints = tg.tensor([3, 1, 3, 0], dtype=np.uint8).sort(descending=True)  # no negation trick on unsigned
    assert ints.values.tolist() == [3, 3, 1, 0] and ints.indices.tolist() == [0, 2, 1, 3]


@needs_torch
@pytest.mark.parametrize("k, dim, largest", [(2, -1, True), (3, 0, False), (1, 1, True), (5, 1, False), (0, 0, True)])
def test_topk_matches_torch(k, dim, largest):
    assert_same(lambda x: x.topk(k, dim, largest).values, lambda x: x.topk(k, dim, largest).values, (4, 5))
    x, xt = _pair((4, 5))
    ours, ref = tg.topk(x, k, dim, largest), torch.topk(xt, k, dim, largest)
    np.testing.assert_array_equal(ours.indices.numpy(), ref.indices.numpy())
    assert ours._fields == ("values", "indices")


def test_topk_ties_take_the_earlier_element_and_k_is_checked():
    out = tg.tensor([1.0, 3.0, 3.0, 2.0, 3.0]).topk(2)
    assert out.indices.tolist() == [1, 2]
    with pytest.raises(tg.OutOfRangeError, match="out of range"):
        tg.ones(3).topk(4)


@needs_torch
def test_sort_and_topk_of_a_0d_tensor_match_torch():
    x, xt = _pair(())
    assert x.sort().values.item() == xt.sort().values.item() and x.sort().indices.item() == 0
    assert x.topk(1).indices.item() == xt.topk(1).indices.item()


# ---- 6. LayerNorm, GELU -----------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("normalized_shape, shape", [(4, (3, 4)), ((3, 4), (2, 3, 4)), ([4], (2, 3, 4))])
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(normalized_shape, shape, affine, bias):
    ours = tg.nn.LayerNorm(normalized_shape, eps=1e-3, elementwise_affine=affine, bias=bias).double()
    ref = torch.nn.LayerNorm(normalized_shape, eps=1e-3, elementwise_affine=affine, bias=bias).double()
    rng = np.random.default_rng(4)
    with tg.no_grad(), torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            value = rng.standard_normal(p.shape)
            p.copy_(tg.tensor(value))
            q.copy_(torch.tensor(value))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert_same(ours, ref, shape)
    for p, q in zip(ours.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-10)


@needs_torch
def test_layer_norm_functional_and_errors():
    w, b = np.arange(1.0, 5.0), np.linspace(-1, 1, 4)
    assert_same(lambda x: tg.nn.functional.layer_norm(x, (4,), tg.tensor(w), tg.tensor(b)),
                lambda x: torch.nn.functional.layer_norm(x, (4,), torch.tensor(w), torch.tensor(b)))
    with pytest.raises(tg.ShapeError, match="normalized_shape"):
        tg.nn.LayerNorm(3)(tg.ones(2, 4))
    with pytest.raises(tg.DTypeError, match="parameters/buffers are float32"):
        tg.nn.LayerNorm(4)(tg.ones(2, 4, dtype=tg.float64))
    assert repr(tg.nn.LayerNorm((3, 4))) == "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)"


@needs_torch
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    data = np.linspace(-9, 9, 72).reshape(8, 9)
    assert_same(tg.nn.GELU(approximate), torch.nn.GELU(approximate), data=data)
    assert_same(lambda x: tg.nn.functional.gelu(x, approximate=approximate),
                lambda x: torch.nn.functional.gelu(x, approximate=approximate), (3, 4))
    with pytest.raises(ValueError, match="approximate"):
        tg.nn.functional.gelu(tg.ones(2), approximate="erf")


@needs_torch
@pytest.mark.parametrize("a, b", [(1.0, 0.0), (1, 0), (1, 2.5), (True, False)])
def test_where_with_two_scalars_matches_torch(a, b):
    mask = np.array([True, False, True])
    ours, theirs = tg.where(tg.tensor(mask), a, b), torch.where(torch.tensor(mask), a, b)
    assert ours.tolist() == theirs.tolist()
    assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch."))
