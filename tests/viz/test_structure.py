"""The structure of the rendered graph: clusters per time step, parameters once with an edge into
every step, the highlighted BPTT path following real dependence, detail levels, cuts."""
import re

from tinygrad_rnn import viz

from .models import rnn_cell_loop


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
