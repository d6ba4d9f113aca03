"""The documentation site builds in strict mode (a broken link, a missing page or image, or an API
reference to a name that does not exist fails it), its pages' snippets run, the docstring examples
of the API reference run, and every example page's figures are committed. Nothing here runs the
examples themselves: their figures are committed, and only `make docs` regenerates them."""
import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the modules whose docstrings carry examples; mkdocstrings shows them on the API pages
DOCTESTED = ["tinygrad_rnn.nn.layers", "tinygrad_rnn.nn.losses", "tinygrad_rnn.nn.module", "tinygrad_rnn.data",
             "tinygrad_rnn.serialization", "tinygrad_rnn.optim.optimizer", "tinygrad_rnn.optim.sgd",
             "tinygrad_rnn.optim.adam", "tinygrad_rnn.optim.lbfgs", "tinygrad_rnn.optim.lr_scheduler",
             "tinygrad_rnn.nn.rnn", "tinygrad_rnn.nn.cells"]


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]' (make test does)")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed: "
                        "pip install -e '.[docs]'")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-6000:]
    assert (site / "index.html").is_file()
    # mkdocstrings rendered the docstrings, not just the headings
    assert "hidden_size" in (site / "api" / "rnn.html").read_text(encoding="utf-8")
    assert "in_features" in (site / "api" / "nn.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", ["index.md", "tour.md", "bptt.md"])
def test_page_snippets_run_in_order(page, tmp_path, monkeypatch):
    """A page's python blocks, run one after another in one namespace, as a reader pastes them."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)  # the tour writes a checkpoint
    namespace = {}
    for code in blocks:
        exec(compile(code, page, "exec"), namespace)


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module):
    tg.manual_seed(0)
    globs = {"tg": tg, "nn": nn, "optim": optim, "F": nn.functional}
    result = doctest.testmod(importlib.import_module(module), extraglobs=globs, optionflags=doctest.ELLIPSIS,
                             report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {module} fail"


def test_every_example_page_shows_committed_figures_and_a_result():
    pages = [p for p in sorted((DOCS / "examples").glob("*.md")) if p.stem != "index"]
    gallery = (DOCS / "examples" / "index.md").read_text(encoding="utf-8")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert f"python examples/{page.stem}.py" in text, page.name
        assert (ROOT / "examples" / f"{page.stem}.py").is_file(), page.name
        assert f"]({page.name})" in gallery, f"{page.name} is not listed in docs/examples/index.md"
        shown = re.findall(r"\]\(\.\./img/examples/([\w./-]+)\)", text)
        assert shown, f"{page.name} shows no figure: run `make docs`"
        assert all((DOCS / "img" / "examples" / name).is_file() for name in shown), page.name
        assert re.search(rf"RESULT {page.stem} \{{", text), f"{page.name} has no measured result: run `make docs`"
