"""A hostile user against the numba kernels (tg.set_kernels("numba"), tinygrad_rnn/jit/): odd arrays
reaching the kernels directly, every recurrent layer option against torch with the kernels switched
between forward and backward, graph features (retain_graph, hooks, expand, in-place), Adam on every
parameter layout bit for bit numpy's, and the switch itself (nesting, threads, the environment
variable, numba's on-disk cache in a read-only install).

Tests marked `# Was a bug:` failed when written; the comment says what happened then."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest
from kernels import TANH_ERROR, both
from oracle import needs_torch, torch
from threads import run_in_threads, wait

import tinygrad_rnn as tg
from tinygrad_rnn import ops
from tinygrad_rnn.optim import adam

jit = pytest.importorskip("tinygrad_rnn.jit", reason="numba (the jit extra) is not installed")

MODES = [("numpy", "numpy"), ("numba", "numba"), ("numba", "numpy"), ("numpy", "numba")]  # (forward, backward)
MODE_IDS = ["np-np", "nb-nb", "nb-np", "np-nb"]
PACKAGE = os.path.dirname(tg.__file__)


@pytest.fixture(autouse=True)
def _numpy_kernels_after():
    """A test that leaks the numba selection must not leak it into the next test."""
    yield
    tg.set_kernels("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(0)




def assert_close_all(ref, got, rtol=2e-5, atol=2e-6):
    assert len(ref) == len(got)
    for k, (a, b) in enumerate(zip(ref, got)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"value {k}")


def assert_equal_all(ref, got):
    assert len(ref) == len(got)
    for k, (a, b) in enumerate(zip(ref, got)):
        np.testing.assert_array_equal(b, a, err_msg=f"value {k}")


# ---- the kernels called directly with odd arrays ----------------------------------------

def lstm_forward(gates, c, outs=None):
    gates = gates.copy()
    outs = outs if outs is not None else [np.empty(c.shape, np.float32) for _ in range(3)]
    ops.lstm_activate_(gates, c, *outs)
    return [gates] + [np.array(o) for o in outs]


def lstm_backward(gates, c, tanh_c, d_h, d_c):
    d_pre = np.empty(gates.shape, np.float32)
    d_c_prev = ops.lstm_backward(gates, c, tanh_c, d_h, d_c, d_pre)
    return [d_pre, d_c_prev]


def gru_forward(x, h, hp):
    batch, hidden = h.shape
    rz, n, out = np.empty((batch, 2 * hidden), np.float32), np.empty(h.shape, np.float32), np.empty(h.shape, np.float32)
    ops.gru_activate(x, h, hp, rz, n, out)
    return [rz, n, out]


def gru_backward(grad, rz, n, h_n, h):
    d_pre = np.empty((h.shape[0], 3 * h.shape[1]), np.float32)
    ops.gru_backward(grad, rz, n, h_n, h, d_pre)
    return [d_pre]


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("hidden", [2, 3, 8, 9, 15, 16, 17, 31, 63, 65, 257])
def test_cell_kernels_on_vector_width_edges(rng, batch, hidden):
    """Sizes either side of the SIMD widths (the vectorised loops' remainders) and batch 1."""
    gates = (2 * rng.standard_normal((batch, 4 * hidden))).astype(np.float32)
    c = (2 * rng.standard_normal((batch, hidden))).astype(np.float32)
    ref, got = both(lambda: lstm_forward(gates, c))
    assert_close_all(ref, got, rtol=4 * TANH_ERROR, atol=8 * TANH_ERROR)
    act, tanh_c = ref[0], ref[3]
    d_h, d_c = (rng.standard_normal((batch, hidden)).astype(np.float32) for _ in range(2))
    assert_close_all(*both(lambda: lstm_backward(act, c, tanh_c, d_h, d_c)), rtol=1e-6, atol=1e-6)

    x, hp = ((2 * rng.standard_normal((batch, 3 * hidden))).astype(np.float32) for _ in range(2))
    h = rng.standard_normal((batch, hidden)).astype(np.float32)
    ref, got = both(lambda: gru_forward(x, h, hp))
    assert_close_all(ref, got, rtol=4 * TANH_ERROR, atol=16 * TANH_ERROR)
    rz, n = ref[0], ref[1]
    grad = rng.standard_normal((batch, hidden)).astype(np.float32)
    assert_close_all(*both(lambda: gru_backward(grad, rz, n, hp[:, 2 * hidden:], h)), rtol=1e-6, atol=1e-6)


def unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = buf[1:].view(np.float32).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("layout", ["reversed", "broadcast_rows", "unaligned", "read_only", "fortran"])
def test_cell_kernels_read_any_layout(rng, layout):
    """Inputs (only read by the kernels) in any layout numpy takes: negative strides, a stride-0
    broadcast of one row (read-only), unaligned memory, a read-only array, Fortran order."""
    batch, hidden = 4, 6
    base = {"gates": (2 * rng.standard_normal((batch, 4 * hidden))).astype(np.float32),
            "c": rng.standard_normal((batch, hidden)).astype(np.float32),
            "d": rng.standard_normal((batch, hidden)).astype(np.float32),
            "x": rng.standard_normal((batch, 3 * hidden)).astype(np.float32),
            "h": rng.standard_normal((batch, hidden)).astype(np.float32)}
    make = {"reversed": lambda a: np.ascontiguousarray(a[::-1])[::-1],
            "broadcast_rows": lambda a: np.broadcast_to(a[:1], a.shape),
            "unaligned": unaligned, "read_only": read_only, "fortran": np.asfortranarray}[layout]
    with tg.kernels("numpy"):
        base["act"] = lstm_forward(base["gates"], base["c"])[0]  # activations, as backward gets them
    base["tanh_c"] = np.tanh(base["c"])
    odd = {k: make(v) for k, v in base.items()}
    plain = {k: np.ascontiguousarray(v) for k, v in odd.items()}  # the same values, C order

    def all_kernels(a):
        return (lstm_forward(a["gates"], a["c"]) + lstm_backward(a["act"], a["c"], a["tanh_c"], a["d"], a["c"]) +
                gru_forward(a["x"], a["h"], a["x"]) +
                gru_backward(a["d"], a["x"][:, :2 * hidden], a["c"], a["d"], a["h"]))
    with tg.kernels("numpy"):
        ref = all_kernels(plain)
    with tg.kernels("numba"):
        got = all_kernels(odd)
    assert_close_all(ref, got, rtol=4 * TANH_ERROR, atol=8 * TANH_ERROR)


def test_byte_swapped_float32_runs_numpys_code_bit_for_bit(rng):
    gates = (2 * rng.standard_normal((3, 20))).astype(">f4")
    c = rng.standard_normal((3, 5)).astype(">f4")

    def forward():
        outs = [np.empty((3, 5), ">f4") for _ in range(3)]
        g = gates.copy()
        ops.lstm_activate_(g, c, *outs)
        return [g] + outs
    assert_equal_all(*both(forward))


READ_ONLY_OUTPUTS = {
    "lstm_activate_ gates": lambda a: ops.lstm_activate_(read_only(a["gates"]), a["c"], *a["outs"]),
    "lstm_activate_ h_out": lambda a: ops.lstm_activate_(a["gates"], a["c"], read_only(a["outs"][0]), *a["outs"][1:]),
    "lstm_backward d_pre": lambda a: ops.lstm_backward(a["gates"], a["c"], a["c"], a["c"], a["c"],
                                                        read_only(a["gates"])),
    "gru_activate h_out": lambda a: ops.gru_activate(a["x"], a["c"], a["x"], a["rz"], a["outs"][0],
                                                      read_only(a["outs"][1])),
    "adam_update_ exp_avg": lambda a: adam.adam_update_(a["p"], a["p"].copy(), read_only(a["p"]), a["p"].copy(), None,
                                                        0.1, 0.999, 1e-3, 0.03, 1e-8),
    "adam_update_ max_exp_avg_sq": lambda a: adam.adam_update_(a["p"], a["p"].copy(), a["p"].copy(), a["p"].copy(),
                                                               read_only(a["p"]), 0.1, 0.999, 1e-3, 0.03, 1e-8),
}


@pytest.mark.parametrize("case", sorted(READ_ONLY_OUTPUTS))
def test_read_only_output_fails_as_numpy_fails(rng, case):
    # Was a bug: the JIT entries check the dtype and shape of what they write into, never that it is writeable
    # (jit/cells.py _fits; jit/adam.py adam_update_ checks param.flags.writeable only): a read-only
    # output array (a gates buffer, an Adam moment put into opt.state) reaches numba, which fails
    # with a numba TypingError ("No implementation of function setitem(readonly array...)") from
    # inside the dispatcher instead of declining to numpy's routine and its
    # "ValueError: output array is read-only".
    arrays = {"gates": rng.standard_normal((3, 16)).astype(np.float32),
              "c": rng.standard_normal((3, 4)).astype(np.float32),
              "x": rng.standard_normal((3, 12)).astype(np.float32),
              "rz": np.empty((3, 8), np.float32),
              "outs": [np.empty((3, 4), np.float32) for _ in range(3)],
              "p": rng.standard_normal(7).astype(np.float32)}
    with tg.kernels("numpy"), pytest.raises(ValueError, match="read-only"):
        READ_ONLY_OUTPUTS[case](arrays)
    with tg.kernels("numba"), pytest.raises(ValueError, match="read-only"):
        READ_ONLY_OUTPUTS[case](arrays)


def test_marked_routines_take_keyword_arguments(rng):
    # Was a bug: backend.jit_kernel (backend.py, `def run(*args)`) wraps each marked routine in a function
    # that takes positional arguments only, even under numpy's kernels: ops.lstm_activate_(gates=...)
    # and adam.adam_update_(..., eps=1e-8) fail with "TypeError: adam_update_() got an unexpected
    # keyword argument 'step_size'", though functools.wraps makes inspect.signature advertise the
    # routine's parameter names. `def run(*args, **kwargs)` passing both on (and the JIT entries
    # taking the same names) would keep the routines' own signatures.
    import inspect
    assert "eps" in inspect.signature(adam.adam_update_).parameters
    for kernels in ("numpy", "numba"):
        with tg.kernels(kernels):
            p = np.ones(4, np.float32)
            adam.adam_update_(p, np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32), None,
                              0.1, 0.999, step_size=1e-2, bias_correction2_sqrt=0.0316, eps=1e-8)
            assert np.all(p < 1)
            gates, c = rng.standard_normal((2, 8)).astype(np.float32), np.zeros((2, 2), np.float32)
            outs = [np.empty((2, 2), np.float32) for _ in range(3)]
            ops.lstm_activate_(gates, c, h_out=outs[0], c_out=outs[1], tanh_c_out=outs[2])


# ---- whole layers against torch, the kernels switched between forward and backward -------

def run_layer(kind, mode, *, layers=1, bi=False, bf=False, lengths=None, hx=False, bias=True, hidden=6, batch=3,
              steps=5, inputs=4, unbatched=False, scale=1.0, strided_hx=False):
    """Forward under mode[0], backward under mode[1]; the same on torch -> (ours, torch's) value lists:
    output, final states, every input's and parameter's gradient."""
    tg.manual_seed(0)
    layer = (tg.nn.LSTM if kind == "lstm" else tg.nn.GRU)(inputs, hidden, layers, bias=bias, batch_first=bf,
                                                           bidirectional=bi)
    for p in layer.parameters():
        p._data *= scale
    r = np.random.default_rng(1)
    x = r.standard_normal((steps, inputs) if unbatched else (batch, steps, inputs) if bf else
                          (steps, batch, inputs)).astype(np.float32)
    state_shape = ((2 if bi else 1) * layers,) + (() if unbatched else (batch,)) + (hidden,)
    states = [r.standard_normal(state_shape).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    if strided_hx:  # a view with a stride of 2 in the hidden axis
        states = [np.repeat(s, 2, axis=-1)[..., ::2] for s in states]

    xs = tg.tensor(x, requires_grad=True)
    ours_hx = [tg.tensor(s, requires_grad=True) for s in states] if hx else None
    with tg.kernels(mode[0]):
        out, final = layer(xs, None if not hx else tuple(ours_hx) if kind == "lstm" else ours_hx[0], lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)
    weights = [r.standard_normal(t.shape).astype(np.float32) for t in (out, *finals)]
    with tg.kernels(mode[1]):
        sum(((t * tg.tensor(w)).sum() for t, w in zip((out, *finals), weights)), tg.tensor(0.0)).backward()
    ours = [out.numpy(), *(f.numpy() for f in finals), xs.grad.numpy()]
    ours += [h.grad.numpy() for h in ours_hx or ()] + [p.grad.numpy() for p in layer.parameters()]

    theirs = getattr(torch.nn, kind.upper())(inputs, hidden, layers, bias=bias, batch_first=bf, bidirectional=bi)
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in layer.state_dict().items()})
    xt = torch.tensor(x, requires_grad=True)
    theirs_hx = [torch.tensor(np.ascontiguousarray(s), requires_grad=True) for s in states] if hx else None
    hx_t = None if not hx else tuple(theirs_hx) if kind == "lstm" else theirs_hx[0]
    if lengths is not None:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
        out_packed, final_t = theirs(packed, hx_t)
        out_t, _ = pad_packed_sequence(out_packed, batch_first=bf, total_length=steps)
    else:
        out_t, final_t = theirs(xt, hx_t)
    finals_t = final_t if isinstance(final_t, tuple) else (final_t,)
    sum((t * torch.tensor(w)).sum() for t, w in zip((out_t, *finals_t), weights)).backward()
    ref = [out_t.detach().numpy(), *(f.detach().numpy() for f in finals_t), xt.grad.numpy()]
    ref += [h.grad.numpy() for h in theirs_hx or ()] + [p.grad.numpy() for p in theirs.parameters()]
    return ours, ref


LAYER_CONFIGS = {
    "deep_bi_batch_first_hx_nobias": dict(layers=3, bi=True, bf=True, hx=True, bias=False),
    "lengths_bi_hx_nobias": dict(lengths=[5, 1, 3], bi=True, hx=True, bias=False),
    "lengths_batch_first_all_full": dict(lengths=[5, 5, 5], bf=True),
    "unbatched_bi_two_layers_hx": dict(unbatched=True, hx=True, bi=True, layers=2),
    "all_sizes_one": dict(hidden=1, batch=1, steps=1, inputs=1),
    "odd_hidden_batch_one": dict(hidden=17, batch=1, steps=4),
    "saturated": dict(scale=8.0),
    "strided_initial_state_lengths": dict(hx=True, strided_hx=True, lengths=[2, 5, 4]),
}


@needs_torch
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("config", sorted(LAYER_CONFIGS))
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_layers_match_torch_under_any_kernel_mix(kind, config, mode):
    options = LAYER_CONFIGS[config]
    ours, ref = run_layer(kind, mode, **options)
    scale = options.get("scale", 1.0)
    assert_close_all(ref, ours, rtol=1e-4, atol=4e-6 * scale ** 2)


# ---- graph features through the kernels ------------------------------------------------

X = np.random.default_rng(7).standard_normal((5, 3, 4)).astype(np.float32)


def make_layer(kind, **options):
    tg.manual_seed(1)
    return (tg.nn.LSTM if kind == "lstm" else tg.nn.GRU)(4, 6, **options)


def grads_of(layer, xs):
    return [xs.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_retain_graph_backward_twice_doubles_under_numba(kind):
    layer = make_layer(kind, bidirectional=True)
    xs = tg.tensor(X, requires_grad=True)
    with tg.kernels("numba"):
        out, _ = layer(xs)
        loss = (out * out).sum()
        loss.backward(retain_graph=True)
        first = [g.copy() for g in grads_of(layer, xs)]
        loss.backward()
    for a, b in zip(first, grads_of(layer, xs)):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_hook_returning_a_strided_gradient(kind):
    """A hook hands back a non-contiguous gradient: it reaches the backward kernels as a strided view."""
    def run():
        layer = make_layer(kind)
        xs = tg.tensor(X, requires_grad=True)
        out, _ = layer(xs)
        out.register_hook(lambda g: tg.tensor(np.ascontiguousarray(g.numpy().transpose(1, 0, 2)).transpose(1, 0, 2)
                                              * 3))
        (out * out).sum().backward()
        return grads_of(layer, xs)
    assert_close_all(*both(run))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_expanded_graph_backward_under_any_kernel_mix(kind, mode):
    """autograd.walk expands the sequence node into its steps (ops.LSTMStep/GRUStep backward on rows of
    the saved arrays, over the gates buffer): the gradients stay those of numpy's unexpanded backward."""
    def run(fwd, bwd, expand):
        layer = make_layer(kind, num_layers=2, bidirectional=True)
        xs = tg.tensor(X, requires_grad=True)
        with tg.kernels(fwd):
            out, final = layer(xs)
        h_n = final[0] if isinstance(final, tuple) else final
        if expand:
            list(tg.autograd.walk([out, h_n]))
        with tg.kernels(bwd):
            ((out * out).sum() + (h_n * h_n).sum()).backward()
        return [out.numpy()] + grads_of(layer, xs)
    assert_close_all(run("numpy", "numpy", False), run(*mode, True))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_in_place_on_outputs_and_final_state(kind):
    def run():
        layer = make_layer(kind)
        xs = tg.tensor(X, requires_grad=True)
        out, final = layer(xs)
        h_n = final[0] if isinstance(final, tuple) else final
        out.mul_(2.0)
        h_n.mul_(-1.5)
        ((out * out).sum() + h_n.sum()).backward()
        return [out.numpy(), h_n.numpy()] + grads_of(layer, xs)
    assert_close_all(*both(run))


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("state", ["same_tensor", "expanded", "reversed_rows", "unbatched", "every_other_row"])
def test_cells_with_odd_states_and_broadcast_gradients(cell, state):
    """States that are views (a stride-0 expand, reversed rows, every other row), h and c one tensor,
    unbatched; .sum()'s stride-0 gradient reaching the backward kernels."""
    r = np.random.default_rng(2)
    unbatched = state == "unbatched"
    x = r.standard_normal((3,) if unbatched else (4, 3)).astype(np.float32)
    rows = {"expanded": 1, "every_other_row": 8, "unbatched": None}.get(state, 4)
    h = r.standard_normal((5,) if rows is None else (rows, 5)).astype(np.float32)
    view = {"expanded": lambda t: t.expand(4, 5), "reversed_rows": lambda t: t[::-1],
            "every_other_row": lambda t: t[::2]}.get(state, lambda t: t)

    def run():
        tg.manual_seed(0)
        module = getattr(tg.nn, cell)(3, 5)
        xs, hs, cs = tg.tensor(x, requires_grad=True), tg.tensor(h, requires_grad=True), tg.tensor(h * 0.5,
                                                                                                   requires_grad=True)
        hv = view(hs)
        cv = hv if state == "same_tensor" else view(cs)
        out = module(xs, (hv, cv)) if cell == "LSTMCell" else module(xs, hv)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.sum() for o in outs).backward()
        grads = [xs.grad.numpy(), hs.grad.numpy()] + ([cs.grad.numpy()] if cs.grad is not None else [])
        return [o.numpy() for o in outs] + grads + [p.grad.numpy() for p in module.parameters()]
    assert_close_all(*both(run))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_op_by_op_mode_is_untouched_by_the_switch(kind):
    """tg.nn.fused(False) builds the cells from ops, no kernel: numba selected changes no bit."""
    def run():
        layer = make_layer(kind, num_layers=2)
        xs = tg.tensor(X, requires_grad=True)
        with tg.nn.fused(False):
            out, _ = layer(xs, lengths=[5, 2, 4])
            (out * out).sum().backward()
        return [out.numpy()] + grads_of(layer, xs)
    assert_equal_all(*both(run))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_between_layers_same_seed(kind):
    def run():
        layer = make_layer(kind, num_layers=3, dropout=0.5)
        tg.manual_seed(9)
        xs = tg.tensor(X, requires_grad=True)
        out, _ = layer(xs)
        (out * out).sum().backward()
        return [out.numpy()] + grads_of(layer, xs)
    assert_close_all(*both(run))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_other_dtypes_are_numpys_bit_for_bit(kind, dtype):
    def run():
        layer = make_layer(kind, bidirectional=True).to(dtype=dtype)
        xs = tg.tensor(X.astype(dtype), requires_grad=True)
        out, _ = layer(xs)
        (out * out).sum().backward()
        return [out.numpy()] + grads_of(layer, xs)
    assert_equal_all(*both(run))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_mixed_dtypes_refused_alike(kind):
    for kernels in ("numpy", "numba"):
        layer = make_layer(kind)
        with tg.kernels(kernels), pytest.raises(tg.DTypeError):
            layer(tg.tensor(X.astype(np.float64)))
        h0 = tg.tensor(np.zeros((1, 3, 6), np.float64))
        with tg.kernels(kernels), pytest.raises(tg.DTypeError):
            layer(tg.tensor(X), (h0, h0) if kind == "lstm" else h0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")  # numpy's, in linear
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("values", ["huge", "inf_nan"])
def test_extreme_inputs(kind, values):
    x = X.copy()
    if values == "huge":
        x *= 1e30
    else:
        x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = np.inf, -np.inf, np.nan

    def run():
        layer = make_layer(kind)
        xs = tg.tensor(x, requires_grad=True)
        out, _ = layer(xs)
        (out * out).sum().backward()
        return [out.numpy()] + grads_of(layer, xs)
    ref, got = both(run)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a))
        np.testing.assert_array_equal(np.isinf(b), np.isinf(a))
        finite = np.isfinite(a)
        np.testing.assert_allclose(b[finite], a[finite], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_empty_batch(kind):
    def run():
        layer = make_layer(kind, bidirectional=True)
        xs = tg.tensor(np.zeros((3, 0, 4), np.float32), requires_grad=True)
        out, final = layer(xs)
        out.sum().backward()
        return [out.numpy()] + grads_of(layer, xs)
    ref, got = both(run)
    assert ref[0].shape == (3, 0, 12)
    assert_equal_all(ref, got)


def test_a_non_numpy_device_never_reaches_the_kernels():
    """The stub backend (numpy underneath, refusing numpy calls as cupy does) under numba: numpy's
    code on it, the numbers of the cpu under numpy, bit for bit."""
    results = {}
    for kernels, device in (("numpy", "cpu"), ("numba", "stub")):
        tg.manual_seed(0)
        lstm, gru = tg.nn.LSTM(4, 5).to(device=device), tg.nn.GRU(4, 5).to(device=device)
        params = [*lstm.parameters(), *gru.parameters()]
        opt = tg.optim.Adam(params, amsgrad=True)
        with tg.kernels(kernels):
            xs = tg.tensor(X, device=device, requires_grad=True)
            (lstm(xs)[0].sum() + gru(xs)[0].sum()).backward()
            opt.step()
        results[kernels] = [xs.grad.numpy()] + [p.numpy() for p in params]
    assert_equal_all(results["numpy"], results["numba"])


# ---- Adam ----------------------------------------------------------------------------

BASE = np.random.default_rng(4).standard_normal((6, 5)).astype(np.float32)
PARAM_LAYOUTS = {
    "transposed": lambda: BASE.T,
    "fortran": lambda: np.asfortranarray(BASE),
    "strided": lambda: np.repeat(BASE, 2, axis=1)[:, ::2],
    "view_into_a_buffer": lambda: np.concatenate([BASE, BASE])[6:],
    "zero_dim": lambda: np.float32(1.5) * np.ones((), np.float32),
    "empty": lambda: np.zeros((0, 4), np.float32),
    "byte_swapped": lambda: BASE.astype(">f4"),
}
GRAD_LAYOUTS = {
    "plain": lambda g: g,
    "fortran": lambda g: np.asfortranarray(g) if g.ndim else g,
    "view_into_a_buffer": lambda g: np.stack([g, g]).astype(g.dtype)[1],
    "reversed": lambda g: np.ascontiguousarray(g[::-1])[::-1] if g.ndim else g,
}
ADAM_OPTIONS = {
    "plain": (tg.optim.Adam, {}),
    "amsgrad_l2": (tg.optim.Adam, {"amsgrad": True, "weight_decay": 0.1}),
    "maximize_adamw": (tg.optim.AdamW, {"maximize": True, "lr": 0.1, "weight_decay": 0.3}),
}


def adam_run(kernels, layout, grad_layout, option, steps=4):
    p = tg.nn.Parameter(tg.tensor(PARAM_LAYOUTS[layout]()))
    cls, options = ADAM_OPTIONS[option]
    opt = cls([p], **options)
    with tg.kernels(kernels):
        for step in range(steps):
            grad = np.random.default_rng(step).standard_normal(p.shape).astype(p.dtype)
            p.grad = tg.tensor(GRAD_LAYOUTS[grad_layout](grad))
            opt.step()
    return [p.numpy().copy()] + [np.array(v) for v in opt.state[p].values() if isinstance(v, np.ndarray)]


@pytest.mark.parametrize("option", sorted(ADAM_OPTIONS))
@pytest.mark.parametrize("grad_layout", sorted(GRAD_LAYOUTS))
@pytest.mark.parametrize("layout", sorted(PARAM_LAYOUTS))
def test_adam_on_any_layout_is_numpys_bit_for_bit(layout, grad_layout, option):
    assert_equal_all(adam_run("numpy", layout, grad_layout, option), adam_run("numba", layout, grad_layout, option))


@pytest.mark.parametrize("scale", [1e-45, 1e-38, 1e-20, 1.0, 1e19, 1e30, 3e38])
@pytest.mark.parametrize("hyper", [{}, {"ams": True}, {"eps": 0.0}, {"lr": 1e30}, {"betas": (0.0, 0.0)},
                                   {"betas": (0.5, 0.5)}, {"eps": 1e-45}])
def test_adam_routine_at_float32_extremes_is_numpys_bit_for_bit(scale, hyper):
    """Subnormal and overflowing gradients and moments, eps 0 (0/0), an infinite step, both lerp branches."""
    r = np.random.default_rng(5)
    with np.errstate(over="ignore"):  # 3e38 times up to 10 overflows to inf: part of the test
        grads = [(r.standard_normal(257) * scale * r.uniform(0.1, 10, 257)).astype(np.float32) for _ in range(3)]
    start = r.standard_normal(257).astype(np.float32)
    beta1, beta2 = hyper.get("betas", (0.9, 0.999))
    lr, eps = hyper.get("lr", 1e-3), hyper.get("eps", 1e-8)
    results = []
    for kernels in ("numpy", "numba"):
        p, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
        best = np.zeros_like(start) if hyper.get("ams") else None
        with tg.kernels(kernels), np.errstate(all="ignore"):
            for step, g in enumerate(grads, 1):
                adam.adam_update_(p, g, m, v, best, 1 - beta1, beta2, lr / (1 - beta1 ** step),
                                  (1 - beta2 ** step) ** 0.5, eps)
        results.append([p, m, v] + ([best] if best is not None else []))
    assert_equal_all(*results)


@needs_torch
def test_adam_parameter_groups_match_torch_and_numpy():
    r = np.random.default_rng(6)
    shapes = [(5, 4), (4,), (), (3, 0)]
    starts = [r.standard_normal(s).astype(np.float32) for s in shapes]
    starts[0] = np.asfortranarray(starts[0])  # declined by the kernel: numpy's code for this one
    group_options = [{"lr": 0.05, "amsgrad": True}, {"weight_decay": 0.2, "maximize": True},
                     {"betas": (0.2, 0.9), "eps": 1e-3}, {}]
    results = {}
    for kernels in ("numpy", "numba"):
        params = [tg.nn.Parameter(tg.tensor(s.copy())) for s in starts]
        opt = tg.optim.AdamW([dict(params=[p], **o) for p, o in zip(params, group_options)], lr=0.01)
        r = np.random.default_rng(0)
        with tg.kernels(kernels):
            for _ in range(5):
                for p in params:
                    p.grad = tg.tensor(r.standard_normal(p.shape).astype(np.float32))
                opt.step()
        results[kernels] = [p.numpy() for p in params]
    assert_equal_all(results["numpy"], results["numba"])
    theirs = [torch.nn.Parameter(torch.tensor(np.ascontiguousarray(s))) for s in starts]
    opt = torch.optim.AdamW([dict(params=[p], **o) for p, o in zip(theirs, group_options)], lr=0.01)
    r = np.random.default_rng(0)
    for _ in range(5):
        for p in theirs:
            p.grad = torch.tensor(r.standard_normal(tuple(p.shape)).astype(np.float32))
        opt.step()
    for ours, t in zip(results["numba"], theirs):
        np.testing.assert_allclose(ours, t.detach().numpy(), rtol=1e-6, atol=1e-7)


# ---- the switch: nesting, threads, the environment, numba's cache ----------------------------

def test_one_kernels_object_entered_twice_restores_the_default():
    # Was a bug: backend.kernels keeps what to restore in one attribute (`self.previous`), which a second
    # __enter__ of the same object overwrites: after `with k: with k: ...` the process stays on
    # numba. The project's other modes (autograd._Restoring: no_grad, tg.nn.fused) keep a stack per
    # object and thread precisely so that one object can be entered again.
    k = tg.kernels("numba")
    with k:
        with k:
            assert tg.get_kernels() == "numba"
        assert tg.get_kernels() == "numba"
    assert tg.get_kernels() == "numpy"


def test_overlapping_kernels_blocks_in_two_threads_restore_the_default():
    # Was a bug: tg.kernels saves and restores one process-wide value: thread A enters (saves numpy), B
    # enters (saves numba), A leaves (sets numpy while B is still inside its numba block), B leaves
    # (sets numba). After both blocks the process runs numba's kernels, which nobody selected; and
    # inside B's block get_kernels() says numpy. Either per-thread state (as no_grad and tg.nn.fused
    # have) or a count of the blocks still open would restore numpy.
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with tg.kernels("numba"):
            a_in.set()
            wait(b_in)
        a_out.set()

    def second():
        wait(a_in)
        with tg.kernels("numba"):
            b_in.set()
            wait(a_out)
            seen["inside"] = tg.get_kernels()
    run_in_threads(first, second, events=(a_in, b_in, a_out))
    assert tg.get_kernels() == "numpy"
    assert seen["inside"] == "numba"


def test_kernels_toggled_by_another_thread_mid_training_keep_the_numbers():
    """Another thread flips set_kernels as fast as it can while this one trains: every kernel call is
    numpy's or numba's, and any mix gives the numbers of numpy's (to the tanh's rounding)."""
    def train():
        tg.manual_seed(0)
        lstm, gru = tg.nn.LSTM(4, 8), tg.nn.GRU(4, 8, bidirectional=True)
        params = [*lstm.parameters(), *gru.parameters()]
        opt = tg.optim.Adam(params, lr=1e-2)
        for _ in range(10):
            opt.zero_grad()
            xs = tg.tensor(X, requires_grad=True)
            ((lstm(xs)[0] ** 2).mean() + (gru(xs)[0] ** 2).mean()).backward()
            opt.step()
        return [p.numpy() for p in params]
    ref = train()
    stop = threading.Event()
    flips = []

    def toggler():
        while not stop.is_set():
            tg.set_kernels("numba" if len(flips) % 2 == 0 else "numpy")
            flips.append(1)
            time.sleep(0.0005)
        tg.set_kernels("numpy")
    result = {}

    def trainer():
        try:
            result["params"] = train()
        finally:
            stop.set()
    run_in_threads(toggler, trainer, events=(stop,))
    assert len(flips) >= 3  # numba on, off, on at least
    assert_close_all(ref, result["params"], rtol=1e-4, atol=1e-6)


def python(code, env_updates=(), drop=(), cwd=None, user=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_updates)
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + command
    return subprocess.run(command, env=env, cwd=cwd or tempfile.gettempdir(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("value", ["NUMBA", " numba ", "Numba"])
def test_environment_value_ignores_case_and_spaces(value):
    out = python("import tinygrad_rnn as tg; print(tg.get_kernels())",
                 {"TINYGRAD_RNN_KERNELS": value, "PYTHONPATH": os.path.dirname(PACKAGE)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numba"


@pytest.mark.parametrize("value", ["numba,numpy", "0", "jit"])
def test_odd_environment_values_fail_at_import_naming_the_choices(value):
    out = python("import tinygrad_rnn", {"TINYGRAD_RNN_KERNELS": value, "PYTHONPATH": os.path.dirname(PACKAGE)})
    assert out.returncode != 0
    assert "'numpy', 'numba'" in out.stderr and repr(value) in out.stderr


def test_empty_environment_value_is_the_default():
    out = python("import tinygrad_rnn as tg; print(tg.get_kernels())",
                 {"TINYGRAD_RNN_KERNELS": "", "PYTHONPATH": os.path.dirname(PACKAGE)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"


COMPARE = """
    import sys, threading
    import numpy as np
    import tinygrad_rnn as tg
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    results = {}
    for kernels in ("numpy", "numba"):
        tg.manual_seed(0)
        lstm, gru = tg.nn.LSTM(3, 5), tg.nn.GRU(3, 5, bidirectional=True)
        params = [*lstm.parameters(), *gru.parameters()]
        opt = tg.optim.Adam(params, amsgrad=True)
        with tg.kernels(kernels):
            xs = tg.tensor(x, requires_grad=True)
            (lstm(xs)[0].sum() + gru(xs)[0].sum()).backward()
            opt.step()
        results[kernels] = [xs.grad.numpy()] + [p.numpy() for p in params]
    print("max difference", max(float(np.abs(a - b).max()) for a, b in zip(*results.values())))
"""


def max_difference(out):
    assert out.returncode == 0, out.stderr[-3000:]
    return float(out.stdout.split("max difference")[-1])


def test_numba_disable_jit_still_gives_the_numbers():
    """NUMBA_DISABLE_JIT=1 (numba's debugging switch): the kernels run as Python, still right."""
    out = python(COMPARE, {"NUMBA_DISABLE_JIT": "1", "PYTHONPATH": os.path.dirname(PACKAGE)})
    assert max_difference(out) < 1e-5


def test_first_compile_from_four_threads_at_once(tmp_path):
    """An empty cache: four threads make numba compile the same kernels at once (and write the cache)."""
    code = """
        import numpy as np, tinygrad_rnn as tg
        from threads import run_in_threads
        tg.set_kernels("numba")
        x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
        tg.manual_seed(0)
        layers = [tg.nn.LSTM(3, 5) if k % 2 else tg.nn.GRU(3, 5) for k in range(4)]
        grads = [None] * 4
        def target(k):
            def go():
                xs = tg.tensor(x, requires_grad=True)
                layers[k](xs)[0].sum().backward()
                grads[k] = xs.grad.numpy()
            return go
        run_in_threads(*(target(k) for k in range(4)))
        tg.set_kernels("numpy")
        worst = 0.0
        for k in range(4):
            xs = tg.tensor(x, requires_grad=True)
            layers[k](xs)[0].sum().backward()
            worst = max(worst, float(np.abs(xs.grad.numpy() - grads[k]).max()))
        print("max difference", worst)
    """
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    out = python(code, {"NUMBA_CACHE_DIR": str(tmp_path / "cache"),
                        "PYTHONPATH": os.pathsep.join([os.path.dirname(PACKAGE), tests_dir])})
    assert max_difference(out) < 1e-5
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path / "cache") for name in files)


@pytest.fixture
def read_only_install():
    """A copy of the package (no cached kernels) in a directory this test's user cannot write:
    -> (PYTHONPATH, user to run as or None, a directory that user may write). As root, permissions do
    not bind, so the subprocess runs as nobody (setpriv)."""
    root = tempfile.mkdtemp(prefix="tg_ro_")
    try:
        os.chmod(root, 0o755)
        site = os.path.join(root, "site")
        shutil.copytree(PACKAGE, os.path.join(site, "tinygrad_rnn"), ignore=shutil.ignore_patterns("__pycache__"))
        home = os.path.join(root, "home")
        os.mkdir(home)
        user = None
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: a read-only directory cannot be simulated")
            user = 65534
            os.chown(home, user, user)
            probe = python("import numba", user=user)
            if probe.returncode != 0:
                pytest.skip(f"the interpreter cannot run as nobody: {probe.stderr[-300:]}")
        for dirpath, _, filenames in os.walk(site):
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o444)
            os.chmod(dirpath, 0o555)
        yield site, user, home
    finally:
        for dirpath, _, _ in os.walk(root):
            os.chmod(dirpath, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        shutil.rmtree(root, ignore_errors=True)


NO_NUMBA_CACHE_SETTINGS = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "TINYGRAD_RNN_KERNELS")


def test_read_only_install_caches_in_the_users_cache_dir(read_only_install):
    site, user, home = read_only_install
    out = python(COMPARE, {"PYTHONPATH": site, "HOME": home}, drop=NO_NUMBA_CACHE_SETTINGS, user=user)
    assert max_difference(out) < 1e-5
    cached = [name for _, _, files in os.walk(home) for name in files]
    assert any(name.endswith(".nbi") for name in cached)
    assert not os.path.exists(os.path.join(site, "tinygrad_rnn", "jit", "__pycache__"))


@pytest.mark.parametrize("how", ["set_kernels", "environment"])
def test_read_only_install_without_any_writable_cache_dir(read_only_install, how):
    # Was a bug: every kernel is decorated numba.njit(cache=True) at import (jit/cells.py `_jit`, jit/adam.py
    # `_adam`); numba looks for a writable cache directory right then (next to the source, then
    # ~/.cache/numba) and, with neither writable (a read-only site-packages and a read-only or
    # missing HOME: a container run as an arbitrary user), raises "RuntimeError: cannot cache
    # function '_adam': no locator available for file .../jit/adam.py". set_kernels("numba")
    # fails with that RuntimeError (it only catches ImportError), and with
    # TINYGRAD_RNN_KERNELS=numba `import tinygrad_rnn` itself fails. The kernels should compile
    # in memory without the on-disk cache (or at least refuse with an error that says why).
    site, user, _ = read_only_install
    env = {"PYTHONPATH": site, "HOME": os.path.join(site, "no-such-home")}
    code = COMPARE
    if how == "environment":
        env["TINYGRAD_RNN_KERNELS"] = "numba"
        code = "import tinygrad_rnn as tg\nassert tg.get_kernels() == 'numba'\n" + textwrap.dedent(COMPARE)
    out = python(code, env, drop=NO_NUMBA_CACHE_SETTINGS, user=user)
    assert max_difference(out) < 1e-5
