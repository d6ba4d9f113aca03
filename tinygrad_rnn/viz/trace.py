"""Watching backward: gradient norms per node and the order backward visits nodes (through the
engine's hooks, norms only, never arrays), which nodes a gradient really flows through on its
way to a tensor (the highlighted path), and the truncated-BPTT check."""
from __future__ import annotations

import warnings

from .. import autograd, backend
from ..creation import ones_like
from ..errors import GraphError
from . import graph as graph_module


def _norm(array):
    xp = backend.get_array_module(array)
    return float(xp.sqrt((array.astype(xp.float64) ** 2).sum()))


class Trace:
    """What `trace_backward` recorded. `norms`: walk id -> ‖∂L/∂(node's output)‖; `order`: walk
    ids in the order backward reached them (each op before the nodes it sends to, leaves last, as
    the engine writes .grad after the sweep). Holds the graph's nodes, not its arrays."""

    def __init__(self, graph, norms, order):
        self.graph, self.norms, self.order = graph, norms, order
        self._index = {id(n.fn if n.fn is not None else n.leaf): n.id for n in graph.nodes}

    def norm_of(self, obj):
        """The recorded norm for a Function node or a leaf tensor (None if backward never reached it)."""
        i = self._index.get(id(obj))
        return None if i is None else self.norms.get(i)

    def hidden_norms(self):
        """{lane label: [‖∂L/∂h⟨t⟩‖ for t in 0..T-1]}: the total gradient arriving at each step's
        hidden state (from the output at t and from step t+1), per layer and direction
        ("lstm/l0", "lstm/l0_reverse") or per cell called in a loop ("lstmcell")."""
        result = {}
        for (lane, step), states in sorted(self.graph.final_states.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if "h" not in states:
                continue
            values = result.setdefault(lane, [0.0] * self.graph.lanes[lane])
            values[step] = self.norms.get(states["h"], 0.0)
        return result

    def visits(self):
        """[(walk id, op or parameter name, norm)] in the order backward visited the nodes."""
        nodes = self.graph.nodes
        return [(i, nodes[i].param or nodes[i].role or nodes[i].op, self.norms[i]) for i in self.order]


def _roots(loss):
    return list(loss) if isinstance(loss, (list, tuple)) else [loss]


def trace_backward(loss, params=None, gradient=None, retain_graph=False):
    """Run backward from `loss` (a Tensor or a list of them; gradients land in .grad as usual)
    while recording each node's gradient norm and the order backward visits the nodes.
    Returns a Trace."""
    roots = _roots(loss)
    graph = graph_module.read(roots, params)
    norms, order, handles = {}, [], []

    def recorder(i):
        def hook(grad):
            norms[i] = _norm(grad if backend.is_array(grad) else grad.detach().numpy())
            order.append(i)
        return hook

    try:
        for node in graph.nodes:
            if node.fn is not None:
                handles.append(node.fn.register_hook(recorder(node.id)))
            elif node.leaf is not None:
                handles.append(node.leaf.register_hook(recorder(node.id)))
        seeds = [root._seed(gradient if len(roots) == 1 else None) for root in roots]
        autograd.run_backward(roots, seeds, retain_graph=retain_graph)
    finally:
        for handle in handles:
            handle.remove()
    return Trace(graph, norms, order)


def dependence(graph, root, target):
    """The ids on the path from `root` back to `target` (Tensors in the graph), and whether the
    answer is exact: the nodes a gradient from root really reaches on its way to target. Runs a
    backward that writes no .grad (autograd.grad's mode) and keeps the graph; a node joins if its
    gradient is not all zero, so `out[3]` of a stacked sequence output leads through step 3 only.
    When backward already freed the graph's arrays the answer is by connectivity alone."""
    index = {id(n.fn if n.fn is not None else n.leaf): n.id for n in graph.nodes}
    root_id, target_id = index.get(id(root._grad_target())), index.get(id(target._grad_target()))
    if root_id is None or target_id is None:
        return set(), True
    candidates = _reaches(graph, target_id) & _ancestors(graph, root_id)
    if not candidates:
        return set(), True
    nodes, flowing, handles = graph.nodes, set(), []

    def recorder(i):
        def hook(grad):
            if bool(backend.get_array_module(grad).any(grad != 0)):
                flowing.add(i)
        return hook

    try:
        for i in candidates:
            if nodes[i].fn is not None:
                handles.append(nodes[i].fn.register_hook(recorder(i)))
        seed = root._seed(ones_like(root))
        (captured,) = autograd.run_backward([root], [seed], retain_graph=True, capture=[target])
    except GraphError:
        return candidates, False
    finally:
        for handle in handles:
            handle.remove()
    if captured is not None and bool(backend.get_array_module(captured).any(captured != 0)):
        flowing.add(target_id)
    return candidates & flowing, True


def _ancestors(graph, start):
    """start and every node it was computed from."""
    seen, stack = {start}, [start]
    while stack:
        for p in graph.nodes[stack.pop()].parents:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def _reaches(graph, target):
    """target and every node computed from it (walk order is parents first: one pass)."""
    found = {target}
    for node in graph.nodes:
        if any(p in found for p in node.parents):
            found.add(node.id)
    return found


def check_truncation(loss, expected_steps, params=None):
    """Warn (UserWarning) when backward from `loss` would reach further back in time than
    `expected_steps`: the classic truncated-BPTT bug of carrying the state between chunks without
    .detach(). Returns {lane: steps reached}."""
    graph = graph_module.read(loss, params)
    reached = dict(graph.lanes)
    over = {lane: steps for lane, steps in reached.items() if steps > expected_steps}
    if over:
        worst = ", ".join(f"{lane}: {steps} steps" for lane, steps in over.items())
        warnings.warn(f"check_truncation: the graph reaches back further than {expected_steps} steps ({worst}); "
                      "detach the carried state between chunks (h = h.detach()) so backward stops at the chunk",
                      UserWarning, stacklevel=2)
    return reached
