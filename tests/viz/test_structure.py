"""The structure of the rendered graph: clusters per time step, parameters once with an edge into
every step, the highlighted BPTT path following real dependence, detail levels, cuts."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, viz
from tinygrad_rnn.viz import graph as viz_graph

from .models import rnn_cell_loop, sequence_layer


def nodes_of(dot_text):
    """{name: label} of the nodes in DOT text written by viz.to_dot."""
    return {m.group(1): m.group(2) for m in re.finditer(r'^\s*"(\w+)" \[label="((?:[^"\\]|\\.)*)"', dot_text, re.M)}


def edges_of(dot_text):
    return [(m.group(1), m.group(2), m.group(3) or "") for m in
            re.finditer(r'^\s*"(\w+)" -> "(\w+)"(?: \[(.*)\])?;$', dot_text, re.M)]


def marked_nodes(dot_text):
    return {m.group(1) for m in re.finditer(r'^\s*"(\w+)" \[.*class="bptt-path"', dot_text, re.M)}


def clusters_of(dot_text):
    """[(cluster label, [node names directly inside])] in the order written."""
    result, stack = [], []
    for line in dot_text.splitlines():
        line = line.strip()
        if line.startswith("subgraph"):
            stack.append([None, []])
        elif line.startswith("label=") and stack and stack[-1][0] is None:
            stack[-1][0] = line[len('label="'):-2]
        elif line == "}" and stack:
            result.append(tuple(stack.pop()))
        elif stack and (m := re.match(r'"(\w+)" \[', line)):
            stack[-1][1].append(m.group(1))
    return result


def test_rnn_cell_loop_one_cluster_per_step_and_weights_drawn_once():
    losses, total, params, *_ = rnn_cell_loop(steps=4)
    text = viz.to_dot(total, params=params)
    labels = nodes_of(text)
    step_clusters = [c for c in clusters_of(text) if re.fullmatch(r"t\d+", c[0])]
    assert sorted(c[0] for c in step_clusters) == ["t0", "t1", "t2", "t3"]
    for name in params:
        assert sum(1 for label in labels.values() if label.startswith(name + " ")) == 1, name
    w_hh = next(n for n, label in labels.items() if label.startswith("cell.weight_hh "))
    # an edge from the shared recurrent weight into every step's cell
    targets = {head for tail, head, _ in edges_of(text) if tail == w_hh}
    assert len(targets) == 4
    assert "Σ over" in labels[w_hh]


def step_clusters(text):
    return {label: members for label, members in clusters_of(text) if re.fullmatch(r"t\d+", label)}


def lane_of_step(text):
    """{node name: (step cluster label, lane cluster label or None)}, from the nesting in the text."""
    result, stack = {}, []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("subgraph"):
            stack.append(None)
        elif line.startswith("label=") and stack and stack[-1] is None:
            stack[-1] = line[len('label="'):-2]
        elif line == "}" and stack:
            stack.pop()
        elif (m := re.match(r'"(\w+)" \[', line)) and stack:
            steps = [i for i, label in enumerate(stack) if label and re.fullmatch(r"t\d+", label)]
            if steps:
                lane = stack[steps[0] + 1] if len(stack) > steps[0] + 1 else None
                result[m.group(1)] = (stack[steps[0]], lane)
    return result


def _ids_in_steps(graph, steps):
    return {n.id for n in graph.nodes if n.step in steps}


# ---- highlight: the textbook chain and nothing else --------------------------------------

def test_highlight_from_one_loss_term_is_exactly_the_chain_back_to_w_hh():
    losses, total, params, cell, head, hs = rnn_cell_loop(steps=5)
    root = losses[3]
    graph = viz_graph.read(root, params)
    marked, exact = viz.trace.dependence(graph, root, cell.weight_hh)
    assert exact
    nodes = graph.nodes
    # the chain: L<3> <- head(h<3>) <- h<3> <- h<2> <- h<1> <- h<0>, each h through W_hh
    w_hh = next(n.id for n in nodes if n.param == "cell.weight_hh")
    expected = {w_hh}
    for n in nodes:
        if n.fn is None or n.folded:
            continue
        if n.step is not None and n.step <= 3 and n.recurrent:
            # in a step: the recurrent matmul and everything after it up to h; not the input half
            if n.role == "h" or n.op == "matmul" and any(nodes[p].param == "cell.weight_hh" for p in n.parents) \
                    or n.op == "add" and not any(nodes[p].param == "cell.bias_ih" for p in n.parents):
                expected.add(n.id)
        if n.step == 3 and not n.recurrent:  # the head and the loss of step 3
            expected.add(n.id)
    assert marked == expected
    assert all(nodes[i].step is None or nodes[i].step <= 3 for i in marked)
    assert not any(nodes[i].param in ("cell.weight_ih", "cell.bias_ih", "head.weight", "head.bias") for i in marked)


def test_highlight_marks_nodes_and_edges_in_the_dot_and_every_step_for_the_total():
    losses, total, params, cell, *_ = rnn_cell_loop(steps=4)
    text = viz.to_dot(losses[2], params=params, highlight="cell.weight_hh")
    where = lane_of_step(text)
    marked = marked_nodes(text)
    assert {where[n][0] for n in marked if n in where} == {"t0", "t1", "t2"}
    marked_edges = [(a, b) for a, b, attrs in edges_of(text) if "bptt-path" in attrs]
    assert marked_edges and all(a in marked and b in marked for a, b in marked_edges)
    full = viz.to_dot(total, params=params, highlight="weight_hh")  # a suffix of a unique name is enough
    assert {lane_of_step(full)[n][0] for n in marked_nodes(full) if n in lane_of_step(full)} == {"t0", "t1", "t2", "t3"}


def test_highlight_follows_dependence_not_connectivity_through_a_stacked_output():
    """out[3] of nn.RNN's stacked output depends on steps 0..3 only, though the stack connects all."""
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3)
    out, _ = rnn(tg.randn(6, 1, 2))
    root = out[3].sum()
    graph = viz_graph.read(root, rnn)
    marked, exact = viz.trace.dependence(graph, root, rnn.weight_hh_l0)
    assert exact
    assert {graph.nodes[i].step for i in marked if graph.nodes[i].recurrent} == {0, 1, 2, 3}
    assert viz_graph.read(root, rnn).steps == 6  # the graph itself holds all six


def test_highlight_after_backward_falls_back_to_connectivity_and_says_so():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3)
    out, _ = rnn(tg.randn(4, 1, 2))
    root = out[1].sum()
    root.backward()
    text = viz.to_dot(root, params=rnn, highlight="weight_hh_l0")
    assert "highlight by connectivity" in text
    assert marked_nodes(text)


def test_highlight_errors_name_the_known_parameters():
    losses, total, params, *_ = rnn_cell_loop(steps=2)
    with pytest.raises(KeyError, match="cell.weight_hh"):
        viz.to_dot(total, params=params, highlight="nope")
    with pytest.raises(TypeError, match="parameter name or a Tensor"):
        viz.to_dot(total, params=params, highlight=3)


# ---- layout: steps, lanes, parameters, details ----------------------------------------------

@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_layers_cluster_per_step_with_a_lane_per_layer_and_direction(kind):
    loss, output, params, layer = sequence_layer(kind, steps=3, layers=2, bidirectional=True)
    text = viz.to_dot(loss, params=params)
    where = lane_of_step(text)
    lanes = {}
    for step, lane in where.values():
        lanes.setdefault(step, set()).add(lane)
    prefix = kind.lower()
    assert set(lanes) == {"t0", "t1", "t2"}
    for step in lanes:
        assert {f"{prefix}/l0", f"{prefix}/l0_reverse", f"{prefix}/l1", f"{prefix}/l1_reverse"} <= lanes[step]
    labels = nodes_of(text)
    for name in params:  # each parameter exactly once, by its name
        assert sum(1 for label in labels.values() if label.split(" ")[0].rstrip("ᵀ") == name) == 1, name


def test_op_detail_names_the_gates_after_the_equations():
    loss, *_ = sequence_layer("LSTM", steps=2)
    labels = " ".join(nodes_of(viz.to_dot(loss)).values())
    for role in "ifgoch":
        assert f"{role}⟨0⟩" in labels and f"{role}⟨1⟩" in labels, role
    loss, *_ = sequence_layer("GRU", steps=2)
    labels = " ".join(nodes_of(viz.to_dot(loss)).values())
    for role in "rznh":
        assert f"{role}⟨1⟩" in labels, role


def test_cell_and_layer_detail_collapse_each_step():
    loss, output, params, layer = sequence_layer("LSTM", steps=3, layers=2)
    op, cell, lay = (viz.to_dot(loss, params=params, detail=d) for d in ("op", "cell", "layer"))
    assert len(nodes_of(op)) > len(nodes_of(cell)) > len(nodes_of(lay))
    cells = [label for label in nodes_of(cell).values() if label.startswith("LSTM cell")]
    assert len(cells) == 6  # 2 layers x 3 steps
    states = [label for label in nodes_of(cell).values() if re.match(r"[hc]⟨\d⟩", label)]
    assert len(states) == 12  # h and c kept, per layer and step
    per_step = [n for n, (step, lane) in lane_of_step(lay).items() if lane and lane.startswith("lstm/l")]
    assert len(per_step) == 6  # layer detail: one node per layer and direction per step


def test_rolled_view_has_one_cell_per_lane_with_a_self_loop_times_t():
    loss, output, params, layer = sequence_layer("LSTM", steps=5, bidirectional=True)
    text = viz.to_dot(loss, params=params, rolled=True)
    labels = nodes_of(text)
    cells = {n: label for n, label in labels.items() if label.startswith("LSTM cell")}
    assert len(cells) == 2
    loops = [(a, attrs) for a, b, attrs in edges_of(text) if a == b]
    assert sorted(a for a, _ in loops) == sorted(cells)
    assert all('label="×5"' in attrs for _, attrs in loops)
    assert not step_clusters(text)


def test_window_collapses_the_steps_each_side():
    losses, total, params, *_ = rnn_cell_loop(steps=8)
    text = viz.to_dot(total, params=params, window=(2, 4))
    assert set(step_clusters(text)) == {"t2", "t3", "t4"}
    labels = list(nodes_of(text).values())
    assert any(label.startswith("… 2 steps …") for label in labels)
    assert any(label.startswith("… 3 steps …") for label in labels)
    with pytest.raises(ValueError, match="window"):
        viz.to_dot(total, window=(3, 1))


def test_a_custom_cell_in_a_scope_gets_the_same_picture():
    tg.manual_seed(0)
    w_x, w_y = tg.randn(2, 3, requires_grad=True), tg.randn(1, 3, requires_grad=True)
    y, loss = tg.zeros(4, 1), None
    for _t in range(4):  # a Jordan network: the state is the previous output
        with tg.scope("jordan"):
            h = (tg.randn(4, 2) @ w_x + y @ w_y).tanh()
            y = h.sum(-1, keepdim=True)
        loss = y.sum() if loss is None else loss + y.sum()
    text = viz.to_dot(loss, params={"w_x": w_x, "w_y": w_y})
    assert set(step_clusters(text)) == {"t0", "t1", "t2", "t3"}
    # the cell's own lane, and the per-step loss terms directly in each step
    assert {lane for _, lane in lane_of_step(text).values()} == {"jordan", None}


def test_stacked_cells_in_one_loop_share_the_time_axis_and_a_decoder_follows_an_encoder():
    tg.manual_seed(0)
    first, second, decoder = nn.GRUCell(2, 3), nn.GRUCell(3, 3), nn.RNNCell(3, 3)
    h1 = h2 = None
    for _t in range(3):
        h1 = first(tg.randn(1, 2), h1)
        h2 = second(h1, h2)
    h = h2
    for _t in range(2):
        h = decoder(h, h)
    graph = viz_graph.read(h.sum())
    steps = {}
    for n in graph.nodes:
        if n.recurrent:
            steps.setdefault(n.lane, set()).add(n.step)
    assert steps == {"grucell": {0, 1, 2}, "grucell#1": {0, 1, 2}, "rnncell": {3, 4}}


def test_shared_weights_edge_into_every_step_and_sum_over_steps():
    loss, output, params, layer = sequence_layer("RNN", steps=3)
    text = viz.to_dot(loss, params=params)
    labels = nodes_of(text)
    w_hh = next(n for n, label in labels.items() if label.startswith("rnn.weight_hh_l0"))
    where = lane_of_step(text)
    assert {where[b][0] for a, b, _ in edges_of(text) if a == w_hh} == {"t0", "t1", "t2"}
    assert "Σ over 3 steps" in labels[w_hh]


def test_trace_colours_nodes_labels_ratios_and_draws_a_legend():
    losses, total, params, *_ = rnn_cell_loop(steps=4)
    trace = viz.trace_backward(total, params)
    text = viz.to_dot(total, params=params, trace=trace, detail="cell")
    assert "cluster_legend" in text and "log scale" in text
    norms = trace.hidden_norms()["rnncell"]
    ratios = [float(m) for m in re.findall(r'label="×([0-9.]+)"', text)]
    expected = sorted(round(norms[t - 1] / norms[t], 2) for t in range(1, 4))
    assert sorted(ratios) == expected
    assert f"‖∂L/∂h⟨2⟩‖ = {norms[2]:.3g}" in text


# ---- scale, determinism, escaping ---------------------------------------------------------

def test_a_10000_step_unroll_renders_at_cell_detail_without_recursion():
    tg.manual_seed(0)
    rnn = nn.RNN(1, 2)
    out, _ = rnn(tg.randn(10_000, 1, 1))
    text = viz.to_dot(out.sum(), params=rnn, detail="cell")
    assert "collapsed to" in text
    assert len(nodes_of(text)) <= 2000 + 2  # the cap, plus the cut node
    assert any(label.startswith("… ") for label in nodes_of(text).values())
    assert 0 < len(step_clusters(text)) <= viz.picture.MAX_STEPS  # what dot lays out quickly
    if shutil.which("dot"):  # and dot does: a hang guard, not a speed test
        subprocess.run(["dot", "-Tsvg", "-o", os.devnull], input=text.encode(), check=True, timeout=600,
                       capture_output=True)


def test_past_max_nodes_the_renderer_collapses_and_says_so():
    loss, *_ = sequence_layer("LSTM", steps=4)
    text = viz.to_dot(loss, max_nodes=60)
    assert "collapsed to cell detail" in text or "collapsed to layer detail" in text
    assert len(nodes_of(text)) <= 60 + 1


def _dot_in_a_new_process():
    code = ("import sys; sys.path.insert(0, 'tests'); sys.path.insert(0, '.');"
            "from tests.viz.models import sequence_layer; from tinygrad_rnn import viz;"
            "loss, out, params, layer = sequence_layer('LSTM', steps=3, layers=2, bidirectional=True);"
            "sys.stdout.write(viz.to_dot(loss, params=params, highlight='weight_hh_l0'))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_dot_is_byte_identical_across_runs_and_processes():
    loss, output, params, layer = sequence_layer("LSTM", steps=3, layers=2, bidirectional=True)
    here = viz.to_dot(loss, params=params, highlight="weight_hh_l0")
    again = sequence_layer("LSTM", steps=3, layers=2, bidirectional=True)
    assert viz.to_dot(again[0], params=again[2], highlight="weight_hh_l0") == here
    assert _dot_in_a_new_process() == here


def _unescape(label):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), label)


def test_labels_are_escaped():
    x = tg.randn(2, requires_grad=True)
    x.name = 'evil "name" \\ <b>&amp;\nline2 \\l'
    text = viz.to_dot((x * 2).sum())
    labels = [_unescape(label) for label in nodes_of(text).values()]
    assert f"{x.name} (2,)" in labels
    for line in text.splitlines():  # quotes pair up on every line: no label ends its string early
        assert re.sub(r"\\.", "", line).count('"') % 2 == 0


@pytest.mark.parametrize("batch_first", [False, True])
def test_per_step_slices_of_a_stacked_output_join_their_step(batch_first):
    """out[t] (or out[:, t]) of nn.LSTM's stacked output, and the head and loss on it, sit in step t."""
    tg.manual_seed(0)
    lstm, head = nn.LSTM(2, 3, bidirectional=True, batch_first=batch_first), nn.Linear(6, 1)
    out, _ = lstm(tg.randn(1, 4, 2) if batch_first else tg.randn(4, 1, 2), lengths=[4])
    terms = [(head(out[:, t] if batch_first else out[t]) ** 2).sum() for t in range(4)]
    text = viz.to_dot(terms[0] + terms[1] + terms[2] + terms[3], params=lstm)
    where = lane_of_step(text)
    losses = {n: label for n, label in nodes_of(text).items() if label.startswith("L⟨")}
    assert sorted(label.split("\\n")[0] for label in losses.values()) == ["L⟨0⟩", "L⟨1⟩", "L⟨2⟩", "L⟨3⟩"]
    assert all(where[n][0] == f"t{label[2]}" for n, label in losses.items())


def test_below_op_detail_out_t_is_drawn_from_h_t_past_the_stack():
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3)
    out, _ = lstm(tg.randn(4, 1, 2))
    root = (out[2] ** 2).sum()
    cell = viz.to_dot(root, params=lstm, detail="cell")
    labels = nodes_of(cell)
    (getitem,) = [n for n, label in labels.items() if label.startswith("getitem")]
    (parent,) = [a for a, b, _ in edges_of(cell) if b == getitem]
    assert labels[parent].startswith("h⟨2⟩")
    assert not any(label.startswith("stack") for label in labels.values())  # nothing else reads the stack
    assert any(label.startswith("stack") for label in nodes_of(viz.to_dot(root, params=lstm)).values())  # op: every op


def test_a_scope_repeated_per_step_without_recurrence_is_not_a_cell():
    """`with tg.scope("loss"):` around each step's loss: placed in the steps, not a time axis of its own."""
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3)
    out, _ = lstm(tg.randn(4, 1, 2))
    total = None
    for t in range(4):
        with tg.scope("loss"):
            term = (out[t] ** 2).sum()
        total = term if total is None else total + term
    graph = viz_graph.read(total, lstm)
    assert graph.steps == 4 and set(graph.lanes) == {"lstm/l0"}
    assert {n.step for n in graph.nodes if n.lane == "loss"} == {0, 1, 2, 3}
    text = viz.to_dot(total, params=lstm, detail="cell")
    assert sum(label.startswith("LSTM cell") for label in nodes_of(text).values()) == 4
