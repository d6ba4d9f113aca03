"""make_dot and to_dot: the one entry point that ties reading, the picture and the writer
together; and the clear errors when graphviz (the package or the `dot` binary) is missing."""
from __future__ import annotations

import shutil

from ..tensor import Tensor
from . import dot, graph, picture
from .trace import Trace, dependence


def _highlight_target(highlight, params, roots):
    """A parameter name (looked up in params) or a Tensor -> the Tensor."""
    if highlight is None or isinstance(highlight, Tensor):
        return highlight
    if not isinstance(highlight, str):
        raise TypeError(f"make_dot: highlight must be a parameter name or a Tensor, got {type(highlight).__name__}")
    named = dict(params.named_parameters()) if hasattr(params, "named_parameters") else dict(params or {})
    if highlight in named:
        return named[highlight]
    matches = [name for name in named if name.endswith("." + highlight)]
    if len(matches) == 1:
        return named[matches[0]]
    known = ", ".join(named) or "none: pass params=dict(model.named_parameters())"
    raise KeyError(f"make_dot: highlight={highlight!r} names no parameter (known: {known})")


def to_dot(root, params=None, detail="op", rolled=False, highlight=None, trace=None, window=None, max_nodes=2000,
           rankdir="LR", title=None):
    """The DOT text of the graph that computed `root` (a Tensor or a list of them; a highlighted
    path starts at the first). Needs neither the graphviz package nor the `dot` binary.
    Arguments as make_dot."""
    return build(root, params, detail, rolled, highlight, trace, window, max_nodes, rankdir, title)[0]


def build(root, params=None, detail="op", rolled=False, highlight=None, trace=None, window=None, max_nodes=2000,
          rankdir="LR", title=None):
    """(DOT text, {walk id of a graph node: the DOT name of the node it is drawn as}): what the HTML
    player needs to light up the drawn nodes in the order backward visited the graph's."""
    options = picture.Options(detail, rolled, window, max_nodes, rankdir)
    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    for r in roots:
        if not isinstance(r, Tensor):
            raise TypeError(f"make_dot: root must be a Tensor or a list of Tensors, got {type(r).__name__}")
    if trace is not None and not isinstance(trace, Trace):
        raise TypeError(f"make_dot: trace must come from viz.trace_backward, got {type(trace).__name__}")
    read = graph.read(roots, params)
    marked, exact = set(), True
    target = _highlight_target(highlight, params, roots)
    if target is not None:
        marked, exact = dependence(read, roots[0], target)
    norms = None
    if trace is not None:  # the trace walked its own graph: match nodes by what they are, not by id
        norms = {}
        for node in read.nodes:
            value = trace.norm_of(node.fn if node.fn is not None else node.leaf)
            if value is not None:
                norms[node.id] = value
    builder = picture.Builder(read, options, marked, norms, exact, title)
    text = dot.write(builder.build())
    drawn = {}
    for node in read.nodes:
        key = builder.keys(node if not node.folded else read.nodes[graph.resolve(read.nodes, node.id)])
        if key in builder.names:
            drawn[node.id] = builder.names[key]
    return text, drawn


def make_dot(root, params=None, detail="op", rolled=False, highlight=None, trace=None, window=None, max_nodes=2000,
             rankdir="LR", title=None):
    """The unrolled graph that computed `root`, as a `graphviz.Digraph` (shown inline in Jupyter;
    `.render("bptt", format="svg")` writes a file).

    Args:
        root: a Tensor (the loss, or one loss term L<t>) or a list of Tensors, all drawn; a
            highlighted path starts at the first.
        params: dict(model.named_parameters()) or the model: parameters are labelled with their names.
        detail: "op" (every op; cell nodes named i_t, f_t, g_t, o_t, c_t, h_t / r_t, z_t, n_t),
            "cell" (one node per cell step, its h and c kept), "layer" (one node per layer and
            direction per step, and per scope elsewhere).
        rolled: one node per cell with a self-loop labelled ×T, the recurrence as drawn in lecture notes.
        highlight: a parameter name ("weight_hh_l0") or a Tensor: the nodes and edges a gradient from
            root really passes through on its way there get class="bptt-path" (red).
        trace: from viz.trace_backward(loss): nodes coloured by gradient norm (log scale, with a
            legend), recurrent edges labelled ‖∂L/∂h⟨t−1⟩‖ / ‖∂L/∂h⟨t⟩‖.
        window: (t0, t1): those steps in full, the rest each side one "… k steps …" node.
        max_nodes: past it the picture collapses by itself (op -> cell -> layer -> a window of the
            last steps) and says so in its caption.
        rankdir: graphviz's "LR" (time left to right), "TB", ...
    """
    dot_text = to_dot(root, params, detail, rolled, highlight, trace, window, max_nodes, rankdir, title)
    return source(dot_text)


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise ImportError("viz.make_dot needs the graphviz Python package: pip install 'tinygrad_rnn[viz]' "
                          "(viz.to_dot gives the DOT text without it)") from None
    return graphviz


def require_dot():
    """The `dot` binary's path, or a clear error naming the package that provides it."""
    path = shutil.which("dot")
    if path is None:
        raise RuntimeError("the graphviz `dot` program is not on PATH: install the system package "
                           "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
                           "conda: conda install graphviz). viz.to_dot writes DOT text without it.")
    return path


def source(dot_text, name="bptt"):
    """DOT text from dot.write -> a graphviz.Digraph holding it, whose render and pipe check
    for the `dot` binary first and say how to install it (graphviz's own error names no package)."""
    graphviz = _graphviz()

    class Digraph(graphviz.Digraph):
        def render(self, *args, **kwargs):
            require_dot()
            return super().render(*args, **kwargs)

        def pipe(self, *args, **kwargs):
            require_dot()
            return super().pipe(*args, **kwargs)

    digraph = Digraph(name=name)
    lines = dot_text.splitlines(keepends=True)
    digraph.body = lines[1:-1]  # between "digraph name {" and "}": graphviz writes those itself
    if digraph.source != dot_text:
        raise AssertionError("viz: graphviz.Digraph would change the DOT text")  # a graphviz version we do not know
    return digraph
