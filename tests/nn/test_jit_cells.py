"""The numba cell kernels (tg.set_kernels("numba"), tinygrad_rnn/jit/cells.py) against numpy's
cell functions (ops.py, the default) and torch: each kernel on its own, with extreme values, views
and the arguments it must decline; every recurrent layer and cell through them, forward and every
gradient; threads. Skipped where numba is not installed."""
import numpy as np
import pytest
from kernels import TANH_ERROR, both
from oracle import needs_torch, torch
from threads import run_in_threads

import tinygrad_rnn as tg
from tinygrad_rnn import ops

jit = pytest.importorskip("tinygrad_rnn.jit", reason="numba (the jit extra) is not installed")
from tinygrad_rnn.jit import cells  # noqa: E402



@pytest.fixture
def rng():
    return np.random.default_rng(0)




def close(a, b, scale=1.0):
    np.testing.assert_allclose(b, a, rtol=4 * TANH_ERROR, atol=4 * TANH_ERROR * scale)


# ---- the rational tanh -------------------------------------------------------------------

def jit_tanh(x):
    out = np.array(x, dtype=np.float32)
    cells._tanh_(out)
    return out


def test_tanh_is_within_its_bound_everywhere():
    x = np.concatenate([np.linspace(-20, 20, 400_001, dtype=np.float32),
                        np.geomspace(1e-30, 1e-3, 1000, dtype=np.float32)])
    error = np.abs(jit_tanh(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert error.max() <= TANH_ERROR, error.max()
    # relative accuracy near 0, where tanh(x) ~ x: no absolute floor hides a wrong slope there
    small = x[(np.abs(x) < 1e-3) & (x != 0)]
    np.testing.assert_allclose(jit_tanh(small), np.tanh(small.astype(np.float64)), rtol=2e-7)


def test_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.0, 1e30, -1e30, 1e-45], dtype=np.float32)
    y = jit_tanh(x)
    assert y[0] == 0 and y[1] == 0
    np.testing.assert_array_equal(y[[2, 3, 6, 7]], [1, -1, 1, -1])
    assert np.isnan(y[4])
    assert abs(y[5] - np.tanh(9.0)) <= TANH_ERROR
    assert 0 <= y[8] <= 2e-45
    assert np.all(np.abs(y[np.isfinite(y)]) <= 1)


def test_tanh_is_odd_and_monotone():
    x = np.linspace(0, 12, 100_001, dtype=np.float32)
    np.testing.assert_array_equal(jit_tanh(-x), -jit_tanh(x))
    # float32 rounding in the polynomials wobbles it by a few ulp near 1, never by more than its error
    assert np.all(np.diff(jit_tanh(x)) >= -2 * TANH_ERROR)


# ---- each kernel against numpy's function -----------------------------------------------

def lstm_inputs(rng, batch, hidden, scale):
    gates = (scale * rng.standard_normal((batch, 4 * hidden))).astype(np.float32)
    c = (scale * rng.standard_normal((batch, hidden))).astype(np.float32)
    return gates, c


def run_lstm_forward(gates, c):
    gates = gates.copy()
    h_out, c_out, tanh_c = (np.empty(c.shape, np.float32) for _ in range(3))
    ops.lstm_activate_(gates, c, h_out, c_out, tanh_c)
    return gates, h_out, c_out, tanh_c


@pytest.mark.parametrize("batch,hidden", [(1, 1), (3, 5), (32, 128), (7, 33), (0, 4), (2, 0)])
@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_lstm_forward_matches_numpy(rng, batch, hidden, scale):
    gates, c = lstm_inputs(rng, batch, hidden, scale)
    ref, jit = both(lambda: run_lstm_forward(gates, c))
    for a, b in zip(ref, jit):
        close(a, b, scale)


def run_lstm_backward(gates, c, tanh_c, d_h, d_c, into_gates):
    gates = gates.copy()
    d_pre = gates if into_gates else np.empty_like(gates)
    d_c_prev = ops.lstm_backward(gates, c, tanh_c, d_h, d_c, d_pre)
    return d_pre, d_c_prev


@pytest.mark.parametrize("batch,hidden", [(1, 1), (4, 7), (32, 128)])
@pytest.mark.parametrize("into_gates", [False, True], ids=["own", "over_gates"])
def test_lstm_backward_matches_numpy(rng, batch, hidden, into_gates):
    gates, c = lstm_inputs(rng, batch, hidden, 2.0)
    gates, _, _, tanh_c = run_lstm_forward(gates, c)  # activations, as backward gets them
    d_h, d_c = (rng.standard_normal((batch, hidden)).astype(np.float32) for _ in range(2))
    ref, jit = both(lambda: run_lstm_backward(gates, c, tanh_c, d_h, d_c, into_gates))
    for a, b in zip(ref, jit):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # exact formulas: only rounding differs


def gru_inputs(rng, batch, hidden, scale=2.0):
    x, hp = ((scale * rng.standard_normal((batch, 3 * hidden))).astype(np.float32) for _ in range(2))
    h = rng.standard_normal((batch, hidden)).astype(np.float32)
    return x, h, hp


def run_gru_forward(x, h, hp):
    batch, hidden = h.shape
    rz, n, out = np.empty((batch, 2 * hidden), np.float32), np.empty_like(h), np.empty_like(h)
    ops.gru_activate(x, h, hp, rz, n, out)
    return rz, n, out


@pytest.mark.parametrize("batch,hidden", [(1, 1), (3, 5), (32, 128), (0, 3)])
@pytest.mark.parametrize("scale", [0.1, 2.0, 50.0])
def test_gru_forward_matches_numpy(rng, batch, hidden, scale):
    x, h, hp = gru_inputs(rng, batch, hidden, scale)
    for a, b in zip(*both(lambda: run_gru_forward(x, h, hp))):
        close(a, b, scale)  # n's argument carries r's error times hp's size


@pytest.mark.parametrize("batch,hidden", [(1, 1), (4, 7), (32, 128)])
def test_gru_backward_matches_numpy(rng, batch, hidden):
    x, h, hp = gru_inputs(rng, batch, hidden)
    rz, n, _ = run_gru_forward(x, h, hp)
    grad = rng.standard_normal((batch, hidden)).astype(np.float32)

    def backward():
        d_pre = np.empty((batch, 3 * hidden), np.float32)
        ops.gru_backward(grad, rz, n, hp[:, 2 * hidden:], h, d_pre)
        return d_pre
    ref, jit = both(backward)
    np.testing.assert_allclose(jit, ref, rtol=1e-6, atol=1e-6)


def test_kernels_take_strided_views(rng):
    """A gate slice or a transposed state is not C-contiguous: numba compiles a strided version."""
    gates, c = lstm_inputs(rng, 6, 5, 1.0)
    c_t = np.asfortranarray(c)
    wide = np.zeros((6, 10), np.float32)
    h_view = wide[:, ::2]
    ref, jit = both(lambda: run_lstm_forward(gates, c_t))
    for a, b in zip(ref, jit):
        close(a, b)

    def into_view():
        g = gates.copy()
        c_out, tanh_c = np.empty_like(c), np.empty_like(c)
        ops.lstm_activate_(g, c_t, h_view, c_out, tanh_c)
        return h_view.copy()
    close(*both(into_view))
    assert np.all(wide[:, 1::2] == 0)  # the view's gaps untouched


def test_nan_and_inf_pass_through_as_numpy(rng):
    gates, c = lstm_inputs(rng, 2, 4, 1.0)
    gates[0, 0], gates[0, 5], gates[1, 9], c[1, 2] = np.nan, np.inf, -np.inf, np.nan
    ref, jit = both(lambda: run_lstm_forward(gates, c))
    for a, b in zip(ref, jit):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        finite = np.isfinite(a)
        close(a[finite], b[finite])


class Subclass(np.ndarray):
    """An ndarray subclass: numba would type it as a plain array and drop what the subclass adds."""


def spy_kernels(monkeypatch):
    """Record each call a numba kernel took (its entry did not decline with NotImplemented)."""
    calls = []

    def spy(name, entry):
        def run(*args):
            out = entry(*args)
            if out is not NotImplemented:
                calls.append(name)
            return out
        return run
    for name in ("lstm_activate_", "lstm_backward", "gru_activate", "gru_backward"):
        monkeypatch.setattr(jit, name, spy(name, getattr(jit, name)))
    return calls


@pytest.mark.parametrize("case", ["float64", "float16", "broadcast_c", "not_numpy"])
def test_declined_arguments_run_numpys_code(rng, monkeypatch, case):
    """What the kernels do not take (another dtype, a broadcast state, another array type) runs numpy's
    function: the same numbers bit for bit, and no kernel call."""
    gates, c = lstm_inputs(rng, 3, 4, 1.0)
    if case in ("float64", "float16"):
        gates, c = gates.astype(case), c.astype(case)
    elif case == "broadcast_c":
        c = c[:1]

    def forward():
        g = gates.copy()
        outs = [np.empty(np.broadcast_shapes(c.shape, g[..., :4].shape), g.dtype) for _ in range(3)]
        if case == "not_numpy":
            g, outs = g.view(Subclass), [o.view(Subclass) for o in outs]
        ops.lstm_activate_(g, c, *outs)
        return [np.asarray(a) for a in [g] + outs]
    ref = both(forward)[0]
    calls = spy_kernels(monkeypatch)
    with tg.kernels("numba"):
        jit = forward()
    assert calls == []
    for a, b in zip(ref, jit):
        np.testing.assert_array_equal(a, b)


def test_float32_does_reach_the_kernels(rng, monkeypatch):
    calls = spy_kernels(monkeypatch)
    layer = tg.nn.LSTM(3, 4)
    with tg.kernels("numba"):
        layer(tg.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32)))[0].sum().backward()
        tg.nn.GRU(3, 4)(tg.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32)))[0].sum().backward()
    assert calls.count("lstm_activate_") == 5 and calls.count("lstm_backward") == 5
    assert calls.count("gru_activate") == 5 and calls.count("gru_backward") == 5


# ---- whole layers and cells ------------------------------------------------------------

LAYERS = {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU}


def layer_values(cls, kernels, *, num_layers, bidirectional, batch_first, lengths, fused=True):
    tg.manual_seed(3)
    layer = cls(4, 6, num_layers, batch_first=batch_first, bidirectional=bidirectional)
    rng = np.random.default_rng(1)
    x = tg.tensor(rng.standard_normal((3, 7, 4) if batch_first else (7, 3, 4)).astype(np.float32),
                  requires_grad=True)
    with tg.kernels(kernels), tg.nn.fused(fused):
        out, final = layer(x, lengths=lengths)
        finals = final if isinstance(final, tuple) else (final,)
        weights = [tg.tensor(rng.standard_normal(t.shape).astype(np.float32)) for t in (out, *finals)]
        sum(((t * w).sum() for t, w in zip((out, *finals), weights)), tg.tensor(0.0)).backward()
    return [out.numpy(), *(f.numpy() for f in finals), x.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()]


@pytest.mark.parametrize("cell", sorted(LAYERS))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("batch_first,lengths", [(False, None), (True, [7, 2, 5])])
def test_layers_match_numpy_kernels(cell, num_layers, bidirectional, batch_first, lengths):
    options = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, lengths=lengths)
    ref = layer_values(LAYERS[cell], "numpy", **options)
    jit = layer_values(LAYERS[cell], "numba", **options)
    assert len(ref) == len(jit)
    for k, (a, b) in enumerate(zip(ref, jit)):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6, err_msg=f"value {k}")


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell"])
def test_cells_match_numpy_kernels(cell, rng):
    x, h = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)

    def run():
        tg.manual_seed(0)
        module = getattr(tg.nn, cell)(3, 4)
        xs, hs = tg.tensor(x, requires_grad=True), tg.tensor(h, requires_grad=True)
        out = module(xs, (hs, hs * 0.5) if cell == "LSTMCell" else hs)
        (out[0] * 2 + out[1] if cell == "LSTMCell" else out).sum().backward()
        return [xs.grad.numpy(), hs.grad.numpy()] + [p.grad.numpy() for p in module.parameters()]
    for a, b in zip(*both(run)):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)


@needs_torch
@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_layers_match_torch(cell):
    """Through the kernels, the layer still is torch's, on the same weights (float32)."""
    tg.manual_seed(5)
    ours = LAYERS[cell](5, 8, 2, bidirectional=True)
    theirs = getattr(torch.nn, cell.upper())(5, 8, 2, bidirectional=True)
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((9, 4, 5)).astype(np.float32)
    with tg.kernels("numba"):
        xs = tg.tensor(x, requires_grad=True)
        out, _ = ours(xs)
        (out * out).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    out_t, _ = theirs(xt)
    (out_t * out_t).sum().backward()
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), dict(theirs.named_parameters())[name].grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=name)


def test_training_follows_the_numpy_kernels():
    """Twenty Adam steps of a small char model: the losses stay together (float32 rounding only)."""
    def train(kernels):
        tg.manual_seed(0)
        model = tg.nn.LSTM(6, 16)
        head = tg.nn.Linear(16, 6)
        opt = tg.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, 6, size=(13, 4))
        x = tg.tensor(np.eye(6, dtype=np.float32)[tokens[:-1]])
        y = tg.tensor(tokens[1:].reshape(-1))
        losses = []
        with tg.kernels(kernels):
            for _ in range(20):
                opt.zero_grad()
                loss = tg.nn.functional.cross_entropy(head(model(x)[0].reshape(-1, 16)), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return np.array(losses)
    ref, jit = train("numpy"), train("numba")
    assert ref[-1] < ref[0] - 0.1  # it learns
    np.testing.assert_allclose(jit, ref, rtol=1e-4)


def test_threads_get_the_same_numbers():
    """nogil kernels in four threads at once: each thread's result is the one it gets alone."""
    def model(seed):
        tg.manual_seed(seed)
        x = np.random.default_rng(seed).standard_normal((20, 8, 5)).astype(np.float32)
        return tg.nn.LSTM(5, 32), x

    def run(layer, x):
        xs = tg.tensor(x, requires_grad=True)
        out, _ = layer(xs)
        out.sum().backward()
        return out.numpy(), xs.grad.numpy()
    models = [model(seed) for seed in range(4)]  # made in turn: the seed's generator is global
    with tg.kernels("numba"):
        alone = [run(*m) for m in models]
    together = [None] * 4

    def target(k):
        def go():
            with tg.kernels("numba"):  # a block is its own thread's
                together[k] = run(*models[k])
        return go
    run_in_threads(*(target(k) for k in range(4)))
    for a, b in zip(alone, together):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
