"""RNN/LSTM/GRU layers and cells against torch on identical weights: outputs, final states and
every gradient, with and without lengths; plus scopes, dropout, init, errors and devices."""
import itertools

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.nn import rnn as R
from tinygrad_rnn.nn.cells import GRUCell, LSTMCell, RNNCell, gru_cell, lstm_cell, rnn_relu_cell, rnn_tanh_cell
from oracle import needs_torch, torch

T, B, I, H = 5, 3, 4, 3
LENGTHS = [3, 5, 1]  # unsorted on purpose; one sequence is full length

# mode -> (our class, name of the torch.nn class, extra constructor kwargs); names, so that this
# module imports without torch
LAYERS = {
    "rnn_tanh": (R.RNN, "RNN", {}),
    "rnn_relu": (R.RNN, "RNN", {"nonlinearity": "relu"}),
    "lstm": (R.LSTM, "LSTM", {}),
    "gru": (R.GRU, "GRU", {}),
}
CELLS = {
    "rnn_tanh": (RNNCell, "RNNCell", {}, rnn_tanh_cell),
    "rnn_relu": (RNNCell, "RNNCell", {"nonlinearity": "relu"}, rnn_relu_cell),
    "lstm": (LSTMCell, "LSTMCell", {}, lstm_cell),
    "gru": (GRUCell, "GRUCell", {}, gru_cell),
}
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def twins(ours_cls, torch_name, dtype, *args, **kwargs):
    """The same layer in both libraries, with torch's weights copied into ours."""
    torch.manual_seed(0)
    theirs = getattr(torch.nn, torch_name)(*args, **kwargs)
    theirs = theirs.double() if dtype == np.float64 else theirs.float()
    ours = ours_cls(*args, **kwargs).to(dtype=dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def pair(array, requires_grad=True):
    """(our tensor, torch tensor) of the same values."""
    return (tg.tensor(array, requires_grad=requires_grad),
            torch.tensor(array, requires_grad=requires_grad))


def as_tuple(state):
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def close(ours, theirs, tol, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol, err_msg=what)


def check_backward(ours_outputs, torch_outputs, ours_leaves, torch_leaves, ours_params, torch_params, tol):
    """Backpropagate the same random weighting of every output; compare every gradient."""
    rng = np.random.default_rng(1)
    ours_loss, torch_loss = 0, 0
    for o, t in zip(ours_outputs, torch_outputs):
        weight = rng.standard_normal(o.shape).astype(o.dtype)
        ours_loss = ours_loss + (o * tg.tensor(weight)).sum()
        torch_loss = torch_loss + (t * torch.tensor(weight)).sum()
    ours_loss.backward()
    torch_loss.backward()
    for name, (o, t) in enumerate(zip(ours_leaves, torch_leaves)):
        close(o.grad.numpy(), t.grad, tol, f"grad of input {name}")
    for (name, o), (torch_name, t) in zip(ours_params, torch_params):
        assert name == torch_name
        close(o.grad.numpy(), t.grad, tol, f"grad of {name}")


# ---- sequence layers vs torch -----------------------------------------------------------

def run_torch(layer, x, hx, lengths, batch_first):
    if lengths is None:
        return layer(x, hx)
    pack = torch.nn.utils.rnn
    packed = pack.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = layer(packed, hx)
    out, _ = pack.pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    return out, state


def layer_parity(mode, num_layers, bidirectional, batch_first, with_hx, with_lengths, dtype, bias=True):
    ours_cls, torch_name, extra = LAYERS[mode]
    ours, theirs = twins(ours_cls, torch_name, dtype, I, H, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, **extra)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    leaves = [pair(x)]
    hx_ours = hx_torch = None
    if with_hx:
        states = [pair(rng.standard_normal(((2 if bidirectional else 1) * num_layers, B, H)).astype(dtype))
                  for _ in range(2 if mode == "lstm" else 1)]
        leaves += states
        hx_ours = tuple(s[0] for s in states) if mode == "lstm" else states[0][0]
        hx_torch = tuple(s[1] for s in states) if mode == "lstm" else states[0][1]
    lengths = LENGTHS if with_lengths else None
    out, state = ours(leaves[0][0], hx_ours, lengths=lengths)
    out_t, state_t = run_torch(theirs, leaves[0][1], hx_torch, lengths, batch_first)
    tol = TOL[dtype]
    close(out.numpy(), out_t, tol, "output")
    for i, (s, s_t) in enumerate(zip(as_tuple(state), as_tuple(state_t))):
        close(s.numpy(), s_t, tol, f"final state {i}")
    check_backward([out, *as_tuple(state)], [out_t, *as_tuple(state_t)], [p[0] for p in leaves],
                   [p[1] for p in leaves], ours.named_parameters(), theirs.named_parameters(), tol)


@needs_torch
@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("batch_first,with_hx,with_lengths", list(itertools.product([False, True], repeat=3)))
def test_layer_matches_torch_float64(mode, num_layers, bidirectional, batch_first, with_hx, with_lengths):
    layer_parity(mode, num_layers, bidirectional, batch_first, with_hx, with_lengths, np.float64)


@needs_torch
@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_matches_torch_float32(mode, with_lengths):
    layer_parity(mode, 2, True, True, True, with_lengths, np.float32)


@needs_torch
@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_layer_without_bias_matches_torch(mode):
    layer_parity(mode, 2, True, False, True, True, np.float64, bias=False)


@needs_torch
@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_unbatched_input_matches_torch(mode):
    ours_cls, torch_name, extra = LAYERS[mode]
    ours, theirs = twins(ours_cls, torch_name, np.float64, I, H, 2, bidirectional=True, **extra)
    x, x_t = pair(np.random.default_rng(0).standard_normal((T, I)))
    out, state = ours(x)
    out_t, state_t = theirs(x_t)
    close(out.numpy(), out_t, 1e-10, "output")
    for s, s_t in zip(as_tuple(state), as_tuple(state_t)):
        close(s.numpy(), s_t, 1e-10, "final state")
    check_backward([out], [out_t], [x], [x_t], ours.named_parameters(), theirs.named_parameters(), 1e-10)


@needs_torch
@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_and_shapes_match_torch(mode, bias):
    ours_cls, torch_name, extra = LAYERS[mode]
    ours = ours_cls(I, H, 2, bias=bias, bidirectional=True, **extra)
    theirs = getattr(torch.nn, torch_name)(I, H, 2, bias=bias, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [v.shape for v in ours.state_dict().values()] == [tuple(v.shape) for v in theirs.state_dict().values()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert ([[p.shape for p in group] for group in ours.all_weights]
            == [[tuple(p.shape) for p in group] for group in theirs.all_weights])


def test_lengths_zero_padded_outputs_and_tensor_lengths():
    ours = R.GRU(I, H, bidirectional=True)
    x = tg.randn(T, B, I)
    out, _ = ours(x, lengths=tg.tensor(LENGTHS))
    for b, n in enumerate(LENGTHS):
        assert np.all(out.numpy()[n:, b] == 0)
        assert np.all(out.numpy()[:n, b] != 0)


def test_padding_values_do_not_matter():
    """Whatever sits in the padded steps changes neither outputs nor final states nor gradients."""
    ours = R.LSTM(I, H, 2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    noisy = x.copy()
    for b, n in enumerate(LENGTHS):
        noisy[n:, b] = 100.0
    results = []
    for data in (x, noisy):
        ours.zero_grad()
        out, (h, c) = ours(tg.tensor(data), lengths=LENGTHS)
        (out.sum() + h.sum() + c.sum()).backward()
        results.append([out.numpy(), h.numpy(), c.numpy()] + [p.grad.numpy() for p in ours.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- cells vs torch -----------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("mode", sorted(CELLS))
@pytest.mark.parametrize("batched,with_hx,bias", [(True, True, True), (True, False, True), (False, True, True),
                                                  (True, True, False)])
def test_cell_matches_torch(mode, batched, with_hx, bias):
    ours_cls, torch_name, extra, _ = CELLS[mode]
    ours, theirs = twins(ours_cls, torch_name, np.float64, I, H, bias=bias, **extra)
    rng = np.random.default_rng(0)
    lead = (B,) if batched else ()
    leaves = [pair(rng.standard_normal(lead + (I,)))]
    if with_hx:
        leaves += [pair(rng.standard_normal(lead + (H,))) for _ in range(2 if mode == "lstm" else 1)]
    hx = [None, None]
    if with_hx:
        hx = [tuple(p[k] for p in leaves[1:]) if mode == "lstm" else leaves[1][k] for k in (0, 1)]
    out, out_t = ours(leaves[0][0], hx[0]), theirs(leaves[0][1], hx[1])
    for o, t in zip(as_tuple(out), as_tuple(out_t)):
        close(o.numpy(), t, 1e-10, "cell output")
    check_backward(as_tuple(out), as_tuple(out_t), [p[0] for p in leaves], [p[1] for p in leaves],
                   ours.named_parameters(), theirs.named_parameters(), 1e-10)
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("mode", sorted(CELLS))
def test_cell_function_gradcheck(mode):
    gates = {"lstm": 4, "gru": 3}.get(mode, 1)
    cell = CELLS[mode][3]
    make = lambda *shape: tg.randn(*shape, dtype=np.float64, requires_grad=True)  # noqa: E731
    x, h, c = make(2, 3), make(2, 2), make(2, 2)
    params = [make(gates * 2, 3), make(gates * 2, 2), make(gates * 2), make(gates * 2)]
    if mode == "lstm":
        assert tg.gradcheck(lambda x, h, c, *p: cell(x, (h, c), *p), [x, h, c, *params])
    else:
        assert tg.gradcheck(lambda x, h, *p: cell(x, h, *p), [x, h, *params])


def test_bidirectional_two_layer_lstm_with_lengths_gradcheck():
    lstm = R.LSTM(2, 2, num_layers=2, bidirectional=True).double()
    x = tg.randn(3, 2, 2, dtype=np.float64, requires_grad=True)
    h0, c0 = (tg.randn(4, 2, 2, dtype=np.float64, requires_grad=True) for _ in range(2))
    params = list(lstm.parameters())

    def run(x, h0, c0, *_):
        out, (h, c) = lstm(x, (h0, c0), lengths=[2, 3])
        return out, h, c
    assert tg.gradcheck(run, [x, h0, c0, *params])


# ---- graph labels, dropout, init -----------------------------------------------------------

def graph_scopes(root):
    return {node.scope for node in tg.autograd.walk(root) if not node.is_leaf}


def test_every_step_is_labelled_by_layer_direction_and_time():
    lstm = R.LSTM(I, H, num_layers=2, bidirectional=True)
    with tg.scope("encoder"):
        out, _ = lstm(tg.randn(T, B, I), lengths=LENGTHS)
    scopes = graph_scopes(out)
    for layer, suffix, t in itertools.product(range(2), ("", "_reverse"), range(T)):
        assert f"encoder/lstm/l{layer}{suffix}/t{t}" in scopes
        assert f"encoder/lstm/l{layer}{suffix}/input" in scopes
    assert all(s.startswith("encoder/lstm") for s in scopes)


def test_step_nodes_carry_their_own_time_label():
    out, _ = R.GRU(I, H)(tg.randn(T, B, I))
    assert out.grad_fn.scope == "gru/l0/output"
    assert [p.name for p in out.grad_fn.parents] == ["grusequence"]  # the loop in one node, until read
    list(tg.autograd.walk(out))  # a reader sees the steps: the output is their stack
    assert out.grad_fn.name == "stack" and out.grad_fn.scope == "gru/l0/output"
    pieces = out.grad_fn.parents  # h_t as views of the steps, in time order
    assert [piece.parents[0].scope for piece in pieces] == [f"gru/l0/t{t}" for t in range(T)]
    assert {piece.parents[0].name for piece in pieces} == {"grustep"}


def test_dropout_between_layers():
    rng_input = tg.randn(T, B, I)
    lstm = R.LSTM(I, H, num_layers=2, dropout=0.5)
    plain = R.LSTM(I, H, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    lstm.eval()
    np.testing.assert_array_equal(lstm(rng_input)[0].numpy(), plain(rng_input)[0].numpy())
    lstm.train()
    tg.manual_seed(3)
    first = lstm(rng_input)[0].numpy()
    tg.manual_seed(3)
    again = lstm(rng_input)[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - plain(rng_input)[0].numpy()).max() > 1e-3


def test_dropout_is_not_applied_after_the_last_layer():
    """With p=1 the second layer sees only zeros; its output is then exactly a one-layer LSTM's on zeros."""
    lstm = R.LSTM(I, H, num_layers=2, dropout=1.0)
    top = R.LSTM(H, H)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in lstm.state_dict().items() if "_l1" in k})
    out, _ = lstm(tg.randn(T, B, I))
    expected, _ = top(tg.zeros(T, B, H))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)
    assert np.abs(out.numpy()).max() > 0


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers=1"):
        R.GRU(I, H, dropout=0.2)


@pytest.mark.parametrize("cls", [R.RNN, R.LSTM, R.GRU, RNNCell, LSTMCell, GRUCell])
def test_default_init_is_uniform_in_one_over_sqrt_hidden(cls):
    layer = cls(I, 16)
    bound = 1 / np.sqrt(16)
    values = np.concatenate([p.numpy().ravel() for p in layer.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    assert abs(values.mean()) < 0.1 * bound
    tg.manual_seed(5)
    first = cls(I, 16).state_dict()
    tg.manual_seed(5)
    assert all(np.array_equal(a, b) for a, b in zip(first.values(), cls(I, 16).state_dict().values()))


@pytest.mark.parametrize("cls", [R.RNN, RNNCell])
def test_irnn_init(cls):
    rnn = R.init_irnn_(cls(I, H, nonlinearity="relu") if cls is RNNCell else cls(I, H, 2, nonlinearity="relu"),
                       gain=0.5)
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            np.testing.assert_array_equal(p.numpy(), 0.5 * np.eye(H))
        elif name.startswith("bias"):
            assert not p.numpy().any()
        else:
            assert p.numpy().any()


def test_irnn_init_refuses_gated_layers():
    with pytest.raises(TypeError, match="RNN or RNNCell"):
        R.init_irnn_(R.LSTM(I, H))


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda m: m(tg.randn(T, B, I + 1)),
     r"expected input with 4 features \(input_size\), got 5 \(input shape \(5, 3, 5\)\)"),
    (lambda m: m(tg.randn(T, B, 1, I)), r"expected input of 3 dims .* got shape \(5, 3, 1, 4\)"),
    (lambda m: m(tg.randn(T, B, I), (tg.zeros(1, B, H), tg.zeros(2, B, H))),
     r"expected h_0 of shape \(2, 3, 3\) .* got \(1, 3, 3\)"),
    (lambda m: m(tg.randn(T, B, I), (tg.zeros(2, B, H), tg.zeros(2, B + 1, H))),
     r"expected c_0 of shape \(2, 3, 3\) .* got \(2, 4, 3\)"),
    (lambda m: m(tg.randn(T, B, I), lengths=[1, 2]), r"got 2 lengths for a batch of 3"),
    (lambda m: m(tg.randn(T, B, I), lengths=[1, 2, 6]), r"lengths must be in \[1, 5\]"),
    (lambda m: m(tg.randn(T, B, I), lengths=[0, 2, 3]), r"lengths must be in \[1, 5\]"),
    (lambda m: m(tg.randn(T, B, I), lengths=[1.5, 2, 3]), r"1-D sequence of ints"),
    (lambda m: m(tg.randn(0, B, I)), r"at least one time step, got input shape \(0, 3, 4\)"),
])
def test_layer_errors(call, match):
    with pytest.raises(tg.ShapeError, match=match):
        call(R.LSTM(I, H, bidirectional=True))


def test_other_errors():
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        R.LSTM(I, H)(tg.randn(T, B, I), tg.zeros(1, B, H))
    with pytest.raises(tg.DTypeError, match="float64 but the parameters are float32"):
        R.GRU(I, H)(tg.randn(T, B, I, dtype=np.float64))
    with pytest.raises(ValueError, match="nonlinearity"):
        R.RNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        R.RNN(I, H, 2, dropout=1.5)
    with pytest.raises(tg.ShapeError, match=r"expected input with 4 features .* got 2"):
        LSTMCell(I, H)(tg.randn(B, 2))
    with pytest.raises(tg.ShapeError, match=r"expected hx of shape \(3, 3\), got \(2, 3\)"):
        GRUCell(I, H)(tg.randn(B, I), tg.zeros(2, H))


# ---- devices -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_forward_backward_on_device(mode, device):
    ours_cls, _, extra = LAYERS[mode]
    layers = [ours_cls(I, H, 2, bidirectional=True, **extra) for _ in range(2)]
    layers[1].load_state_dict(layers[0].state_dict())
    layers[1].to(device)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    results = []
    for layer, dev in zip(layers, ("cpu", device)):
        out, state = layer(tg.tensor(x, device=dev), lengths=LENGTHS)
        assert out.device == dev
        (out.sum() + sum(s.sum() for s in as_tuple(state))).backward()
        results.append([out.numpy()] + [p.grad.numpy() for p in layer.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cell_on_device(device):
    cell = LSTMCell(I, H).to(device)
    h, c = cell(tg.randn(B, I, device=device))
    (h.sum() + c.sum()).backward()
    assert cell.weight_hh.grad.device == device


@needs_torch
@pytest.mark.parametrize("name,args,kwargs", [
    ("RNN", (3, 4, 2), {"nonlinearity": "relu", "bidirectional": True}),
    ("LSTM", (3, 4, 2), {"bias": False, "batch_first": True, "dropout": 0.5}),
    ("GRU", (3, 4), {}),
    ("RNNCell", (3, 4), {"bias": False, "nonlinearity": "relu"}),
    ("LSTMCell", (3, 4), {}),
])
def test_exported_with_torch_repr(name, args, kwargs):
    import tinygrad_rnn.nn as nn
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))
