"""Gradient norms recorded by viz.trace_backward against torch's retain_grad on identical weights:
cells in a Python loop, and the sequence layers (stacked, bidirectional) against a loop of torch
cells; the order backward visits nodes; check_truncation; the gradient-flow plot."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, viz
from oracle import needs_torch, torch

STEPS, BATCH, INPUTS, HIDDEN = 6, 3, 4, 5


def _torch_cell_loop(cells, x, state_size, reverse=False):
    """Run torch cells (one per layer) over x (T, B, I) in a loop, keeping each h_t with retain_grad.
    Returns (outputs (T, B, H) of the last layer as a list, {layer: [h_t]})."""
    hs = {}
    inputs = list(x)
    for layer, cell in enumerate(cells):
        state = None
        outputs = [None] * len(inputs)
        order = range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs))
        for t in order:
            state = cell(inputs[t], state)
            h = state[0] if state_size == 2 else state
            h.retain_grad()
            hs.setdefault(layer, [None] * len(inputs))[t] = h
            outputs[t] = h
        inputs = outputs
    return inputs, hs


@needs_torch
@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_loop_norms_equal_torch_retain_grad(kind):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(INPUTS, HIDDEN).double()
    ours = getattr(nn, kind)(INPUTS, HIDDEN).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((STEPS, BATCH, INPUTS))
    tx = torch.tensor(x)
    _, torch_hs = _torch_cell_loop([theirs], tx, 2 if kind == "LSTMCell" else 1)
    torch_loss = sum((h ** 2).sum() * (t + 1) for t, h in enumerate(torch_hs[0]))
    torch_loss.backward()

    state, loss = None, None
    for t in range(STEPS):
        state = ours(tg.tensor(x[t]), state)
        h = state[0] if kind == "LSTMCell" else state
        term = (h ** 2).sum() * (t + 1)
        loss = term if loss is None else loss + term
    trace = viz.trace_backward(loss, dict(ours.named_parameters()))
    norms = trace.hidden_norms()
    assert list(norms) == [kind.lower()]
    expected = [float(h.grad.norm()) for h in torch_hs[0]]
    np.testing.assert_allclose(norms[kind.lower()], expected, rtol=1e-10)
    # the trace ran a real backward: the parameters' .grad equal torch's
    np.testing.assert_allclose(ours.weight_hh.grad.numpy(), theirs.weight_hh.grad.numpy(), rtol=1e-10)


@needs_torch
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_sequence_layer_norms_per_layer_and_direction_equal_torch(kind, bidirectional):
    """nn.LSTM(num_layers=2, bidirectional) traced; torch's reference is a loop of its cells with
    the layer's weights (retain_grad on every h_t), directions concatenated between layers."""
    torch.manual_seed(0)
    layers = 2
    ours = getattr(nn, kind)(INPUTS, HIDDEN, num_layers=layers, bidirectional=bidirectional).double()
    x = np.random.default_rng(2).standard_normal((STEPS, BATCH, INPUTS))
    weights = np.random.default_rng(3).standard_normal((STEPS, BATCH, HIDDEN * (2 if bidirectional else 1)))
    output, _ = ours(tg.tensor(x))
    loss = (output * tg.tensor(weights)).sum()
    trace = viz.trace_backward(loss, dict(ours.named_parameters()))
    norms = trace.hidden_norms()

    directions = ["", "_reverse"] if bidirectional else [""]
    cell_name = {"RNN": "RNNCell", "LSTM": "LSTMCell", "GRU": "GRUCell"}[kind]
    state = ours.state_dict()
    inputs = torch.tensor(x)
    expected = {}
    for layer in range(layers):
        outs = []
        for suffix in directions:
            cell = getattr(torch.nn, cell_name)(inputs.shape[-1], HIDDEN).double()
            cell.load_state_dict({name: torch.tensor(np.asarray(state[f"{name}_l{layer}{suffix}"]))
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            out, hs = _torch_cell_loop([cell], inputs, 2 if kind == "LSTM" else 1, reverse=bool(suffix))
            expected[f"{kind.lower()}/l{layer}{suffix}"] = hs[0]
            outs.append(torch.stack(out))
        inputs = torch.cat(outs, -1)
    (inputs * torch.tensor(weights)).sum().backward()
    assert sorted(norms) == sorted(expected)
    for lane, hs in expected.items():
        np.testing.assert_allclose(norms[lane], [float(h.grad.norm()) for h in hs], rtol=1e-9, err_msg=lane)


def test_trace_order_is_the_order_backward_visits():
    x = tg.randn(3, requires_grad=True)
    y = (x.exp() * 2).sum()
    trace = viz.trace_backward(y)
    ops = [name for _, name, _ in trace.visits()]
    assert ops == ["sum", "mul", "exp", "leaf"]
    assert trace.visits()[-1][2] == pytest.approx(float(np.linalg.norm(2 * np.exp(x.numpy()))), rel=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(x.numpy()), rtol=1e-6)  # a real backward


def test_trace_hooks_are_removed_after_backward():
    w = tg.randn(2, 2, requires_grad=True)
    loss = (w @ w).sum()
    viz.trace_backward(loss, retain_graph=True)
    loss.backward()  # a second backward runs no recorder (it would append to a finished trace)
    assert w._hooks == {}


def _tbptt(detach, chunks=3, steps=4):
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3)
    state, loss = None, None
    for _ in range(chunks):
        out, state = lstm(tg.randn(steps, 1, 2), state)
        if detach:
            state = tuple(s.detach() for s in state)
        loss = out.sum()
    return loss, lstm


def test_check_truncation_warns_when_the_state_is_not_detached():
    loss, lstm = _tbptt(detach=False)
    with pytest.warns(UserWarning, match="detach"):
        reached = viz.check_truncation(loss, expected_steps=4)
    assert reached == {"lstm/l0": 12}


def test_check_truncation_is_quiet_with_detach_and_the_cut_is_drawn():
    loss, lstm = _tbptt(detach=True)
    assert viz.check_truncation(loss, expected_steps=4) == {"lstm/l0": 4}
    text = viz.to_dot(loss, params=lstm)
    assert "detached h⟨0⟩" in text and "truncated BPTT" in text


def test_plot_grad_flow_draws_a_line_per_lane():
    pytest.importorskip("matplotlib")
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, bidirectional=True)
    out, _ = lstm(tg.randn(5, 2, 2))
    trace = viz.trace_backward(out.sum())
    figure = viz.plot_grad_flow(trace)
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    lines = {line.get_label(): line.get_ydata() for line in axes.get_lines()}
    assert set(lines) == {"lstm/l0", "lstm/l0_reverse"}
    np.testing.assert_allclose(lines["lstm/l0"], trace.hidden_norms()["lstm/l0"])
    import matplotlib.pyplot as plt
    plt.close(figure)
