"""From a read graph to a picture: which nodes are drawn (detail, rolled, window, the automatic
collapse past max_nodes), their labels and clusters, and the edges between them, marked for a
highlighted path and coloured by a trace's gradient norms. No engine, no graphviz: graph.py
reads, dot.py writes."""
from __future__ import annotations

import math

from . import dot

DETAILS = ("op", "cell", "layer")
# Time steps drawn in full when the picture collapses by itself: dot's layout time grows steeply
# with the number of step clusters (measured on a 10,000-step RNN: 64 steps 0.4 s, 256 over a minute).
MAX_STEPS = 64
PATH = {"color": "#d62728", "penwidth": "2.4", "class": "bptt-path"}
PARAM_EDGE = {"style": "dashed", "color": "#9ecae1"}
# ColorBrewer's Oranges, light to dark: gradient norms on a log scale
DARK = 6  # from this palette index on, labels are white
PALETTE = ("#fff5eb", "#fee6ce", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#a63603", "#7f2704")
ROLE_TEXT = {"i": "input gate", "f": "forget gate", "g": "candidate", "o": "output gate", "c": "cell state",
             "h": "hidden state", "r": "reset gate", "z": "update gate", "n": "candidate"}


FUSED_STEPS = frozenset({"lstmstep", "grustep", "rnnstep"})  # ops.LSTMStep, ...: a whole cell step in one node


def cell_kind(roles, ops=()):
    """"LSTM", "GRU", "RNN" or "cell", from the gates a lane's steps mark (or its fused step ops)."""
    if {"i", "f", "o"} <= roles or "lstmstep" in ops:
        return "LSTM"
    if {"r", "z"} <= roles or "grustep" in ops:
        return "GRU"
    return "RNN" if "h" in roles else "cell"


class Options:
    def __init__(self, detail="op", rolled=False, window=None, max_nodes=2000, rankdir="LR"):
        if detail not in DETAILS:
            raise ValueError(f"make_dot: detail must be one of {DETAILS}, got {detail!r}")
        if window is not None:
            if len(window) != 2 or not all(isinstance(t, int) for t in window) or window[0] > window[1]:
                raise ValueError(f"make_dot: window must be (t0, t1) with ints t0 <= t1, got {window!r}")
        if not isinstance(max_nodes, int) or max_nodes < 1:
            raise ValueError(f"make_dot: max_nodes must be a positive int, got {max_nodes!r}")
        if rankdir not in ("LR", "RL", "TB", "BT"):
            raise ValueError(f"make_dot: rankdir must be one of LR, RL, TB, BT, got {rankdir!r}")
        self.detail, self.rolled, self.window, self.max_nodes, self.rankdir = detail, rolled, window, max_nodes, rankdir


class _Keys:
    """The display node each graph node is drawn as, at one detail level and window."""

    def __init__(self, graph, detail, rolled, window):
        self.graph, self.detail, self.rolled, self.window = graph, detail, rolled, window
        self.hidden = bypassed(graph) if detail != "op" or rolled else frozenset()
        self.final = {i for states in graph.final_states.values() for i in states.values()}
        self.roots = set(graph.roots)
        self.owners = {}
        self.ordinal = {}  # rolled: a per-step node's place among its step's nodes of its lane
        if rolled:
            seen = {}
            for node in graph.nodes:
                if node.step is not None and not node.recurrent and node.fn is not None:
                    key = (node.lane, node.step)
                    self.ordinal[node.id] = seen.get(key, 0)
                    seen[key] = self.ordinal[node.id] + 1

    def owner(self, lane):
        """The recurrent lane a per-step lane belongs to ("lstm/l0" for "lstm/l0/input"), or None."""
        if lane is None:
            return None
        if lane not in self.owners:
            self.owners[lane] = next((r for r in self.graph.lanes if lane.startswith(r + "/")), None)
        return self.owners[lane]

    def __call__(self, node):
        if node.fn is None or node.id in self.roots:
            return ("n", node.id)
        step = node.step
        if step is not None and self.window is not None and not self.rolled:
            if step < self.window[0]:
                return ("before",)
            if step > self.window[1]:
                return ("after",)
        if node.recurrent:
            if self.rolled:
                return ("cell", node.lane, None)
            if self.detail == "op" or (self.detail == "cell" and node.id in self.final):
                return ("n", node.id)
            return ("cell", node.lane, step)
        if step is not None:
            owner = self.owner(node.lane)
            if owner is not None and (self.rolled or self.detail != "op"):
                return ("cell", owner, None if self.rolled else step)  # a sequence layer's slice for the step
            if self.rolled:
                return ("roll", node.lane, self.ordinal[node.id])
            if self.detail == "layer" and node.lane is not None:
                return ("lanestep", node.lane, step)
            return ("n", node.id)
        if self.detail == "layer" and node.scope:
            return ("scope", getattr(node.scope, "parts", None) or node.scope)
        return ("n", node.id)

    def count(self):
        return len({self(node) for node in self.graph.nodes if self.drawn(node)})

    def drawn(self, node):
        return not node.folded and node.id not in self.hidden

    def parents(self, node):
        """What a node is drawn computed from: out[t] straight from its step's node, past the stack,
        below op detail."""
        if node.source is not None and self.hidden:
            return [node.source]
        return node.parents


def bypassed(graph):
    """The nodes that only feed per-step slices of a stack which are drawn straight from their steps
    (the stack, its unsqueezes): what nothing drawn reaches once those slices skip them."""
    if not any(node.source is not None for node in graph.nodes):
        return frozenset()
    reached = set(graph.roots)
    for node in reversed(graph.nodes):  # children before parents
        if node.id in reached:
            reached.update([node.source] if node.source is not None else node.parents)
    return frozenset(node.id for node in graph.nodes if node.id not in reached)


def choose(graph, options):
    """The detail and window to draw at, collapsing by itself past max_nodes: op -> cell -> layer,
    then a window over the last steps. Returns (keys, notes for the caption)."""
    detail, window = options.detail, options.window
    keys = _Keys(graph, detail, options.rolled, window)
    total = keys.count()
    notes = []
    too_long = window is None and not options.rolled and graph.steps > MAX_STEPS
    if total <= options.max_nodes and not too_long:
        return keys, notes
    for coarser in DETAILS[DETAILS.index(detail) + 1:] if not too_long else ():
        keys = _Keys(graph, coarser, options.rolled, window)
        if keys.count() <= options.max_nodes:
            notes.append(f"collapsed to {coarser} detail: {total} nodes at {detail} detail > "
                         f"max_nodes={options.max_nodes}")
            return keys, notes
    detail = DETAILS[-1]
    first, last = (0, graph.steps - 1) if window is None else window
    if graph.steps and not options.rolled:
        low, high = 1, min(last - first + 1, MAX_STEPS)  # the widest window of the last steps that fits
        while low < high:
            mid = (low + high + 1) // 2
            if _Keys(graph, detail, False, (last - mid + 1, last)).count() <= options.max_nodes:
                low = mid
            else:
                high = mid - 1
        window = (last - low + 1, last)
        keys = _Keys(graph, detail, False, window)
        why = f"{total} nodes > max_nodes={options.max_nodes}" if total > options.max_nodes else \
            f"{graph.steps} steps > {MAX_STEPS}, the most dot lays out quickly"
        notes.append(f"collapsed to {detail} detail and steps {window[0]}..{window[1]}: {why}")
    else:
        keys = _Keys(graph, detail, options.rolled, window)
        notes.append(f"collapsed to {detail} detail: {total} nodes > max_nodes={options.max_nodes}")
    if keys.count() > options.max_nodes:
        notes.append(f"still {keys.count()} nodes: only the first {options.max_nodes} are drawn")
    return keys, notes


def _fmt(x):
    return f"{x:.3g}" if x != 0 else "0"


def _shape(shape):
    return "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1 else ")")


class Builder:
    """Builds one dot.Picture from a graph.Graph."""

    def __init__(self, graph, options, marked=frozenset(), norms=None, exact=True, title=None):
        self.graph, self.options, self.marked = graph, options, marked
        self.norms = norms  # node id -> gradient norm, or None without a trace
        self.keys, self.notes = choose(graph, options)
        if marked and not exact:
            self.notes.append("highlight by connectivity: the graph's saved arrays were freed by backward, "
                              "so dependence could not be checked (call make_dot before backward, or with "
                              "retain_graph=True)")
        self.title = title
        self.members = {}  # display key -> [node ids], in walk order
        for node in graph.nodes:
            if self.keys.drawn(node):
                self.members.setdefault(self.keys(node), []).append(node.id)
        if len(self.members) > options.max_nodes:
            self.members = dict(list(self.members.items())[:options.max_nodes])
        self.names = {key: f"n{i}" for i, key in enumerate(self.members)}
        self.lane_roles, self.lane_ops = {}, {}
        for node in graph.nodes:
            if node.recurrent:
                self.lane_roles.setdefault(node.lane, set()).add(node.role)
                self.lane_ops.setdefault(node.lane, set()).add(node.op)
        self.scale = self._scale()
        self.consumer_steps = {}
        for node in graph.nodes:
            for p in node.parents:
                self.consumer_steps.setdefault(p, set()).add(node.step)

    # ---- colours -------------------------------------------------------------------------
    def _scale(self):
        if self.norms is None:
            return None
        values = [v for v in self.norms.values() if v > 0 and math.isfinite(v)]
        if not values:
            return None
        return math.log10(min(values)), math.log10(max(values))

    def shade(self, norm):
        """The palette index of a norm on the log scale, or None (no norm, zero, not finite)."""
        if self.scale is None or norm is None or not norm > 0 or not math.isfinite(norm):
            return None
        low, high = self.scale
        position = 0.5 if high == low else (math.log10(norm) - low) / (high - low)
        return min(len(PALETTE) - 1, int(position * len(PALETTE)))

    def colour(self, norm, light=False):
        """The fill for a norm; `light` keeps to the palette's pale half (cluster backgrounds, under
        nodes of their own colour and black text)."""
        index = self.shade(norm)
        if index is None:
            return "white"
        return PALETTE[index // 2 if light else index]

    def norm_of(self, key):
        if self.norms is None:
            return None
        values = [self.norms[i] for i in self.members[key] if i in self.norms]
        return max(values) if values else None

    # ---- labels --------------------------------------------------------------------------
    def label(self, key):
        graph, ids = self.graph, self.members[key]
        kind = key[0]
        if kind == "n":
            return self.node_label(graph.nodes[key[1]])
        if kind in ("before", "after"):
            steps = sorted({graph.nodes[i].step for i in ids if graph.nodes[i].step is not None})
            return f"… {len(steps)} steps …\n(t{steps[0]}..t{steps[-1]})" if steps else "…"
        if kind == "cell":
            lane, step = key[1], key[2]
            name = cell_kind(self.lane_roles.get(lane, set()), self.lane_ops.get(lane, set()))
            if step is None:
                return f"{name} cell\n{lane}\n×{graph.lanes.get(lane, 1)}"
            local = self.representative(key).local_step
            return f"{name} cell {lane}\nt{local}" if self.keys.detail == "cell" else f"{lane}\nt{local}"
        if kind == "roll":
            first = graph.nodes[ids[0]]
            return f"{self.node_label(first, rolled=True)}\n×{len(ids)}"
        if kind == "lanestep":
            return f"{key[1]}\nt{key[2]}"
        scope = graph.nodes[ids[0]].scope
        return f"{scope}\n{len(ids)} ops"

    def node_label(self, node, rolled=False):
        t = "t" if rolled else (node.local_step if node.recurrent else node.step)
        if node.fn is None:
            name = node.param or "input"
            text = f"{name}{node.view} {_shape(node.shape)}"
            steps = self.param_steps.get(node.id, 0)
            if steps > 1:
                text += f"\nΣ over {steps} steps"
            return text
        if self.is_step_loss(node):
            return f"L⟨{t}⟩\n{node.op}"
        if node.id in self.graph.roots:
            return f"L {_shape(node.shape)}" if node.shape == () else f"output {_shape(node.shape)}"
        if node.role and node.recurrent:
            return f"{node.role}⟨{t}⟩ {ROLE_TEXT.get(node.role, '')}\n{node.op} {_shape(node.shape)}"
        return f"{node.op}\n{_shape(node.shape)}"

    def is_step_loss(self, node):
        """A scalar computed within one step that leaves it (into the total loss, or as a root): L<t>."""
        if node.shape != () or node.step is None or node.recurrent or node.fn is None:
            return False
        consumers = self.consumer_steps.get(node.id, set())
        return node.step not in consumers

    # ---- the picture -----------------------------------------------------------------------
    def build(self):
        options = self.options
        self.param_steps = self._param_steps()
        picture = dot.Picture(
            attrs={"rankdir": options.rankdir, "compound": "true", "nodesep": "0.25",
                   "ranksep": "0.45", "fontname": "Helvetica", "fontsize": "11", "labelloc": "t",
                   "label": self.caption()},
            node_defaults={"shape": "box", "style": "rounded,filled", "fillcolor": "white",
                           "fontname": "Helvetica", "fontsize": "10"},
            edge_defaults={"fontname": "Helvetica", "fontsize": "9", "color": "#666666", "arrowsize": "0.7"})
        clusters, columns = {}, {}
        for key in self.members:
            cluster = self._cluster_of(key, picture.root, clusters)
            cluster.nodes.append((self.names[key], self.node_attrs(key)))
            step = self.graph.nodes[self.members[key][0]].step
            if step is not None and ("t", step) in clusters and key[0] in ("n", "cell", "lanestep"):
                columns.setdefault(id(cluster), (cluster, []))[1].append(self.names[key])
        # Each lane of a step (and the step's own head and loss) is one column, time running along
        # the rank axis. Per cluster, not across clusters: that needs newrank, which makes dot
        # superlinear in the number of steps (100 steps: 90 s against 0.1 s) and breaks its routing.
        for cluster, names in columns.values():
            cluster.same_rank.append(names)
        self._cut_nodes(picture, clusters)
        self._edges(picture)
        if self.scale is not None:
            self._legend(picture)
        return picture

    def caption(self):
        graph = self.graph
        parts = [self.title] if self.title else []
        what = f"{len(self.members)} nodes at {self.keys.detail} detail"
        if graph.steps:
            what += f", {graph.steps} time steps" + (" (rolled)" if self.options.rolled else "")
        if self.keys.window is not None and not self.options.rolled:
            what += f", steps {self.keys.window[0]}..{self.keys.window[1]} in full"
        parts.append(what)
        if self.marked:
            parts.append("red (class bptt-path): the path backward takes from the root to the highlighted tensor")
        if self.scale is not None:
            parts.append("fill: ‖∂L/∂node‖ (log scale); recurrent edges: ‖∂L/∂h⟨t−1⟩‖ / ‖∂L/∂h⟨t⟩‖")
        if self.keys.detail == "op" and any(n.op in FUSED_STEPS for n in graph.nodes):
            parts.append("fused cell steps are one node each: "
                         "build the graph under tg.nn.fused(False) to see every gate")
        return "\n".join(parts + self.notes)

    def _param_steps(self):
        steps = {}
        for node in self.graph.nodes:
            if node.step is None:
                continue
            for p in node.parents:
                if self.graph.nodes[p].fn is None:
                    steps.setdefault(p, set()).add(node.step)
        return {p: len(s) for p, s in steps.items()}

    def node_attrs(self, key):
        graph = self.graph
        attrs = {"label": self.label(key)}
        kind = key[0]
        node = graph.nodes[key[1]] if kind == "n" else None
        if node is not None and node.fn is None:
            attrs["shape"] = "note" if node.param else "ellipse"
            attrs["fillcolor"] = "#deebf7" if node.param else "white"
        elif node is not None and (node.id in graph.roots or self.is_step_loss(node)):
            attrs["shape"] = "doublecircle"
        elif kind in ("before", "after"):
            attrs["style"] = "dashed,rounded"
        elif kind == "cell":
            attrs["shape"] = "box3d" if key[2] is not None else "box"
            attrs["style"] = "filled"
        if node is not None and node.recurrent and node.role != "c":
            attrs["group"] = node.lane  # the recurrent chain through h<t> drawn as one straight line
        elif kind == "cell" or node is not None and node.role == "c":
            attrs["group"] = f"{key[1] if kind == 'cell' else node.lane}/{'cell' if kind == 'cell' else 'c'}"
        norm = self.norm_of(key)
        if norm is not None:
            attrs["fillcolor"] = self.colour(norm)
            if (self.shade(norm) or 0) >= DARK:
                attrs["fontcolor"] = "white"
            attrs["tooltip"] = f"‖∂L/∂·‖ = {_fmt(norm)}"
            attrs["label"] += f"\n‖∇‖ {_fmt(norm)}"
        if any(i in self.marked for i in self.members[key]):
            attrs.update(PATH)
        attrs["id"] = self.names[key]
        return attrs

    def representative(self, key):
        """The member that places a display node: for a cell, one of the step's own nodes (not a
        slice of the input projection that joined it)."""
        nodes = [self.graph.nodes[i] for i in self.members[key]]
        if key[0] == "cell":
            return next(n for n in nodes if n.recurrent)
        return nodes[0]

    def _cluster_of(self, key, root, clusters):
        graph = self.graph
        first = self.representative(key)
        kind = key[0]
        if kind == "n" and first.fn is None:
            if not first.param:
                return root
            return self._cluster(root, clusters, ("params",), "parameters, each drawn once; gradient = Σ over steps",
                                 {"style": "rounded,dashed", "color": "#888888"})
        if kind in ("before", "after"):
            return root
        if kind == "cell" and key[2] is None or kind == "roll":
            lane = key[1]
            return self._cluster(root, clusters, ("rolled", lane), f"{lane or 'per step'} (rolled: ×T)",
                                 {"style": "rounded", "color": "#aaaaaa"})
        step = first.step
        if step is not None and kind in ("n", "cell", "lanestep"):
            outer = self._cluster(root, clusters, ("t", step), f"t{step}",
                                  {"style": "rounded,filled", "fillcolor": "#fbfbfb", "color": "#aaaaaa"})
            if first.lane is None:
                return outer
            attrs = {"style": "rounded,filled", "fillcolor": "white", "color": "#cccccc"}
            label = first.lane
            states = graph.final_states.get((first.lane, first.local_step), {})
            if self.norms is not None and states.get("h") in self.norms:
                norm = self.norms[states["h"]]
                label += f"  ‖∂L/∂h⟨{first.local_step}⟩‖ = {_fmt(norm)}"
                attrs["fillcolor"] = self.colour(norm, light=True)
            return self._cluster(outer, clusters, ("t", step, first.lane), label, attrs)
        parts = getattr(first.scope, "parts", None) or ()
        cluster = root
        for depth in range(1, len(parts) + 1):
            cluster = self._cluster(cluster, clusters, ("s",) + parts[:depth], parts[depth - 1][0],
                                    {"style": "rounded", "color": "#bbbbbb"})
        return cluster

    def _cluster(self, parent, clusters, key, label, attrs):
        cluster = clusters.get(key)
        if cluster is None:
            cluster = dot.Cluster(f"cluster_{len(clusters)}", {"label": label, **attrs})
            clusters[key] = cluster
            parent.children.append(cluster)
        return cluster

    def _cut_nodes(self, picture, clusters):
        """A step whose incoming state had no graph: a dashed node where backward stops."""
        for key, ids in self.members.items():
            for i in ids:
                node = self.graph.nodes[i]
                if node.cut is None:
                    continue
                name = f"{self.names[key]}_cut"
                if node.cut == "zero":
                    text = f"initial state\n{node.lane} = 0"
                else:
                    text = f"detached h⟨{node.local_step}⟩\n{node.lane}\n(truncated BPTT: backward stops here)"
                picture.root.nodes.append((name, {"label": text, "style": "dashed,rounded", "color": "#888888",
                                                  "id": name}))
                picture.edges.append((name, self.names[self._cut_target(node, key)],
                                      {"style": "dashed", "color": "#888888"}))

    def _cut_target(self, marked, fallback):
        """Where the missing state went in: the op of the cut step that uses the lane's recurrent
        weight (a weight that, in the other steps, meets the previous step's state in one op);
        else the node that carries the mark."""
        graph, lane = self.graph, marked.lane
        states = {i for (l, _), roles in graph.final_states.items() if l == lane for i in roles.values()}
        recurrent = set()
        for node in graph.nodes:
            if node.lane == lane and any(p in states for p in node.parents):
                recurrent.update(p for p in node.parents if graph.nodes[p].fn is None)
        for node in graph.nodes:
            if (node.recurrent and node.lane == lane and node.local_step == marked.local_step
                    and any(p in recurrent for p in node.parents)):
                key = self.keys(node)
                if key in self.names:
                    return key
        return fallback

    def _edges(self, picture):
        graph, keys, names = self.graph, self.keys, self.names
        seen = {}
        final = keys.final
        for node in graph.nodes:
            if not keys.drawn(node):
                continue
            head = keys(node)
            if head not in names:
                continue
            for p in keys.parents(node):
                parent = graph.nodes[p]
                tail = keys(parent)
                if tail not in names:
                    continue
                recurrent = (p in final and node.recurrent and parent.lane == node.lane
                             and abs(node.local_step - parent.local_step) == 1)  # either direction
                if tail == head and not (self.options.rolled and recurrent):
                    continue
                edge = seen.get((tail, head))
                if edge is None:
                    edge = seen[(tail, head)] = {"marked": False, "param": parent.fn is None and bool(parent.param),
                                                 "recurrent": False, "ratio": None}
                edge["marked"] |= p in self.marked and node.id in self.marked
                if recurrent:
                    edge["recurrent"] = True
                    if self.norms is not None and parent.role == "h":
                        later = graph.final_states.get((node.lane, node.local_step), {}).get("h")
                        if later in self.norms and p in self.norms and self.norms[later] > 0:
                            edge["ratio"] = self.norms[p] / self.norms[later]
        for (tail, head), edge in seen.items():
            attrs = {}
            if edge["param"]:
                attrs.update(PARAM_EDGE)
                attrs["constraint"] = "false"  # (ranking them too makes dot's spline router fail on clusters)
            if edge["recurrent"]:
                attrs["weight"] = "4"
                if self.options.rolled:
                    attrs["label"] = f"×{graph.lanes.get(tail[1], 1)}"
                elif edge["ratio"] is not None:
                    attrs["label"] = f"×{edge['ratio']:.2f}"
            if edge["marked"]:
                attrs.update(PATH)
            picture.edges.append((names[tail], names[head], attrs))

    def _legend(self, picture):
        low, high = self.scale
        legend = dot.Cluster("cluster_legend", {"label": "‖∂L/∂·‖ (log scale)", "style": "rounded", "color": "#888888"})
        names = []
        for i, colour in enumerate(PALETTE):
            value = 10 ** (low + (high - low) * (i + 0.5) / len(PALETTE))
            name = f"legend{i}"
            legend.nodes.append((name, {"label": _fmt(value), "fillcolor": colour, "shape": "box", "style": "filled",
                                        "fontcolor": "white" if i >= DARK else "black", "fontsize": "8",
                                        "width": "0.4", "height": "0.2"}))
            names.append(name)
        legend.same_rank.append(names)
        picture.root.children.append(legend)
