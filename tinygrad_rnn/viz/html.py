"""viz.animate: one self-contained HTML page that replays the backward pass on the drawn graph,
lighting each node up in the order backward reached it, with its gradient norm. The SVG, the
stylesheet, the data and the script are all inline: the file opens from disk, with no server and
no network."""
from __future__ import annotations

import html
import json
import math
import os
import subprocess
import xml.etree.ElementTree as ElementTree

from . import graph as graph_module
from . import render
from .trace import trace_backward

EXPLANATION = "BPTT walking back through time: each node lights up when its gradient is computed."
_SVG = "{http://www.w3.org/2000/svg}"
_NORM_LINE = "‖∇‖ "  # picture.py appends the node's largest norm as a label line; the page shows the visit's own


def animate(loss, path="bptt.html", params=None, detail="cell", **make_dot_kwargs):
    """Run backward from `loss` (gradients land in .grad, as viz.trace_backward does) and write
    to `path` one HTML file that steps through it: a slider, play/pause and step buttons light
    up the drawn nodes in the order backward visited them, showing each one's ‖∂L/∂·‖.

    Args:
        loss: the Tensor backward starts from (or a list of them).
        path: where the page is written. Returned.
        params: dict(model.named_parameters()) or the model, so parameters carry their names.
        detail: "op", "cell" or "layer", as make_dot.
        make_dot_kwargs: the rest of make_dot's arguments (rolled, highlight, window, max_nodes,
            rankdir, title); the trace is this function's own.

    Opening the file with "#autoplay" (and "&interval=<ms>" per step, "&step=<k>" to start at
    step k) presses play on load: what the browser tests use."""
    render.require_dot()  # before backward: a missing binary should not cost the graph its saved arrays
    trace = trace_backward(loss, params)
    dot_text, drawn = render.build(loss, params, detail=detail, trace=trace, **make_dot_kwargs)
    svg = _render_svg(dot_text)
    labels = _node_labels(svg)
    data = _steps(trace, graph_module.read(loss, params), drawn, labels)
    page = _page(svg, data, make_dot_kwargs.get("title"))
    with open(path, "w", encoding="utf-8") as file:
        file.write(page)
    return os.fspath(path)


def _render_svg(dot_text):
    result = subprocess.run([render.require_dot(), "-Tsvg"], input=dot_text.encode("utf-8"), capture_output=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"viz.animate: dot -Tsvg failed ({result.returncode}): "
                           f"{result.stderr.decode('utf-8', 'replace').strip()}")
    svg = result.stdout.decode("utf-8")
    # the XML prolog and DOCTYPE (which names a DTD by URL) have no place inside an HTML page
    return svg[svg.index("<svg"):]


def _node_labels(svg):
    """{DOT name: the label as drawn, lines joined by newlines} for every node in the SVG."""
    labels = {}
    for group in ElementTree.fromstring(svg).iter(f"{_SVG}g"):
        if "node" in group.get("class", "").split():
            lines = ["".join(text.itertext()) for text in group.iter(f"{_SVG}text")]
            labels[group.get("id")] = "\n".join(line for line in lines if not line.startswith(_NORM_LINE))
    return labels


def _steps(trace, read, drawn, labels):
    """{"order": drawn node names, "visits": the trace's walk ids, "norms": trace.norms of those,
    "labels": {name: label}}: each drawn node once, at the first visit that reaches it (a cell step
    drawn as one node is reached op by op, and not always in one run). A view of a parameter is
    drawn as the parameter, but backward reaches the view at each use: the parameter lights up at
    its own (last) visit, when its gradient summed over the steps is complete. The trace and `drawn`
    come from two walks of the graph, so nodes are matched by what they are, not by id."""
    walk_id = {id(node.fn if node.fn is not None else node.leaf): node.id for node in read.nodes}
    order, visits, norms, seen = [], [], [], set()
    for i in trace.order:
        node = trace.graph.nodes[i]
        if node.folded:
            continue
        name = drawn.get(walk_id.get(id(node.fn if node.fn is not None else node.leaf)))
        if name is None or name not in labels or name in seen:
            continue
        seen.add(name)
        order.append(name)
        visits.append(i)
        norm = trace.norms[i]
        norms.append(norm if math.isfinite(norm) else str(norm))  # JSON has no inf or nan; the page prints "inf"
    return {"order": order, "visits": visits, "norms": norms, "labels": {name: labels[name] for name in order}}


def _script_json(data):
    """JSON that cannot end its <script> element: every "<" (so "</script" and "<!--") escaped."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, sort_keys=True).replace("<", "\\u003c")


def _page(svg, data, title):
    heading = html.escape(title or "Backpropagation through time, step by step")
    total = len(data["order"])
    return _TEMPLATE.format(title=heading, explanation=html.escape(EXPLANATION), total=total,
                            svg=svg, data=_script_json(data), style=_STYLE, script=_SCRIPT)


_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1400px; margin: 0 auto; padding: 1rem 1.5rem 2rem; }
h1 { font-size: 1.35rem; margin: 0 0 .2rem; }
.lead { margin: 0 0 .9rem; color: #555; }
.controls { position: sticky; top: 0; z-index: 1; background: #fff; padding: .3rem 0;
            display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.controls input[type=range] { flex: 1; min-width: 12rem; }
button { font: inherit; padding: .3rem .85rem; border: 1px solid #bbb; border-radius: 6px; background: #f6f6f6;
         cursor: pointer; }
button:hover { background: #ececec; }
#status { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; margin: .6rem 0;
          min-height: 1.5em; white-space: pre-wrap; }
#graph { border: 1px solid #e3e3e3; border-radius: 8px; padding: .5rem; overflow: auto; }
/* the whole graph in view at once, so the walk back through time can be followed without scrolling */
#graph svg { display: block; width: 100%; height: auto; max-height: calc(100vh - 11rem); }
#graph.full-size svg { width: auto; max-height: none; }
/* nodes backward has not reached yet are faded, so the visited ones stand out as it walks back */
g.node.pending { opacity: .3; }
g.node { transition: opacity .15s; }
g.node.visited polygon, g.node.visited ellipse, g.node.visited path { stroke: #2166ac; stroke-width: 2; }
g.node.current polygon, g.node.current ellipse, g.node.current path { stroke: #2166ac; stroke-width: 4; }
g.node.current { filter: drop-shadow(0 0 5px #2166ac); }
#errors:empty { display: none; }
#errors { color: #b00; }
"""

# The controls all go through show(k); #autoplay clicks the play button, so the browser test
# presses the same button a person does.
_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bptt-data").textContent);
  var order = data.order, total = order.length;
  var nodes = order.map(function (name) { return document.getElementById(name); });
  var slider = document.getElementById("slider"), play = document.getElementById("play");
  var status = document.getElementById("status");
  var options = new URLSearchParams(location.hash.slice(1));
  var interval = Number(options.get("interval")) || 600;
  var step = 0, timer = null;

  function fmt(norm) { return typeof norm === "number" ? norm.toPrecision(3) : String(norm); }

  function show(k) {
    step = Math.max(0, Math.min(total, k));
    nodes.forEach(function (node, i) {
      node.classList.toggle("visited", i < step);
      node.classList.toggle("current", i === step - 1);
      node.classList.toggle("pending", i >= step);
    });
    slider.value = step;
    var text = "step " + step + " of " + total;
    if (step === 0) {
      text += ": press play; backward starts at the loss";
    } else {
      var name = order[step - 1];
      nodes[step - 1].scrollIntoView({block: "nearest", inline: "nearest"});
      text += ": " + data.labels[name].split("\n").join(" · ") +
              "   ‖∂L/∂·‖ = " + fmt(data.norms[step - 1]);
    }
    status.textContent = text;
  }

  function pause() {
    clearInterval(timer);
    timer = null;
    play.textContent = "▶ Play";
  }

  play.addEventListener("click", function () {
    if (timer !== null) { pause(); return; }
    if (step >= total) show(0);
    play.textContent = "❚❚ Pause";
    timer = setInterval(function () {
      show(step + 1);
      if (step >= total) pause();
    }, interval);
  });
  document.getElementById("back").addEventListener("click", function () { pause(); show(step - 1); });
  document.getElementById("forward").addEventListener("click", function () { pause(); show(step + 1); });
  document.getElementById("zoom").addEventListener("click", function () {
    var full = document.getElementById("graph").classList.toggle("full-size");
    this.textContent = full ? "Fit to window" : "Full size";
  });
  slider.addEventListener("input", function () { pause(); show(Number(slider.value)); });
  document.addEventListener("keydown", function (event) {
    if (event.target === slider) return;
    if (event.key === "ArrowLeft") document.getElementById("back").click();
    else if (event.key === "ArrowRight") document.getElementById("forward").click();
    else if (event.key === " ") { event.preventDefault(); play.click(); }
  });

  slider.max = total;
  show(Number(options.get("step")) || 0);
  if (options.has("autoplay")) play.click();
})();
"""

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<pre id="errors"></pre>
<script>
// first, so a failure anywhere below is shown on the page (and in the DOM a headless browser dumps)
window.onerror = function (message, source, line) {{
  document.getElementById("errors").textContent += message + " (line " + line + ")\n";
}};
</script>
<h1>{title}</h1>
<p class="lead">{explanation}</p>
<div class="controls">
<button id="back" type="button" aria-label="step back">&#9664; Back</button>
<button id="play" type="button">&#9654; Play</button>
<button id="forward" type="button" aria-label="step forward">Forward &#9654;</button>
<button id="zoom" type="button">Full size</button>
<input id="slider" type="range" min="0" max="{total}" value="0" aria-label="step of the backward pass">
</div>
<p id="status">step 0 of {total}</p>
<div id="graph">
{svg}
</div>
<script type="application/json" id="bptt-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
