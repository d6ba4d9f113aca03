"""The pictures in docs/viz.md and the README are what tools/make_viz_docs.py makes today: every
image the docs show is committed, regenerating gives the same set of files, and the .dot sources
are byte for byte the committed ones (the SVG bytes depend on the graphviz version, so only their
names and that they parse are compared). After a renderer change: `make docs`, look, commit."""
import pathlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"


def referenced(doc):
    """The docs/img names a Markdown file shows or links."""
    return set(re.findall(r"\]\((?:docs/)?img/([\w.-]+)\)", (ROOT / doc).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("img")
    args = [] if shutil.which("dot") else ["--dot-only"]
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_viz_docs.py"), "--out", str(out), *args],
                   check=True, capture_output=True, timeout=300, cwd=ROOT)
    return out


def test_every_image_the_docs_show_is_committed():
    shown = referenced("docs/viz.md") | referenced("README.md")
    assert "lstm-highlight.svg" in referenced("README.md") and "grad-flow.png" in shown
    assert {name for name in shown if not (IMG / name).is_file()} == set()
    svgs = {p.name for p in IMG.glob("*.svg")}
    assert svgs - shown == set(), "pictures made but shown nowhere in docs/viz.md"


def test_regenerating_gives_the_same_files_and_the_same_dot_bytes(regenerated):
    made = {p.name for p in regenerated.iterdir()}
    committed = {p.name for p in IMG.iterdir() if p.is_file()}  # img/examples/ is make_example_figures.py's
    if shutil.which("dot") is None:
        committed = {name for name in committed if not name.endswith(".svg")}
    assert made == committed
    changed = [p.name for p in regenerated.glob("*.dot") if p.read_bytes() != (IMG / p.name).read_bytes()]
    assert changed == [], f"the renderer's output moved: run `make docs` and look at {changed}"


def test_each_svg_has_its_dot_source_and_parses(regenerated):
    if shutil.which("dot") is None:
        pytest.skip("the graphviz `dot` binary is not installed (apt-get install graphviz): only .dot compared")
    for svg in regenerated.glob("*.svg"):
        assert (regenerated / f"{svg.stem}.dot").is_file()
        texts = [t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text") if t.text]
        assert texts, svg.name
    assert (regenerated / "grad-flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
