"""Reading the graph into what the renderer draws: the only part of viz that knows the engine.

`read(roots, params)` walks the graph once (autograd.walk, iterative) and gives every node
what the picture needs: a display name, its time step, and its *lane* (the layer and direction,
or the cell, that a step belongs to).

Where time steps come from:
- scopes with a `t<k>` component (the sequence layers label theirs `lstm/l0/t3`): the step is k,
  the lane what comes before it (`lstm/l0`), one *call* per entry of the scope above the lane;
- a scope entered again and again under the same parent with the same parameters (a cell module
  or a `tg.scope("jordan")` block called in a Python loop): each entry is a step, in the order
  they ran, when there are several or the scope holds a recurrent state (`mark`ed "h");
- any other node whose op parents all sit in one step (a head and a loss applied per step).
Calls that ran at overlapping times share one time axis (the layers of one LSTM, stacked cells
in one loop); calls that ran one after another are laid end to end (an encoder, then a decoder;
two chunks of truncated BPTT that were not detached).
"""
from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field

from .. import autograd

VIEW_OPS = frozenset({"permute", "reshape", "expand"})  # on a parameter: drawn as the parameter itself
_STEP = re.compile(r"t(\d+)$")


@dataclass
class Node:
    """One node of the graph as the renderer sees it (`id` is the walk's, so it is deterministic)."""

    id: int
    op: str
    role: str | None
    scope: str | None
    shape: tuple
    dtype: object
    parents: list          # ids of the nodes it was computed from (folded views resolved to their leaf)
    leaf: object = None    # the leaf Tensor, for leaves
    fn: object = None      # the Function, for ops
    param: str | None = None  # a parameter's name
    view: str = ""         # ops folded into a parameter ("ᵀ" for a transpose)
    step: int | None = None   # the time step on the graph's time axis
    lane: str | None = None   # the lane label ("lstm/l0", "rnncell", "head"), or None
    recurrent: bool = False   # the lane is a cell or a sequence layer, not a per-step head
    local_step: int | None = None  # the step within its lane (what trace.hidden_norms indexes)
    cut: str | None = None    # "zero" / "detached": its step's incoming state had no graph
    source: int | None = None  # out[t] of a stacked output: the step's node it really reads
    folded: bool = False      # a view of a parameter, drawn as the parameter

    @property
    def is_leaf(self):
        return self.fn is None and self.leaf is not None


@dataclass
class Graph:
    nodes: list                       # Node, parents before children
    roots: list                       # ids of the roots (Tensors without grad left out)
    lanes: dict = field(default_factory=dict)   # lane label -> number of steps in it
    steps: int = 0                    # length of the time axis
    final_states: dict = field(default_factory=dict)  # (lane, local step) -> {"h": id, "c": id}


def parameter_names(params):
    """params: None, a Module, a dict name -> tensor, or (name, tensor) pairs -> {id(tensor): name}."""
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    elif not isinstance(params, dict):
        params = dict(params)
    return {id(t): name for name, t in params.items()}


def read(roots, params=None):
    """roots: a Tensor or a list of them -> Graph."""
    if not isinstance(roots, (list, tuple)):
        roots = [roots]
    names = parameter_names(params)
    walked = list(autograd.walk(list(roots)))
    nodes = []
    for g in walked:
        node = Node(g.id, g.op, g.role, g.scope, g.shape, g.dtype, [p.id for p in g.parents], g.tensor, g.fn)
        if g.tensor is not None:
            node.param = names.get(id(g.tensor)) or getattr(g.tensor, "name", None)
        if g.fn is not None:
            node.cut = g.fn.cut
        nodes.append(node)
    _fold_parameter_views(nodes)
    graph = Graph(nodes, [])
    by_tensor = {id(g.tensor if g.fn is None else g.fn): g.id for g in walked}
    for r in roots:
        if r.requires_grad:
            target = r._grad_target()
            if by_tensor.get(id(target)) is not None and by_tensor[id(target)] not in graph.roots:
                graph.roots.append(by_tensor[id(target)])
    _assign_steps(graph)
    return graph


def _fold_parameter_views(nodes):
    """A transpose or reshape of a parameter (`w_hh.T`, made once per sequence) is drawn as the
    parameter, so the parameter's edges go straight into every step that uses it."""
    for node in nodes:
        if node.op in VIEW_OPS and len(node.parents) == 1:
            source = nodes[node.parents[0]]
            if source.is_leaf or source.folded:
                node.folded = True
                node.view = source.view + ("ᵀ" if node.op == "permute" else "")
    for node in nodes:
        node.parents = [resolve(nodes, p) for p in node.parents]


def resolve(nodes, i):
    while nodes[i].folded:
        i = nodes[i].parents[0]
    return i


# ---- time steps --------------------------------------------------------------------------

def _parts(node):
    return getattr(node.scope, "parts", None) or (
        tuple((c, 0) for c in node.scope.split("/")) if node.scope else ())


def _assign_steps(graph):
    nodes = graph.nodes
    units = {}  # call key -> {"lanes": {lane key: lane label}, "serials": [min, max]}
    placed = {}  # node id -> (call key, lane key, step within the call, recurrent)
    owners = []  # scope prefixes (labels and serials) that own t-labelled steps

    # 1. scopes with a t<k> component
    for node in nodes:
        parts = _parts(node)
        for k in range(len(parts) - 1, -1, -1):
            match = _STEP.match(parts[k][0])
            if match and k > 0:
                serial = parts[k][1]
                lane_parts = parts[:k]
                owner = tuple(p for p in lane_parts if p[1] != serial)  # the call: scopes entered once
                call = ("t", owner)
                placed[node.id] = (call, tuple(c for c, _ in lane_parts), int(match.group(1)), True)
                _widen(units, call, serial)
                owners.append(owner)
                break

    # 2. a scope entered once per step of a Python loop
    owner_set = set(owners)
    instances = {}  # (parent parts, label, parameters used) -> {serial: [node ids]}
    for node in nodes:
        if node.id in placed or node.fn is None:
            continue
        parts = _parts(node)
        if not parts or any(parts[:n] in owner_set for n in range(1, len(parts) + 1)):
            continue
        parent, (label, serial) = parts[:-1], parts[-1]
        instances.setdefault((parent, label), {}).setdefault(serial, []).append(node.id)
    for (parent, label), by_serial in instances.items():
        for index, (used, serials) in enumerate(_same_cell(nodes, by_serial)):
            recurrent = any(nodes[i].role == "h" for s in serials for i in by_serial[s])
            if not recurrent and not (len(serials) > 1 and _chained(nodes, [by_serial[s] for s in sorted(serials)])):
                continue  # a scope merely repeated per step (a loss), not a recurrence: placed by step 4
            lane = tuple(c for c, _ in parent) + (label + (f"#{index}" if index else ""),)
            call = ("loop", parent, label, used)
            for step, serial in enumerate(sorted(serials)):
                for i in by_serial[serial]:
                    placed[i] = (call, lane, step, True)
                _widen(units, call, serial)

    # 3. calls on one time axis: overlapping ones share it, later ones follow
    offsets, axis_end, current_end = {}, 0, -1
    timeline_start = 0
    steps_in = {}
    for call, _lane, step, _ in placed.values():
        steps_in[call] = max(steps_in.get(call, 0), step + 1)
    for call in sorted(units, key=lambda c: units[c][0]):
        first, last = units[call]
        if first > current_end:  # ran after everything so far: a new stretch of the axis
            timeline_start = axis_end
        offsets[call] = timeline_start
        axis_end = max(axis_end, timeline_start + steps_in[call])
        current_end = max(current_end, last)
    lane_steps = {}
    for node_id, (call, lane, step, recurrent) in placed.items():
        node = nodes[node_id]
        node.step, node.lane, node.recurrent = offsets[call] + step, "/".join(lane), recurrent
        lane_steps.setdefault(node.lane, {}).setdefault(call, set()).add(step)
    # a lane's own steps, counted through all its calls in the order they ran
    call_base = {}
    for lane, calls in lane_steps.items():
        base = 0
        for call in sorted(calls, key=lambda c: offsets[c]):
            call_base[(lane, call)] = base
            base += max(calls[call]) + 1
        graph.lanes[lane] = base
    for node_id, (call, _, step, _) in placed.items():
        node = nodes[node_id]
        node.local_step = call_base[(node.lane, call)] + step
    graph.steps = axis_end

    # 4. per-step heads and losses: an op whose op parents all sit in one step joins it; and
    # out[t], a slice of a sequence layer's stacked output, joins step t (and so the head and the
    # loss applied to it), though the stack it slices holds every step
    offsets = {}  # cat node id -> where each input starts along the cat's axis
    for node in nodes:
        if node.step is None and node.op == "getitem" and not node.folded and node.parents:
            selected = _selected_row(node)
            sources = None if selected is None else _steps_of_row(nodes, node.parents[0], *selected, offsets)
            steps = None if sources is None else {nodes[i].step for i in sources}
            if steps is not None and len(steps) == 1:
                (node.step,) = steps
                if len(sources) == 1:
                    (node.source,) = sources
                node.lane = "/".join(c for c, _ in _parts(node)) or None
        _join_single_step(nodes, node)

    # ... and an op whose consumers all sit in one step joins it too (the slice x_proj[t] that a
    # sequence layer cuts for step t from its one input projection)
    children = {}
    for node in nodes:
        for p in node.parents:
            children.setdefault(p, set()).add(node.id)
    for node in reversed(nodes):
        if node.step is not None or node.fn is None or node.folded or node.id in graph.roots:
            continue
        steps = {nodes[c].step for c in children.get(node.id, ())}
        if len(steps) == 1 and None not in steps:
            (node.step,) = steps
            node.lane = "/".join(c for c, _ in _parts(node)) or None

    # the states each recurrent step hands on: its last h and c (after any padding mask)
    for node in nodes:
        if node.recurrent and node.role in ("h", "c"):
            graph.final_states.setdefault((node.lane, node.local_step), {})[node.role] = node.id


def _join_single_step(nodes, node):
    """An op whose op parents all sit in one step joins that step."""
    if node.step is not None or node.fn is None or node.folded:
        return
    steps = {nodes[p].step for p in node.parents if nodes[p].fn is not None and not nodes[p].folded}
    if len(steps) == 1 and None not in steps:
        (node.step,) = steps
        node.lane = "/".join(c for c, _ in _parts(node)) or None


def _selected_row(node):
    """(dim, index) when a getitem picks one index of one dim with full slices before it, else None."""
    index = getattr(node.fn, "basic", None)
    if index is None:
        return None
    index = index if isinstance(index, tuple) else (index,)
    for dim, item in enumerate(index):
        if isinstance(item, int):
            return dim, item
        if item != slice(None):
            return None
    return None


def _steps_of_row(nodes, start, dim, row, offsets):
    """The stepped nodes that row `row` of dim `dim` of node `start` was computed from, following
    stacks, concatenated directions, transposes and masks;
    None where the route is not one of those."""
    found, work = set(), [(start, dim, row)]
    while work:
        i, dim, row = work.pop()
        node = nodes[i]
        op_parents = [p for p in node.parents if nodes[p].fn is not None]
        if node.op == "reshape" and len(op_parents) == 1 and row is not None and \
                node.shape[:dim] + node.shape[dim + 1:] == nodes[op_parents[0]].shape and node.shape[dim] == 1:
            work.append((op_parents[0], None, None))  # an unsqueeze (the stack's): the whole parent
            continue
        if node.step is not None:
            found.add(i)
            continue
        if node.op == "stack" and row is not None:
            axis = node.fn.axis
            if axis == dim:  # row `row` is the whole of input `row`
                work.append((node.parents[row % len(node.parents)], None, None))
            else:
                work.extend((p, dim - (dim > axis), row) for p in node.parents)
            continue
        if node.op == "cat" and row is not None:
            axis, sizes = node.fn.axis % len(node.shape), node.fn.sizes
            if axis != dim:
                work.extend((p, dim, row) for p in node.parents)
                continue
            if i not in offsets:
                offsets[i] = list(itertools.accumulate(sizes, initial=0))
            starts = offsets[i]
            row %= node.shape[dim]
            k = bisect.bisect_right(starts, row) - 1
            work.append((node.parents[k], dim, row - starts[k]))
        elif node.op == "permute" and len(op_parents) == 1 and row is not None:
            work.append((op_parents[0], node.fn.axes[dim], row))
        elif len(op_parents) == 1 and nodes[op_parents[0]].shape == node.shape and len(node.parents) == 1:
            work.append((op_parents[0], dim, row))  # elementwise with a constant (the lengths mask)
        else:
            return None
        if len(work) > 10_000:
            return None
    return found


def _chained(nodes, entries):
    """Whether each entry of a repeated scope (a list of node-id lists, in the order they ran)
    was computed from the one before: a recurrence even without a marked state (a custom cell)."""
    entry_of = {i: k for k, ids in enumerate(entries) for i in ids}
    latest = {}  # node id -> the latest entry among the node and its ancestors
    fed = set()  # entries k that read from entry k-1
    for node in nodes:
        reached = max((latest.get(p, -1) for p in node.parents), default=-1)
        own = entry_of.get(node.id)
        if own is not None:
            if reached == own - 1:
                fed.add(own)
            reached = max(reached, own)
        latest[node.id] = reached
    return all(k in fed for k in range(1, len(entries)))


def _same_cell(nodes, by_serial):
    """Split the entries of one scope label into cells: entries that share a leaf (the cell's
    weights) are one cell; two cells under one label ("grucell" twice, stacked) share none.
    Returns [(frozenset of leaf ids, sorted serials)] in the order the cells first ran."""
    owner = {}  # leaf id -> the serial that first used it
    parent = {serial: serial for serial in by_serial}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for serial in sorted(by_serial):
        for i in by_serial[serial]:
            for p in nodes[i].parents:
                if nodes[p].is_leaf:
                    first = owner.setdefault(p, serial)
                    parent[find(serial)] = find(first)
    cells = {}
    for serial in sorted(by_serial):
        cells.setdefault(find(serial), []).append(serial)
    return [(frozenset(p for p, s in owner.items() if find(s) == root), serials) for root, serials in cells.items()]


def _widen(units, call, serial):
    span = units.get(call)
    units[call] = [serial, serial] if span is None else [min(span[0], serial), max(span[1], serial)]
