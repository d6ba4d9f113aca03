"""Golden DOT files for small models at every detail level, rolled and highlighted: the renderer's
output is byte-identical to what was reviewed. After an intended change, regenerate with
    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/viz/test_golden.py
and look at the diff (and at `dot -Tsvg` of the files) before committing.
Also: the real `dot` binary renders them to SVG that holds the labels and the bptt-path class."""
import os
import pathlib
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tinygrad_rnn import viz

from .models import mlp, rnn_cell_loop, sequence_layer

GOLDEN = pathlib.Path(__file__).parent / "golden"


def _lstm(**kwargs):
    loss, output, params, layer = sequence_layer("LSTM", steps=3)
    return viz.to_dot(loss, params=params, **kwargs)


def _lstm_fused():
    loss, output, params, layer = sequence_layer("LSTM", steps=3, fused=True)
    return viz.to_dot(loss, params=params, detail="op")


def _rnn(**kwargs):
    loss, output, params, layer = sequence_layer("RNN", steps=3)
    return viz.to_dot(loss, params=params, **kwargs)


def _cell_loop_highlight():
    losses, total, params, *_ = rnn_cell_loop(steps=4)
    return viz.to_dot([losses[3], total], params=params, highlight="cell.weight_hh")


CASES = {
    "mlp": lambda: viz.to_dot(mlp()[0], params=mlp()[1]),
    "bn_mlp": lambda: viz.to_dot(*mlp(batch_norm=True)),
    "rnn_t3": _rnn,
    "rnn_t3_highlight": lambda: _rnn(highlight="weight_hh_l0"),
    "lstm_t3_op": lambda: _lstm(detail="op"),
    "lstm_t3_fused_op": _lstm_fused,
    "lstm_t3_cell": lambda: _lstm(detail="cell"),
    "lstm_t3_layer": lambda: _lstm(detail="layer"),
    "lstm_t3_rolled": lambda: _lstm(rolled=True),
    "rnncell_loop_l3_highlight": _cell_loop_highlight,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dot_equals_the_golden_file(name):
    text = CASES[name]()
    path = GOLDEN / f"{name}.dot"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz `dot` binary is not installed "
                               "(apt-get install graphviz); CI installs it")


def _svg(text):
    out = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True, check=True, timeout=60)
    assert out.stderr.decode().strip() == "", out.stderr.decode()  # no warnings from dot either
    return ET.fromstring(out.stdout)


def _texts(root):
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]


@needs_dot
@pytest.mark.parametrize("name", sorted(CASES))
def test_dot_binary_renders_svg_holding_the_labels(name):
    root = _svg(CASES[name]())
    texts = _texts(root)
    if name.startswith("lstm"):
        assert any(t.startswith("lstm.weight_hh_l0") for t in texts)
    if name == "lstm_t3_op":
        assert any(t.startswith("f⟨2⟩") for t in texts) and "t2" in texts
    if name == "rnncell_loop_l3_highlight":
        classes = [g.get("class", "") for g in root.iter("{http://www.w3.org/2000/svg}g")]
        assert sum("bptt-path" in c for c in classes) > 10  # nodes and edges of the path, in the SVG
    if name == "bn_mlp":
        assert any(t.startswith("1.weight") for t in texts)  # the BatchNorm's weight, by its name


def test_make_dot_returns_a_digraph_with_the_same_text():
    graphviz = pytest.importorskip("graphviz")
    loss, params = mlp()
    graph = viz.make_dot(loss, params=params)
    assert isinstance(graph, graphviz.Digraph)
    assert graph.source == viz.to_dot(loss, params=params)
    assert "image/svg+xml" in graph._repr_mimebundle_()  # shown inline in Jupyter


def test_missing_graphviz_package_says_what_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_graphviz(name, *args, **kwargs):
        if name == "graphviz":
            raise ImportError("No module named 'graphviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_graphviz)
    loss, params = mlp()
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_rnn\[viz\]'"):
        viz.make_dot(loss, params=params)
    assert viz.to_dot(loss, params=params).startswith("digraph")  # DOT text needs no graphviz


def test_missing_dot_binary_names_the_system_package(monkeypatch, tmp_path):
    pytest.importorskip("graphviz")
    loss, params = mlp()
    graph = viz.make_dot(loss, params=params)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz") as error:
        graph.render(tmp_path / "g", format="svg")
    assert "brew install graphviz" in str(error.value) and "to_dot" in str(error.value)
