"""A fused layer's loop in one node (tinygrad_rnn.sequence) against the same graph expanded into its
steps (what autograd.walk does before a reader sees it): the same outputs and gradients bit for bit,
for every cell, layer count, direction and initial state, with the step nodes' saved arrays being the
rows of the sequence node's. The one exception is w_hh's gradient (and the GRU's b_hh), a sum over
steps that the node takes in one matmul and the steps in chunks: equal to rounding. And what
expansion leaves behind (hooks, a second backward, in-place checks)."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.nn import rnn as R

T, B, I, H = 6, 3, 4, 5
LAYERS = {"rnn_tanh": (R.RNN, {}), "rnn_relu": (R.RNN, {"nonlinearity": "relu"}), "lstm": (R.LSTM, {}),
          "gru": (R.GRU, {})}
SEQUENCE_OPS = {"rnn_tanh": "rnnsequence", "rnn_relu": "rnnsequence", "lstm": "lstmsequence", "gru": "grusequence"}


def run(mode, dtype, num_layers, bidirectional, with_hx, expand_first, bias=True):
    cls, extra = LAYERS[mode]
    tg.manual_seed(0)
    layer = cls(I, H, num_layers, bidirectional=bidirectional, bias=bias, **extra).to(dtype)
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((T, B, I)).astype(dtype), requires_grad=True)
    directions = 2 if bidirectional else 1
    states = [tg.tensor(rng.standard_normal((directions * num_layers, B, H)).astype(dtype), requires_grad=True)
              for _ in range(2 if mode == "lstm" else 1)] if with_hx else []
    hx = None if not states else tuple(states) if mode == "lstm" else states[0]
    out, final = layer(x, hx)
    finals = final if mode == "lstm" else (final,)
    weights = [tg.tensor(rng.standard_normal(t.shape).astype(dtype)) for t in (out, *finals)]
    loss = sum(((t * w).sum() for t, w in zip((out, *finals), weights)), tg.tensor(np.zeros((), dtype)))
    ops = {n.op for n in tg.autograd.walk(loss)} if expand_first else None
    loss.backward()
    values = {"out": out.numpy(), "x.grad": x.grad.numpy()}
    values.update({f"final {k}": f.numpy() for k, f in enumerate(finals)})
    values.update({f"hx {k}.grad": s.grad.numpy() for k, s in enumerate(states)})
    values.update({f"{name}.grad": p.grad.numpy() for name, p in layer.named_parameters()})
    return values, ops


def assert_same(whole, steps, dtype):
    assert whole.keys() == steps.keys()
    for name in whole:
        if name.startswith("weight_hh") or mode_sums_bias(name):
            np.testing.assert_allclose(whole[name], steps[name], rtol=1e-12 if dtype == np.float64 else 2e-5,
                                       atol=1e-12 if dtype == np.float64 else 1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(whole[name], steps[name], err_msg=name)


def mode_sums_bias(name):
    return name.startswith("bias_hh")  # the GRU's b_hh sits in the step: summed over steps too


@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, True)])
@pytest.mark.parametrize("with_hx", [False, True])
def test_one_node_equals_its_steps(mode, dtype, num_layers, bidirectional, with_hx):
    whole, _ = run(mode, dtype, num_layers, bidirectional, with_hx, expand_first=False)
    steps, ops = run(mode, dtype, num_layers, bidirectional, with_hx, expand_first=True)
    assert SEQUENCE_OPS[mode] not in ops and SEQUENCE_OPS[mode].replace("sequence", "step") in ops
    assert_same(whole, steps, dtype)


@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_without_bias(mode):
    whole, _ = run(mode, np.float64, 2, True, True, expand_first=False, bias=False)
    steps, _ = run(mode, np.float64, 2, True, True, expand_first=True, bias=False)
    assert_same(whole, steps, np.float64)


@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_the_layer_is_one_node_until_read(mode):
    cls, extra = LAYERS[mode]
    out, _ = cls(I, H, **extra)(tg.randn(T, B, I))
    assert [p.name for p in out.grad_fn.parents] == [SEQUENCE_OPS[mode]]
    nodes = list(tg.autograd.walk(out))
    step_op = SEQUENCE_OPS[mode].replace("sequence", "step")
    assert sum(n.op == step_op for n in nodes) == T
    assert list(tg.autograd.walk(out)) and sum(n.op == step_op for n in tg.autograd.walk(out)) == T  # once


def test_hooks_on_expanded_steps_see_each_steps_gradient():
    """A hook on step t's h (what the renderer's gradient norms use) gets dL/dh_t, as torch's
    retain_grad on an LSTMCell loop does."""
    torch = pytest.importorskip("torch")
    tg.manual_seed(0)
    lstm = R.LSTM(I, H).double()
    x = np.random.default_rng(1).standard_normal((T, B, I))
    out, _ = lstm(tg.tensor(x))
    loss = (out * out).sum()
    seen = {}
    for node in tg.autograd.walk(loss):
        if node.role == "h":
            step = int(node.scope.rsplit("t", 1)[1])
            node.fn.register_hook(lambda g, step=step: seen.__setitem__(step, g.copy()))
    loss.backward()
    cell = torch.nn.LSTMCell(I, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(torch.tensor(getattr(lstm, f"{name}_l0").numpy()))
    h = c = torch.zeros(B, H, dtype=torch.float64)
    hs = []
    for t in range(T):
        h, c = cell(torch.tensor(x[t]), (h, c))
        h.retain_grad()
        hs.append(h)
    sum((h * h).sum() for h in hs).backward()
    assert sorted(seen) == list(range(T))
    for t in range(T):
        np.testing.assert_allclose(seen[t], hs[t].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_expanded_after_backward_has_no_arrays_and_refuses_a_second_backward():
    lstm = R.LSTM(I, H)
    out, _ = lstm(tg.randn(T, B, I))
    loss = out.sum()
    loss.backward()
    nodes = list(tg.autograd.walk(loss))
    assert all(n.fn.saved is None for n in nodes if n.op == "lstmstep")
    with pytest.raises(tg.GraphError, match="a second time"):
        loss.backward()


def test_expanded_steps_keep_the_in_place_check():
    lstm = R.GRU(I, H)
    out, _ = lstm(tg.randn(T, B, I))
    loss = out.sum()
    list(tg.autograd.walk(loss))
    with tg.no_grad():
        lstm.weight_hh_l0.add_(1.0)
    with pytest.raises(tg.GraphError, match="modified by an in-place operation"):
        loss.backward()


def test_writing_into_the_output_is_allowed():
    """The output is a copy of the saved states, as torch's is a fresh tensor: out += x is fine."""
    lstm = R.LSTM(I, H)
    x = tg.randn(T, B, H)
    out, _ = lstm(tg.randn(T, B, I))
    expected = out.numpy() + x.numpy()
    out += x
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), expected)
    assert lstm.weight_hh_l0.grad is not None


def _ops_without_expanding(tensor):
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or not isinstance(node, tg.Function):
            continue
        seen.add(id(node))
        names.add(node.name)
        stack.extend(node.parents)
    return names


def test_padded_batches_run_step_by_step():
    """lengths with padding need a node per step (the mask holds each state); full lengths do not."""
    lstm = R.LSTM(I, H)
    padded, _ = lstm(tg.randn(T, B, I), lengths=[T, 2, 4])
    full, _ = lstm(tg.randn(T, B, I), lengths=[T] * B)
    assert "lstmsequence" not in _ops_without_expanding(padded) and "lstmstep" in _ops_without_expanding(padded)
    assert "lstmsequence" in _ops_without_expanding(full) and "lstmstep" not in _ops_without_expanding(full)


def test_sequence_ops_refuse_bad_shapes_and_dtypes():
    from tinygrad_rnn import sequence
    with pytest.raises(tg.ShapeError, match=r"lstmsequence: expected proj \(T, B, 4H\)"):
        sequence.LSTMSequence.apply(tg.randn(T, B, 12), tg.randn(B, H), tg.randn(B, H), tg.randn(4 * H, H))
    with pytest.raises(tg.DTypeError, match="grusequence: dtypes differ"):
        sequence.GRUSequence.apply(tg.randn(T, B, 3 * H, dtype=np.float64), tg.randn(B, H), tg.randn(3 * H, H))


@pytest.mark.parametrize("mode", sorted(LAYERS))
def test_on_every_device_equal_to_cpu(mode, device):
    """The sequence nodes through the backend seam (the strict stand-in, cupy where there is a GPU),
    run whole and expanded, against the CPU."""
    cls, extra = LAYERS[mode]
    layers = [cls(I, H, 2, bidirectional=True, **extra) for _ in range(3)]
    for layer in layers[1:]:
        layer.load_state_dict(layers[0].state_dict())
        layer.to(device)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    results = []
    for layer, dev, expand in zip(layers, ("cpu", device, device), (False, False, True)):
        out, state = layer(tg.tensor(x, device=dev))
        loss = out.sum() + sum(s.sum() for s in (state if mode == "lstm" else (state,)))
        if expand:
            assert SEQUENCE_OPS[mode] not in {n.op for n in tg.autograd.walk(loss)}
        loss.backward()
        assert out.device == dev and layer.weight_hh_l0.grad.device == dev
        results.append([out.numpy()] + [p.grad.numpy() for p in layer.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(LAYERS))
@pytest.mark.parametrize("steps", [1, 4])
def test_in_place_write_to_w_hh_after_a_walk_is_a_clear_error_or_harmless(mode, steps):
    """After expansion a step keeps only what its backward reads; an in-place write to w_hh gives
    the package's error where a kept array moved (never an AttributeError from the check itself),
    and otherwise the gradients the unexpanded node gives with the weight unchanged."""
    cls, extra = LAYERS[mode]
    layer = cls(I, H, **extra).double()
    x = tg.randn(steps, B, I, dtype=np.float64)
    out, _ = layer(x)
    loss = out.sum()
    list(tg.autograd.walk(loss))
    with tg.no_grad():
        layer.weight_hh_l0.add_(1.0)
    if steps == 1:  # h0 is the default zeros: nothing reads w_hh in backward
        loss.backward()
        assert layer.weight_hh_l0.grad is not None
    else:
        with pytest.raises(tg.GraphError, match="modified by an in-place operation"):
            loss.backward()


@pytest.mark.parametrize("mode", ["lstm", "rnn_tanh"])
def test_h0_written_in_place_is_fine_when_no_gradient_reads_it(mode):
    """With weight_hh frozen no gradient needs h0's value, so writing it after forward is allowed,
    as in torch and op by op; walked first or not."""
    cls, extra = LAYERS[mode]
    for walk_first in (False, True):
        layer = cls(I, H, **extra).double()
        layer.weight_hh_l0.requires_grad_(False)
        h = tg.randn(1, B, H, dtype=np.float64, requires_grad=True) * 1
        hx = (h, tg.zeros_like(h)) if mode == "lstm" else h
        out, _ = layer(tg.randn(3, B, I, dtype=np.float64), hx)
        if walk_first:
            list(tg.autograd.walk(out))
        with tg.no_grad():
            h.mul_(1.5)
        out.sum().backward()
        assert layer.weight_ih_l0.grad is not None


def test_calling_walk_expands_even_before_it_is_iterated():
    out, _ = R.LSTM(I, H)(tg.randn(T, B, I))
    tg.autograd.walk(out)  # not iterated
    assert out.grad_fn.name == "stack"


@pytest.mark.parametrize("fused_cell", [False, True])
def test_a_kept_graph_gives_the_same_gradient_twice(fused_cell):
    """Without retain_graph the LSTM's backward writes its gradient over its saved gates; with it, it
    must not: the second backward then adds exactly the first's gradient again."""
    tg.manual_seed(0)
    x = tg.randn(T, B, I, dtype=tg.float64, requires_grad=True)
    if fused_cell:
        cell = tg.nn.LSTMCell(I, H).to(tg.float64)
        state = None
        outs = []
        for t in range(T):
            state = cell(x[t], state)
            outs.append(state[0])
        loss = (tg.stack(outs) ** 2).sum()
        params = cell
    else:
        lstm = R.LSTM(I, H).to(tg.float64)
        loss = (lstm(x)[0] ** 2).sum()
        params = lstm
    loss.backward(retain_graph=True)
    first = [x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in params.parameters()]
    loss.backward()
    second = [x.grad.numpy()] + [p.grad.numpy() for p in params.parameters()]
    for a, b in zip(first, second):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-12, atol=1e-14)


def test_an_interrupted_backward_cannot_be_rerun_over_overwritten_gates(monkeypatch):
    from tinygrad_rnn import sequence
    lstm = R.LSTM(I, H)
    loss = lstm(tg.randn(T, B, I))[0].sum()
    calls, real = [], sequence.lstm_backward

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sequence, "lstm_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loss.backward()
    monkeypatch.setattr(sequence, "lstm_backward", real)
    with pytest.raises(tg.GraphError, match="a second time"):
        loss.backward()
