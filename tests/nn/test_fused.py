"""Fused cell steps (one node per step, the default) against the op-by-op cells (tg.nn.fused(False)):
the same outputs, states and every gradient to float64 rounding, for every cell, layer count,
direction, layout, initial state and `lengths`; the flag's scoping; what the graph holds."""
import itertools
import threading

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import ops
from tinygrad_rnn.nn import rnn as R
from tinygrad_rnn.nn.cells import GRUCell, LSTMCell, RNNCell

T, B, I, H = 5, 3, 4, 3
LENGTHS = [3, 5, 1]
LAYERS = {"rnn_tanh": (R.RNN, {}), "rnn_relu": (R.RNN, {"nonlinearity": "relu"}), "lstm": (R.LSTM, {}),
          "gru": (R.GRU, {})}
CELLS = {"rnn_tanh": (RNNCell, {}), "rnn_relu": (RNNCell, {"nonlinearity": "relu"}), "lstm": (LSTMCell, {}),
         "gru": (GRUCell, {})}
STEP_OPS = {"rnn_tanh": "rnnstep", "rnn_relu": "rnnstep", "lstm": "lstmstep", "gru": "grustep"}


def both_paths(module, inputs, call):
    """call(module, *input tensors) under fused(True) and fused(False) -> per path, every value
    and gradient (outputs, then the inputs' grads, then the parameters')."""
    results = []
    for mode in (True, False):
        module.zero_grad()
        leaves = [tg.tensor(a, requires_grad=True) for a in inputs]
        with tg.nn.fused(mode):
            outputs = call(module, *leaves)
        rng = np.random.default_rng(2)
        loss = sum((o * tg.tensor(rng.standard_normal(o.shape))).sum() for o in outputs)
        loss.backward()
        results.append([o.numpy() for o in outputs] + [t.grad.numpy() for t in leaves] +
                       [p.grad.numpy() for p in module.parameters()])
    return results


def assert_same(results):
    fused, plain = results
    assert len(fused) == len(plain)
    for k, (a, b) in enumerate(zip(fused, plain)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"value {k}")


@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("batch_first,with_hx,with_lengths", list(itertools.product([False, True], repeat=3)))
def test_layers_fused_equal_op_by_op(mode, num_layers, bidirectional, batch_first, with_hx, with_lengths):
    cls, extra = LAYERS[mode]
    layer = cls(I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, **extra).double()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((B, T, I) if batch_first else (T, B, I))]
    states = (2 if mode == "lstm" else 1) if with_hx else 0
    inputs += [rng.standard_normal(((2 if bidirectional else 1) * num_layers, B, H)) for _ in range(states)]
    lengths = LENGTHS if with_lengths else None

    def call(layer, x, *hx):
        state = None if not hx else tuple(hx) if mode == "lstm" else hx[0]
        out, final = layer(x, state, lengths=lengths)
        return [out, *(final if mode == "lstm" else (final,))]
    assert_same(both_paths(layer, inputs, call))


@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_layers_without_bias_fused_equal_op_by_op(mode):
    cls, extra = LAYERS[mode]
    layer = cls(I, H, 2, bias=False, bidirectional=True, **extra).double()
    x = np.random.default_rng(0).standard_normal((T, B, I))
    assert_same(both_paths(layer, [x], lambda layer, x: [layer(x, lengths=LENGTHS)[0]]))


@pytest.mark.parametrize("mode", sorted(CELLS))
@pytest.mark.parametrize("batched,with_hx,bias", [(True, True, True), (True, False, True), (False, True, True),
                                                  (True, True, False)])
def test_cells_fused_equal_op_by_op(mode, batched, with_hx, bias):
    cls, extra = CELLS[mode]
    cell = cls(I, H, bias=bias, **extra).double()
    rng = np.random.default_rng(0)
    lead = (B,) if batched else ()
    inputs = [rng.standard_normal(lead + (I,))]
    if with_hx:
        inputs += [rng.standard_normal(lead + (H,)) for _ in range(2 if mode == "lstm" else 1)]

    def call(cell, x, *hx):
        # three steps, so that the state a step hands on is differentiated through the next
        state = None if not hx else tuple(hx) if mode == "lstm" else hx[0]
        outputs = []
        for _ in range(3):
            state = cell(x, state)
            outputs += list(state) if mode == "lstm" else [state]
        return outputs
    assert_same(both_paths(cell, inputs, call))


@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_fused_is_one_node_per_step_with_h_and_c_marked(mode):
    cls, extra = LAYERS[mode]
    out, _ = cls(I, H, **extra)(tg.randn(T, B, I))
    nodes = list(tg.autograd.walk(out))
    steps = [n for n in nodes if n.op == STEP_OPS[mode]]
    assert [n.scope for n in steps] == [f"{cls.__name__.lower()}/l0/t{t}" for t in range(T)]
    roles = {n.role for n in nodes if n.scope and n.scope.endswith("/t2")} - {None}
    assert roles == ({"h", "c"} if mode == "lstm" else {"h"})
    assert not {"sigmoid", "tanh", "relu"} & {n.op for n in nodes}
    with tg.nn.fused(False):
        plain, _ = cls(I, H, **extra)(tg.randn(T, B, I))
    assert not {STEP_OPS[mode]} & {n.op for n in tg.autograd.walk(plain)}


def test_the_flag_nests_restores_and_is_per_thread():
    assert tg.nn.is_fused()
    with tg.nn.fused(False):
        assert not tg.nn.is_fused()
        with tg.nn.fused(True):
            assert tg.nn.is_fused()
        assert not tg.nn.is_fused()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(tg.nn.is_fused()))
        thread.start()
        thread.join()
        assert seen == [True]  # another thread keeps the default
    assert tg.nn.is_fused()
    tg.nn.set_fused(False)
    try:
        assert not tg.nn.is_fused()
    finally:
        tg.nn.set_fused(True)


def test_the_flag_decorates_functions_and_generators():
    """As no_grad: each call (each resume, for a generator) runs inside the mode, recursion included."""
    @tg.nn.fused(False)
    def depth(n):
        assert not tg.nn.is_fused()
        return 0 if n == 0 else 1 + depth(n - 1)

    @tg.nn.fused(False)
    def steps():
        for _ in range(2):
            yield tg.nn.is_fused()
    assert depth(3) == 3 and tg.nn.is_fused()
    gen = steps()
    assert next(gen) is False and tg.nn.is_fused()  # the caller between resumes keeps its own mode
    assert next(gen) is False and depth.__name__ == "depth"


def test_fused_step_refuses_mixed_dtypes():
    x = tg.randn(B, 4 * H, dtype=np.float64)
    h, c = tg.randn(B, H), tg.randn(B, H)
    with pytest.raises(tg.DTypeError, match="lstmstep: dtypes differ"):
        ops.LSTMStep.apply(x, h, c, tg.randn(H, 4 * H))


def test_fused_lstm_keeps_float32_and_frees_what_it_saved():
    lstm = R.LSTM(I, H)
    out, (h, c) = lstm(tg.randn(T, B, I))
    assert out.dtype == h.dtype == c.dtype == np.float32
    (out.sum() + c.sum()).backward()
    assert all(p.grad.dtype == np.float32 for p in lstm.parameters())
    assert all(n.fn.saved is None for n in tg.autograd.walk(out) if n.op == "lstmstep")


# ---- BatchNorm: one node (ops.BatchNorm) when fused, its formula's ops otherwise ------------------

@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_fused_equals_op_by_op_forward_and_backward(shape, affine):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 3 + 1
    norms = []
    for _ in range(2):
        norm = tg.nn.BatchNorm1d(shape[1], affine=affine).double()
        if affine:
            norm.weight.data = tg.tensor(rng.standard_normal(shape[1]))
            norm.bias.data = tg.tensor(rng.standard_normal(shape[1]))
        norms.append(norm)
    norms[1].load_state_dict(norms[0].state_dict())
    results = both_paths(norms[0], [x], lambda m, t: [m(t), m(t * 2.0)])  # two batches: the buffers move
    assert_same(results)
    fused_norm = norms[0]
    fused_norm.zero_grad()
    with tg.nn.fused(True):
        node = fused_norm(tg.tensor(x, requires_grad=True)).grad_fn
    assert node.name == "batchnorm"
    with tg.nn.fused(False):
        assert norms[1](tg.tensor(x, requires_grad=True)).grad_fn.name != "batchnorm"


def test_batchnorm_fused_buffers_match_the_op_by_op_path():
    x = np.random.default_rng(5).standard_normal((8, 3)).astype(np.float32)
    buffers = []
    for mode in (True, False):
        norm = tg.nn.BatchNorm1d(3)
        with tg.nn.fused(mode):
            for scale in (1.0, 3.0):
                norm(tg.tensor(x * scale))
        buffers.append((norm.running_mean.numpy(), norm.running_var.numpy(), norm.num_batches_tracked.item()))
    np.testing.assert_allclose(buffers[0][0], buffers[1][0], rtol=1e-6)
    np.testing.assert_allclose(buffers[0][1], buffers[1][1], rtol=1e-6)
    assert buffers[0][2] == buffers[1][2] == 2
