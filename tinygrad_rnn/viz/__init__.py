"""Rendering the graph that BPTT walks: `make_dot` / `to_dot` (the unrolled graph, grouped by
time step, layer and direction; a highlighted gradient path; gradient norms from a trace),
`trace_backward` (norms and visiting order through hooks), `plot_grad_flow`, `animate` (a
self-contained HTML player of the backward pass) and `check_truncation`.

Building DOT text needs nothing beyond numpy; `make_dot` needs the graphviz package
(pip install 'tinygrad_rnn[viz]') and rendering it the `dot` binary (apt-get install graphviz).
"""
from .html import animate
from .plot import plot_grad_flow
from .render import make_dot, require_dot, to_dot
from .trace import Trace, check_truncation, trace_backward

__all__ = ["make_dot", "to_dot", "trace_backward", "Trace", "check_truncation", "plot_grad_flow", "require_dot",
           "animate"]
