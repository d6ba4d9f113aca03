"""Correctness round 2: inputs at the edges (extreme values, bad dims, empty batches, wrong types),
each against what torch 2.13 does. Every test here failed before its fix."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
import tinygrad_rnn.nn.functional as F
from oracle import needs_torch, torch
from tinygrad_rnn.errors import DTypeError, GraphError, OutOfRangeError, ShapeError, TinyGradRNNError


def _torch_dtype(dtype):
    return {np.float32: torch.float32, np.float64: torch.float64}[dtype]


def _leaf_pair(values, dtype=np.float64):
    values = np.asarray(values, dtype=dtype)
    return tg.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)


def _same(ours, theirs):
    """Equal values to rounding, inf and nan where torch has them."""
    np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-6, atol=0)


# ---- 1. sigmoid exact on both sides --------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_its_gradient_match_torch_over_minus_100_to_100(dtype):
    x, tx = _leaf_pair(np.linspace(-100, 100, 4001), dtype)
    y, ty = x.sigmoid(), tx.sigmoid()
    y.sum().backward()
    ty.sum().backward()
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny  # below tiny torch's own result is subnormal
    value = ty.detach().numpy()
    # a 1-ulp difference in y moves y (1 - y) by up to ulp(y) |1 - 2y|: the grad's slack on the right side
    for ours, theirs, slack in ((y.numpy(), value, 0), (x.grad.numpy(), tx.grad.numpy(), value * abs(1 - 2 * value))):
        excess = np.abs(ours - theirs) - 4 * eps * (np.abs(theirs) + slack)
        assert np.all((excess <= 0) | (np.abs(ours - theirs) <= tiny)), x.numpy()[np.argmax(excess)]


def test_sigmoid_of_large_negative_keeps_its_digits():
    y = tg.tensor(np.float32([-17, -20])).sigmoid().numpy()
    np.testing.assert_allclose(y, [4.1399378e-08, 2.0611537e-09], rtol=1e-6)


@needs_torch
def test_binary_cross_entropy_of_sigmoid_at_minus_20_matches_torch():
    x, tx = _leaf_pair([-20.0], np.float32)
    loss = F.binary_cross_entropy(x.sigmoid(), tg.ones(1))
    their = torch.nn.functional.binary_cross_entropy(tx.sigmoid(), torch.ones(1))
    loss.backward()
    their.backward()
    np.testing.assert_allclose(loss.item(), their.item(), rtol=1e-6)  # 20, not 100
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)  # -1, not 0


# ---- 2. one dim rule, torch's, for every op that takes a dim ---------------------------------

def _out_of_range(low, high, got):
    return rf"Dimension out of range \(expected to be in range of \[{low}, {high}\], but got {got}\)"


DIM_CASES = {
    "unsqueeze": (lambda t: t[0].unsqueeze(5), _out_of_range(-2, 1, 5)),
    "permute": (lambda t: t.permute(1, 2), _out_of_range(-2, 1, 2)),
    "transpose": (lambda t: t.transpose(0, 4), _out_of_range(-2, 1, 4)),
    "cat": (lambda t: tg.cat([t, t], dim=2), _out_of_range(-2, 1, 2)),
    "stack": (lambda t: tg.stack([t, t], dim=3), _out_of_range(-3, 2, 3)),
    "squeeze": (lambda t: t.squeeze(2), _out_of_range(-2, 1, 2)),
    "split": (lambda t: t.split(1, dim=2), _out_of_range(-2, 1, 2)),
    "chunk": (lambda t: t.chunk(2, dim=-3), _out_of_range(-2, 1, -3)),
    "unbind": (lambda t: t.unbind(2), _out_of_range(-2, 1, 2)),
    "gather": (lambda t: t.gather(2, [[0], [1]]), _out_of_range(-2, 1, 2)),
    "flatten": (lambda t: t.flatten(0, 5), _out_of_range(-2, 1, 5)),
    "sum": (lambda t: t.sum(2), _out_of_range(-2, 1, 2)),
    "mean": (lambda t: t.mean(-3), _out_of_range(-2, 1, -3)),
    "var": (lambda t: t.var(2), _out_of_range(-2, 1, 2)),
    "max": (lambda t: t.max(2), _out_of_range(-2, 1, 2)),
    "amin": (lambda t: t.amin(2), _out_of_range(-2, 1, 2)),
    "argmax": (lambda t: t.argmax(2), _out_of_range(-2, 1, 2)),
    "softmax": (lambda t: t.softmax(2), _out_of_range(-2, 1, 2)),
    "log_softmax": (lambda t: t.log_softmax(-3), _out_of_range(-2, 1, -3)),
    "logsumexp": (lambda t: t.logsumexp(2), _out_of_range(-2, 1, 2)),
    "size": (lambda t: t.size(2), _out_of_range(-2, 1, 2)),
    "0-d sum": (lambda t: t[0, 0].sum(1), _out_of_range(-1, 0, 1)),
}


@pytest.mark.parametrize("case", DIM_CASES)
def test_a_dim_out_of_range_raises_torchs_index_error(case):
    fn, message = DIM_CASES[case]
    with pytest.raises(OutOfRangeError, match=message) as caught:
        fn(tg.ones(2, 3))
    assert isinstance(caught.value, IndexError)


@needs_torch
@pytest.mark.parametrize("case", ["permute", "unsqueeze", "cat", "stack", "sum", "0-d sum"])
def test_the_dim_message_is_torchs(case):
    fn, _ = DIM_CASES[case]
    with pytest.raises(IndexError) as ours:
        fn(tg.ones(2, 3))
    patched = {"cat": lambda t: torch.cat([t, t], dim=2), "stack": lambda t: torch.stack([t, t], dim=3)}
    with pytest.raises(IndexError) as theirs:
        patched.get(case, fn)(torch.ones(2, 3))
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("fn, message", [
    (lambda t: t.reshape(-2, 3), "invalid shape dimension -2"),
    (lambda t: t.reshape(-1, -1), "only one dimension can be inferred"),
    (lambda t: t.chunk(-2), "greater than 0, got: -2"),
    (lambda t: t.chunk(0), "greater than 0, got: 0"),
    (lambda t: t.split(0), "split_size can only be 0 if dimension size is 0"),
    (lambda t: t.split(-1), "non-negative"),
    (lambda t: t.split([3, -1]), "non-negative"),
    (lambda t: t.permute(0, 0), "duplicate dims"),
    (lambda t: t.permute(0), "names 1 dims"),
    (lambda t: t.sum((0, -2)), "dim 0 appears multiple times"),
    (lambda t: t.flatten(1, 0), "start_dim .* cannot come after end_dim"),
    (lambda t: tg.cat([t[0, 0]]), "zero-dimensional tensor"),
    (lambda t: t[0, 0].split(1), "at least a 1-dimensional tensor"),
])
def test_bad_sizes_and_dims_are_refused(fn, message):
    with pytest.raises(ShapeError, match=message):
        fn(tg.ones(2, 3))


@needs_torch
def test_dims_at_the_edges_match_torch():
    t, tt = tg.arange(6.0).reshape(2, 3), torch.arange(6.0).reshape(2, 3)
    _same(t.unsqueeze(-3), tt.unsqueeze(-3))
    _same(t.permute(-1, -2), tt.permute(-1, -2))
    _same(tg.stack([t, t], -3), torch.stack([tt, tt], -3))
    _same(t[0, 0].squeeze(0), tt[0, 0].squeeze(0))
    _same(t[0, 0].squeeze(-1), tt[0, 0].squeeze(-1))
    _same(t[0, 0].softmax(0), tt[0, 0].softmax(0))
    _same(t[0, 0].sum(-1), tt[0, 0].sum(-1))
    _same(t[0, 0].argmax(0), tt[0, 0].argmax(0))
    _same(t[0, 0].flatten(), tt[0, 0].flatten())
    assert [p.shape for p in tg.zeros(0, 2).chunk(3)] == [tuple(p.shape) for p in torch.zeros(0, 2).chunk(3)]
    assert [p.shape for p in tg.zeros(0, 2).split(2)] == [tuple(p.shape) for p in torch.zeros(0, 2).split(2)]
    assert [p.shape for p in tg.zeros(0).split(0)] == [tuple(p.shape) for p in torch.zeros(0).split(0)]


# ---- 3. iteration and numpy conversion ------------------------------------------------------

def test_iterating_and_unpacking_a_tensor():
    t = tg.arange(6.0).reshape(2, 3)
    assert [row.tolist() for row in t] == [[0, 1, 2], [3, 4, 5]]
    h, c = t
    assert c.tolist() == [3, 4, 5]
    assert len(list(t)) == 2
    assert [a.item() + b.item() for a, b in zip(t[0], tg.ones(3))] == [1, 2, 3]
    np.testing.assert_array_equal(np.asarray(t), t.numpy())
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="0-d"):
        list(tg.tensor(1.0))


def test_an_index_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="index 2 is out of bounds"):
        tg.ones(2, 3)[2]
    with pytest.raises(OutOfRangeError):
        tg.ones(2, 3)[0, 5]
    with pytest.raises(OutOfRangeError, match="no dimensions"):
        tg.tensor(1.0).unbind()


@needs_torch
def test_unbind_gradient_matches_torch():
    x, tx = _leaf_pair(np.arange(6.0).reshape(2, 3))
    ours = sum(part * (i + 1) for i, part in enumerate(x.unbind(1)))
    theirs = sum(part * (i + 1) for i, part in enumerate(tx.unbind(1)))
    (ours * ours).sum().backward()
    (theirs * theirs).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


# ---- 4. a reshape to the same shape is a new tensor -----------------------------------------

@pytest.mark.parametrize("view", [lambda p: p.reshape(p.shape), lambda p: p.view(2, 3), lambda p: p.squeeze(0),
                                  lambda p: p.squeeze()])
def test_a_no_op_view_cannot_freeze_its_parameter(view):
    p = nn.Parameter(tg.ones(2, 3))
    v = view(p)
    assert v is not p and v.grad_fn is not None
    with pytest.raises(GraphError):
        v.requires_grad_(False)
    assert p.requires_grad
    (v * 2).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 2.0))


# ---- 5. values torch refuses ----------------------------------------------------------------

@pytest.mark.parametrize("fn, error, message", [
    (lambda: tg.one_hot(tg.tensor([0, 5]), 3), OutOfRangeError, "smaller than num_classes"),
    (lambda: tg.one_hot(tg.tensor([-1, 1]), 3), OutOfRangeError, "non-negative"),
    (lambda: tg.one_hot(tg.tensor([-1, 1])), OutOfRangeError, "non-negative"),
    (lambda: tg.one_hot(tg.tensor([], dtype="int64")), ShapeError, "empty tensor"),
    (lambda: F.binary_cross_entropy(tg.tensor([0.5]), tg.tensor([2.0])), ValueError, "target should be between"),
    (lambda: F.binary_cross_entropy(tg.tensor([0.5]), tg.tensor([-0.5])), ValueError, "target should be between"),
    (lambda: F.cross_entropy(tg.tensor([[1, 2]]), tg.tensor([0])), DTypeError, "floating"),
    (lambda: tg.tensor([1, 2]).mean(), DTypeError, "mean"),
    (lambda: tg.tensor([[1, 2]]).mean(0), DTypeError, "mean"),
    (lambda: tg.tensor([1, 2]).var(), DTypeError, "var"),
    (lambda: tg.tensor([1, 2]).softmax(0), DTypeError, "softmax"),
    (lambda: tg.tensor(None), DTypeError, "NoneType"),
    (lambda: tg.tensor("abc"), DTypeError, "str"),
    (lambda: tg.tensor([None, 1.0]), DTypeError, "list"),
])
def test_values_torch_refuses_are_refused(fn, error, message):
    with pytest.raises(error, match=message):
        fn()


def test_one_hot_of_an_empty_tensor_with_num_classes_is_empty():
    assert tg.one_hot(tg.tensor([], dtype="int64"), 3).shape == (0, 3)


@needs_torch
def test_logsumexp_of_integers_is_float_as_in_torch():
    ours, theirs = tg.tensor([1, 2]).logsumexp(0), torch.tensor([1, 2]).logsumexp(0)
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-6)


# ---- 6. finite gradients where torch's are --------------------------------------------------

@needs_torch
def test_pow_gradients_at_zero_base_match_torch():
    a, ta = _leaf_pair([0.0, 0.0, 0.0, 2.0, 0.0])
    b, tb = _leaf_pair([2.0, 0.0, -1.0, 0.0, 0.5])
    (a ** b).sum().backward()
    (ta ** tb).sum().backward()
    _same(a.grad, ta.grad)  # 0, 0, -inf, 0, inf: no nan
    _same(b.grad, tb.grad)  # 0, 0, -inf, log 2, 0


@needs_torch
@pytest.mark.parametrize("exponent", [0, 0.5, -1, 2])
def test_pow_scalar_gradient_at_zero_matches_torch(exponent):
    a, ta = _leaf_pair([0.0, 1.5])
    (a ** exponent).sum().backward()
    (ta ** exponent).sum().backward()
    _same(a.grad, ta.grad)


@needs_torch
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_with_logits_at_infinite_logits_matches_torch(pos_weight):
    logits = [np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf, 0.0]
    targets = [0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 1.0]
    x, tx = _leaf_pair(logits, np.float32)
    options = {} if pos_weight is None else {"pos_weight": pos_weight}
    ours = F.binary_cross_entropy_with_logits(
        x, tg.tensor(targets), reduction="none", **{k: tg.tensor([v]) for k, v in options.items()})
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(
        tx, torch.tensor(targets), reduction="none", **{k: torch.tensor([v]) for k, v in options.items()})
    ours.backward(tg.ones(7))
    theirs.backward(torch.ones(7))
    _same(ours, theirs)  # nan where torch's value is nan
    _same(x.grad, tx.grad)  # finite: sigmoid(x) - t, weighted


@needs_torch
def test_logsigmoid_matches_torch():
    x, tx = _leaf_pair([-np.inf, -800.0, -20.0, 0.0, 1e-3, 20.0, 800.0, np.inf])
    ours, theirs = F.logsigmoid(x), torch.nn.functional.logsigmoid(tx)
    ours.sum().backward()
    theirs.sum().backward()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-14)


# ---- 7. edge inputs: empty batches, odd sizes, wrong types ----------------------------------

@needs_torch
@pytest.mark.parametrize("kind, options", [("RNN", {}), ("LSTM", {"num_layers": 2, "bidirectional": True}),
                                           ("GRU", {"batch_first": True})])
def test_recurrent_layers_take_an_empty_batch(kind, options):
    ours, theirs = getattr(nn, kind)(3, 4, **options), getattr(torch.nn, kind)(3, 4, **options)
    shape = (0, 5, 3) if options.get("batch_first") else (5, 0, 3)
    out, state = ours(tg.zeros(*shape))
    their_out, their_state = theirs(torch.zeros(*shape))
    assert out.shape == tuple(their_out.shape)
    states = state if isinstance(state, tuple) else (state,)
    their_states = their_state if isinstance(their_state, tuple) else (their_state,)
    assert [s.shape for s in states] == [tuple(s.shape) for s in their_states]


def test_cells_take_an_empty_batch():
    assert nn.RNNCell(3, 4)(tg.zeros(0, 3)).shape == (0, 4)
    assert [s.shape for s in nn.LSTMCell(3, 4)(tg.zeros(0, 3))] == [(0, 4), (0, 4)]


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_of_an_empty_batch_matches_torch(reduction):
    x, tx = _leaf_pair(np.zeros((0, 3)))
    ours = F.cross_entropy(x, tg.zeros(0, dtype="int64"), reduction=reduction)
    theirs = torch.nn.functional.cross_entropy(tx, torch.zeros(0, dtype=torch.long), reduction=reduction)
    assert ours.shape == tuple(theirs.shape)
    _same(ours, theirs)  # nan for the mean, 0 for the sum, as torch


def test_softmax_family_of_an_empty_batch():
    x = tg.zeros(0, 3)
    assert x.softmax(-1).shape == x.log_softmax(-1).shape == (0, 3)
    assert x.logsumexp(-1).shape == (0,)


@needs_torch
def test_linear_with_no_input_features_matches_torch():
    layer = nn.Linear(0, 3)
    assert layer.weight.shape == (3, 0)
    np.testing.assert_array_equal(layer(tg.ones(2, 0)).numpy(), np.zeros((2, 3)))


@pytest.mark.parametrize("module, args", [
    (lambda: nn.Linear(2, 3), ([[1.0, 2.0]],)),
    (lambda: nn.RNN(2, 3), ([[1.0, 2.0]],)),
    (lambda: nn.LSTMCell(2, 3), ([[1.0, 2.0]],)),
    (lambda: nn.BatchNorm1d(2), ([[1.0, 2.0]],)),
    (lambda: nn.RNNCell(2, 3), (tg.ones(1, 2), (tg.ones(1, 3),))),
    (lambda: nn.CrossEntropyLoss(), ([[1.0, 2.0]], tg.tensor([0]))),
    (lambda: nn.MSELoss(), ([1.0], tg.tensor([1.0]))),
])
def test_a_list_or_tuple_where_a_module_takes_a_tensor_is_named(module, args):
    with pytest.raises(DTypeError, match=r"argument '(input|hx)' must be a Tensor, not (list|tuple)"):
        module()(*args)


@pytest.mark.parametrize("fn, message", [
    (lambda: tg.zeros(2, -3), "zeros: .*negative dimension -3"),
    (lambda: tg.ones(-1), "ones: .*negative dimension -1"),
    (lambda: tg.full((-1,), 2.0), "full: .*negative dimension -1"),
    (lambda: tg.randn(-1, 2), "randn: .*negative dimension -1"),
    (lambda: tg.rand(-1), "rand: .*negative dimension -1"),
    (lambda: tg.eye(-1), "eye: .*negative dimension -1"),
    (lambda: tg.arange(0, 3, 0), "step must be nonzero"),
    (lambda: nn.Linear(-1, 3), "Linear: in_features must be non-negative, got -1"),
    (lambda: nn.Linear(3, -2), "Linear: out_features must be non-negative, got -2"),
    (lambda: nn.Embedding(-1, 3), "Embedding: num_embeddings must be non-negative"),
    (lambda: nn.BatchNorm1d(-1), "BatchNorm1d: num_features must be non-negative"),
    (lambda: nn.LSTM(3, -1), "LSTM: input_size, hidden_size and num_layers must be positive"),
])
def test_negative_sizes_are_named(fn, message):
    with pytest.raises(ShapeError, match=message):
        fn()


def test_stack_of_arrays_is_refused_by_name():
    with pytest.raises(DTypeError, match="expected Tensor as element 0, but got ndarray"):
        tg.stack([np.ones(2), np.ones(2)])
    with pytest.raises(DTypeError, match="element 1"):
        tg.cat([tg.ones(2), np.ones(2)])


@needs_torch
@pytest.mark.parametrize("name, fn", [
    ("x / 0", lambda x: x / 0), ("0 / 0", lambda x: x / x), ("log 0", lambda x: x.log()),
    ("log -1", lambda x: (-x).log()), ("sqrt -1", lambda x: (-x).sqrt()), ("sqrt 0", lambda x: x.sqrt()),
    ("exp 1000", lambda x: (x * 1000).exp()), ("0 ** -1", lambda x: x ** -1), ("0 ** (x - 1)", lambda x: x ** (x - 1)),
    ("sigmoid -1000", lambda x: (x * -1000).sigmoid()), ("mean of empty", lambda x: x[:0].mean()),
])
def test_inf_and_nan_from_finite_inputs_come_silently_as_in_torch(name, fn):
    """pytest turns warnings into errors here (pyproject.toml): a numpy RuntimeWarning fails, forward or backward."""
    x, tx = _leaf_pair([0.0, 1.0, 2.0])
    ours, theirs = fn(x), fn(tx)
    _same(ours, theirs)
    ours.sum().backward()
    theirs.sum().backward()
    _same(x.grad, tx.grad)


@needs_torch
@pytest.mark.parametrize("name, values", [("inf times 0", [[np.inf, 0.0], [1.0, -np.inf]]),
                                          ("overflow", [[3e38, 3e38], [-3e38, 1.0]])])
@pytest.mark.parametrize("op", ["matmul", "linear"])
def test_products_making_inf_and_nan_come_silently_as_in_torch(name, values, op):
    """inf * 0 in a matrix product is nan, and float32 products past 3.4e38 overflow: numpy warns
    ("invalid value encountered in matmul") in forward and backward, torch does not."""
    x, tx = _leaf_pair(values, np.float32)
    w, tw = _leaf_pair([[0.0, 2.0], [1.0, 0.0]], np.float32)
    if op == "matmul":
        ours, theirs = x @ w, tx @ tw
    else:
        ours, theirs = tg.nn.functional.linear(x, w), torch.nn.functional.linear(tx, tw)
    _same(ours, theirs)
    ours.backward(tg.ones(*ours.shape))  # not .sum(): inf + -inf in a sum is its own warning
    theirs.backward(torch.ones(theirs.shape))
    _same(x.grad, tx.grad)
    _same(w.grad, tw.grad)


def test_errors_are_the_packages():
    for fn in (lambda: tg.ones(2).unsqueeze(3), lambda: tg.ones(2)[5], lambda: tg.one_hot(tg.tensor([4]), 2)):
        with pytest.raises(TinyGradRNNError):
            fn()
