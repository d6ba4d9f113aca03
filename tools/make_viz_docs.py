"""Regenerate the pictures in docs/viz.md (and the README's): every one is a command line of the
renderer's CLI (or, for the truncated-BPTT cut, a few lines of the API), written as a .dot source
and the SVG that `dot` draws from it, plus the gradient-flow plot as PNG. `make docs` runs this.

    .venv/bin/python tools/make_viz_docs.py [--out docs/img] [--dot-only]

Deterministic: the same renderer gives the same .dot bytes (and, with the same graphviz and
matplotlib, the same SVG and PNG bytes) on every run.
"""
import argparse
import contextlib
import io
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tinygrad_rnn as tg  # noqa: E402
from tinygrad_rnn import nn, viz  # noqa: E402
from tinygrad_rnn.viz import cli  # noqa: E402

# picture name -> the CLI's arguments (docs/viz.md shows each command next to its picture)
PICTURES = {
    "mlp": ["mlp"],
    "bn-mlp": ["bn-mlp"],
    "rnn": ["rnn"],
    "lstm-op": ["lstm", "--detail", "op"],
    "lstm-cell": ["lstm", "--detail", "cell"],
    "lstm-layer": ["lstm", "--detail", "layer"],
    "gru": ["gru"],
    "jordan": ["jordan"],
    "lstm-rolled": ["lstm", "--rolled"],
    "rnn-highlight": ["rnn", "--loss-step", "3", "--highlight", "weight_hh_l0"],
    "lstm-highlight": ["lstm", "--loss-step", "3", "--highlight", "weight_hh_l0", "--detail", "cell"],
    "rnn-grad-norms": ["rnn", "--grad-norms", "--detail", "cell"],
    "rnn-window": ["rnn", "--steps", "8", "--window", "3", "5", "--detail", "cell"],
}
PLOT = ("grad-flow.png", ["lstm", "--layers", "2", "--bidirectional", "--detail", "layer"])


def truncated_bptt():
    """Two chunks of truncated BPTT: the second starts from the first's detached state."""
    tg.manual_seed(0)
    rnn = nn.RNN(3, 4)
    x = tg.randn(4, 2, 3)
    with nn.fused(False):  # op by op, as the command line draws its models
        _, h = rnn(x[:2])
        out, _ = rnn(x[2:], h.detach())
    return viz.to_dot(out.pow(2).mean(), params=rnn, detail="cell", title="rnn, second chunk of 2 steps")


def generate(out, dot_only=False):
    """Write every picture under `out`; returns the names written, sorted."""
    out.mkdir(parents=True, exist_ok=True)
    sources = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the CLI's "wrote ..." lines, one per picture
        for name, argv in PICTURES.items():
            cli.main(argv + ["-o", str(out / f"{name}.dot")])
            sources[name] = (out / f"{name}.dot").read_text(encoding="utf-8")
        plot_name, plot_argv = PLOT
        cli.main(plot_argv + ["--plot", str(out / plot_name), "-o", str(out / "lstm-2x2-layer.dot")])
    sources["lstm-2x2-layer"] = (out / "lstm-2x2-layer.dot").read_text(encoding="utf-8")
    sources["rnn-truncated"] = truncated_bptt()
    written = [plot_name]
    for name, text in sources.items():
        (out / f"{name}.dot").write_text(text, encoding="utf-8")
        written.append(f"{name}.dot")
        if not dot_only:
            cli.render(text, out / f"{name}.svg", "svg")
            written.append(f"{name}.svg")
    return sorted(written)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "img")
    p.add_argument("--dot-only", action="store_true", help="write the .dot sources only (no `dot` binary needed)")
    args = p.parse_args(argv)
    written = generate(args.out, args.dot_only)
    print(f"wrote {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
