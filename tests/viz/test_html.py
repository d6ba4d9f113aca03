"""viz.animate, the HTML player of the backward pass: the page's structure without a browser (self
contained, its data matching an independent trace of the same model and the SVG it lights up),
then the page in a real headless Chromium: play pressed, the lit set changes, no script error."""
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import viz
from tinygrad_rnn.viz import render

from .models import rnn_cell_loop, sequence_layer

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the graphviz `dot` binary is not installed (Debian: apt-get install graphviz)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="no chromium on PATH (Debian: apt-get install chromium); CI must run this")
SVG = "{http://www.w3.org/2000/svg}"


def cell_loop():
    _, total, params, *_ = rnn_cell_loop(steps=3)
    return total, params


def lstm_layer():
    loss, _, params, _ = sequence_layer("LSTM", steps=3)
    return loss, params


MODELS = {"rnn_cell_loop": cell_loop, "lstm": lstm_layer}


def data_of(page):
    match = re.search(r'<script type="application/json" id="bptt-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def svg_nodes(page):
    """{id: <g class="node"> element} of the page's inline SVG (dot's output is XML)."""
    svg = ElementTree.fromstring(re.search(r"<svg.*</svg>", page, re.S).group(0))
    return {g.get("id"): g for g in svg.iter(f"{SVG}g") if "node" in g.get("class", "").split()}


@needs_dot
@pytest.mark.parametrize("model,detail", [("rnn_cell_loop", "cell"), ("rnn_cell_loop", "op"), ("lstm", "cell"),
                                          ("lstm", "layer")])
def test_page_is_self_contained_and_its_data_matches_an_independent_trace(tmp_path, model, detail):
    loss, params = MODELS[model]()
    path = tmp_path / "bptt.html"
    assert viz.animate(loss, path, params=params, detail=detail) == str(path)
    page = path.read_text(encoding="utf-8")

    # nothing fetched from anywhere: the only URLs are the SVG's namespace names
    without_namespaces = re.sub(r'\sxmlns(?::\w+)?="[^"]*"', "", page)
    assert "http://" not in without_namespaces and "https://" not in without_namespaces
    for link in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
        assert link.startswith(("data:", "#")), link
    assert "<link" not in page and "@import" not in page

    data = data_of(page)
    order, visits, norms = data["order"], data["visits"], data["norms"]
    # the same seeded model traced on its own: its walk ids are the page's (walks are deterministic)
    again, again_params = MODELS[model]()
    trace = viz.trace_backward(again, again_params)
    _, drawn = render.build(again, again_params, detail=detail, trace=trace)
    visited = {drawn[i] for i in trace.order if i in drawn}
    assert len(order) == len(set(order)) == len(visited)
    assert set(order) == visited
    assert norms == [trace.norms[i] for i in visits]
    assert [drawn[i] for i in visits] == order

    nodes = svg_nodes(page)
    assert set(order) <= set(nodes)
    for name in order:  # the status line shows what the node says, less the norm it shows itself
        drawn_lines = ["".join(t.itertext()) for t in nodes[name].iter(f"{SVG}text")]
        assert data["labels"][name].split("\n") == [line for line in drawn_lines if not line.startswith("‖∇‖")]
    assert data["labels"][order[0]] == "L ()" and norms[0] == 1.0  # backward starts at the loss, ∂L/∂L = 1
    # a parameter lights up once its gradient, summed over the steps, is complete: it is .grad
    named_nodes = {data["labels"][name].split(" ")[0]: k for k, name in enumerate(order)}
    for name, parameter in params.items():
        assert norms[named_nodes[name]] == pytest.approx(float(np.linalg.norm(parameter.grad.numpy())), rel=1e-5)


@needs_dot
def test_labels_and_title_cannot_break_out_of_the_page(tmp_path):
    loss, params = cell_loop()
    hostile = "</script><script>alert(1)</script><!--"
    params = {hostile + name: p for name, p in params.items()}
    page = tmp_path / "bptt.html"
    viz.animate(loss, page, params=params, title="a < b & " + hostile)
    text = page.read_text(encoding="utf-8")
    # the error catcher, the data, the player: nothing else opens or closes a script
    assert text.count("<script") == text.count("</script>") == 3
    assert any(label.startswith(hostile) for label in data_of(text)["labels"].values())
    assert "<title>a &lt; b &amp; &lt;/script&gt;" in text


@needs_dot
def test_an_exploding_gradient_is_shown_as_inf(tmp_path):
    x = tg.tensor([1e30, 1.0], requires_grad=True)  # float32: ∂(x³)/∂x = 3e60 overflows
    viz.animate((x ** 3).sum(), tmp_path / "bptt.html", params={"x": x})
    data = data_of((tmp_path / "bptt.html").read_text(encoding="utf-8"))  # strict JSON: no bare Infinity
    assert data["norms"][-1] == "inf" and data["labels"][data["order"][-1]] == "x (2,)"


def test_missing_dot_binary_is_a_clear_error_before_backward(tmp_path, monkeypatch):
    loss, params = cell_loop()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        viz.animate(loss, tmp_path / "bptt.html", params=params)
    assert not (tmp_path / "bptt.html").exists()
    assert all(p.grad is None for p in params.values())  # nothing ran: the graph can still be drawn


# ---- in a real browser ---------------------------------------------------------------------

def chromium(tmp_path, url, *flags):
    """Headless Chromium on url -> (stdout, stderr). Virtual time lets the player run to its end
    in well under a second of real time."""
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--no-first-run", "--hide-scrollbars", "--window-size=1200,800",
               "--virtual-time-budget=30000", *flags, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def lit(dom):
    """(visited ids, current ids, the status line, the errors the page caught) in a dumped DOM."""
    classes = dict(re.findall(r'<g id="(n\w+)" class="([^"]*)"', dom))
    visited = {name for name, c in classes.items() if "visited" in c.split()}
    current = {name for name, c in classes.items() if "current" in c.split()}
    status = re.search(r'<p id="status">(.*?)</p>', dom, re.S).group(1)
    errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S).group(1)
    return visited, current, status, errors


@pytest.fixture(scope="module")
def player(tmp_path_factory):
    loss, params = cell_loop()
    path = tmp_path_factory.mktemp("player") / "bptt.html"
    viz.animate(loss, path, params=params)
    return path, data_of(path.read_text(encoding="utf-8"))


@needs_dot
@needs_chromium
def test_play_in_headless_chromium_lights_every_node_in_visiting_order(player, tmp_path):
    path, data = player
    order, total = data["order"], len(data["order"])
    before, before_log = chromium(tmp_path, path.as_uri(), "--dump-dom")
    visited, current, status, errors = lit(before)
    assert visited == set() and current == set() and status.startswith(f"step 0 of {total}")

    middle, middle_log = chromium(tmp_path, path.as_uri() + "#step=5", "--dump-dom")
    visited, current, status, errors_middle = lit(middle)
    assert visited == set(order[:5]) and current == {order[4]} and status.startswith(f"step 5 of {total}: ")

    after, after_log = chromium(tmp_path, path.as_uri() + "#autoplay&interval=20", "--dump-dom")
    visited, current, status, errors_after = lit(after)
    assert visited == set(order) and current == {order[-1]}  # played to the end, by the play button
    assert status.startswith(f"step {total} of {total}: ") and "‖∂L/∂·‖ = " in status
    assert '<button id="play" type="button">▶ Play</button>' in after  # and paused itself there
    assert errors == errors_middle == errors_after == ""
    assert not [line for line in (before_log + middle_log + after_log).splitlines() if "Uncaught" in line]


@needs_dot
@needs_chromium
def test_screenshots_before_and_after_play_differ(player, tmp_path):
    path, _ = player
    shots = []
    for name, url in (("before", path.as_uri()), ("after", path.as_uri() + "#autoplay&interval=20")):
        shot = tmp_path / f"{name}.png"
        _, log = chromium(tmp_path, url, f"--screenshot={shot}")
        assert "Uncaught" not in log
        shots.append(shot.read_bytes())
    assert all(shot.startswith(b"\x89PNG") and len(shot) > 10_000 for shot in shots)
    assert shots[0] != shots[1]


@needs_dot
@needs_chromium
def test_the_browser_checks_do_see_a_script_error(player, tmp_path):
    """The two error checks above are not vacuous: a page whose data does not parse trips both."""
    path, _ = player
    page = path.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'(id="bptt-data">)\{', r"\1{,", page, count=1), encoding="utf-8")
    dom, log = chromium(tmp_path, broken.as_uri() + "#autoplay", "--dump-dom")
    assert "SyntaxError" in lit(dom)[3]
    assert any("Uncaught" in line for line in log.splitlines())
