"""The command line: draw a built-in model's graph (or a checkpoint of one) to a file.

    python -m tinygrad_rnn.viz lstm --steps 4 --loss-step 3 --highlight weight_hh_l0 -o lstm.svg
    tinygrad-rnn-viz rnn --grad-norms --detail cell --plot flow.png -o rnn.svg

`.dot` is the DOT text (no graphviz needed); `.svg`, `.png` and `.pdf` go through the `dot`
binary; `.html` (or --animate) is the self-contained player of the backward pass.
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess

from . import models
from .picture import DETAILS
from .plot import plot_grad_flow
from .render import require_dot, to_dot
from .trace import trace_backward

BINARY_FORMATS = ("svg", "png", "pdf")
FORMATS = ("dot", *BINARY_FORMATS, "html")


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parser():
    p = argparse.ArgumentParser(
        prog="tinygrad-rnn-viz",
        description="Draw the graph that backpropagation through time walks, for a built-in model "
                    f"({', '.join(models.MODELS)}) or a checkpoint of one.")
    p.add_argument("model", choices=models.MODELS)
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"the file to write; its suffix picks the format ({', '.join(FORMATS)}). "
                        "Default MODEL.svg, or MODEL.html with --animate")
    shape = p.add_argument_group("the model")
    shape.add_argument("--steps", type=_positive, help="time steps to unroll (recurrent models; default 4)")
    shape.add_argument("--layers", type=_positive, default=1, help="stacked layers (rnn, lstm, gru)")
    shape.add_argument("--bidirectional", action="store_true", help="a reverse direction too (rnn, lstm, gru)")
    shape.add_argument("--hidden", type=_positive, default=4, help="hidden size (default 4)")
    shape.add_argument("--seed", type=int, default=0, help="seed of the weights and the input (default 0)")
    shape.add_argument("--checkpoint", metavar="FILE",
                       help="load weights saved with tg.save(model.state_dict(), FILE) into the model first")
    picture = p.add_argument_group("the picture")
    picture.add_argument("--detail", choices=DETAILS,
                         help="op: every op; cell: one node per cell step; layer: one per layer and direction "
                              "per step (default op, cell with --animate)")
    picture.add_argument("--rolled", action="store_true", help="one cell with a self-loop ×T instead of the unroll")
    picture.add_argument("--highlight", metavar="PARAM",
                         help="mark the path a gradient takes from the loss to this parameter (e.g. weight_hh_l0)")
    picture.add_argument("--loss-step", type=int, metavar="T",
                         help="draw from the loss term L<T> instead of the total (recurrent models)")
    picture.add_argument("--grad-norms", action="store_true",
                         help="run backward first and colour nodes by gradient norm, recurrent edges by ratio")
    picture.add_argument("--plot", metavar="FILE.png",
                         help="also write the gradient-flow plot ‖∂L/∂h<t>‖ against t (recurrent models)")
    picture.add_argument("--window", nargs=2, type=int, metavar=("T0", "T1"),
                         help="draw steps T0..T1 in full, the rest each side as one node")
    picture.add_argument("--max-nodes", type=_positive, default=2000,
                         help="past this the picture collapses by itself (default 2000)")
    picture.add_argument("--animate", action="store_true",
                         help="write the HTML player of the backward pass (the output must be .html)")
    return p


def parse(argv=None):
    """argv -> checked argparse.Namespace (argparse's exit 2 with a message on anything wrong)."""
    p = parser()
    args = p.parse_args(argv)
    args.output = pathlib.Path(args.output or f"{args.model}.{'html' if args.animate else 'svg'}")
    args.format = args.output.suffix.lstrip(".").lower()
    if args.format not in FORMATS:
        p.error(f"-o {args.output}: the suffix picks the format, one of {', '.join('.' + f for f in FORMATS)}")
    if args.animate and args.format != "html":
        p.error(f"--animate writes an HTML page: give -o with .html, not {args.output}")
    args.animate = args.format == "html"
    args.detail = args.detail or ("cell" if args.animate else "op")
    recurrent = args.model in models.RECURRENT
    if not recurrent:
        given = [flag for flag, value in (("--steps", args.steps), ("--loss-step", args.loss_step),
                                          ("--plot", args.plot), ("--rolled", args.rolled or None))
                 if value is not None]
        if given:
            p.error(f"{args.model} has no time steps: {', '.join(given)} apply to {', '.join(models.RECURRENT)}")
    args.steps = args.steps or 4
    if args.loss_step is not None and not 0 <= args.loss_step < args.steps:
        p.error(f"--loss-step {args.loss_step}: the loss terms are L<0>..L<{args.steps - 1}>")
    if args.window is not None and not 0 <= args.window[0] <= args.window[1]:
        p.error(f"--window {args.window[0]} {args.window[1]}: needs 0 <= T0 <= T1")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        p.error(f"--plot {args.plot}: the plot is written as PNG, give a .png name")
    try:
        models.build(args.model, 1, args.layers, args.bidirectional, args.hidden)  # the layer options' checks
    except ValueError as e:
        p.error(str(e))
    args.error = p.error
    return args


def draw(args):
    """A parsed Namespace -> (root Tensor, params, trace or None, DOT text).
    Builds the model (loading --checkpoint), runs backward when a trace is asked for."""
    model, make_loss, params = models.build(args.model, args.steps, args.layers, args.bidirectional,
                                            args.hidden, args.seed, fused=False)
    if args.checkpoint is not None:
        try:
            models.load_checkpoint(model, args.checkpoint)
        except (OSError, ValueError) as e:
            args.error(f"--checkpoint: {e}")
    total, losses = make_loss()
    root = total if args.loss_step is None else losses[args.loss_step]
    trace = None
    if args.grad_norms or args.plot:
        trace = trace_backward(root, params, retain_graph=True)  # kept: the highlight walks it again
    try:
        text = to_dot(root, params, args.detail, args.rolled, args.highlight, trace if args.grad_norms else None,
                      tuple(args.window) if args.window else None, args.max_nodes, title=describe(args))
    except KeyError as e:  # an unknown --highlight: the message lists the parameter names
        args.error(f"--highlight: {e.args[0]}")
    return root, params, trace, text


def describe(args):
    """The caption's first line: what was drawn, without file names (so pictures are reproducible)."""
    what = args.model
    if args.model in models.RECURRENT:
        what += f", {args.steps} steps"
        if args.layers > 1:
            what += f", {args.layers} layers"
        if args.bidirectional:
            what += ", bidirectional"
        what += ", total loss" if args.loss_step is None else f", from L⟨{args.loss_step}⟩"
    if args.checkpoint is not None:
        what += f", weights from {pathlib.Path(args.checkpoint).name}"
    return what


def render(text, path, fmt):
    """DOT text -> svg/png/pdf at `path` through the `dot` binary."""
    result = subprocess.run([require_dot(), f"-T{fmt}", "-o", str(path)], input=text.encode("utf-8"),
                            capture_output=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {result.stderr.decode(errors='replace').strip()}")


def save_plot(trace, path):
    figure = plot_grad_flow(trace)
    # no "Software" entry: the same trace gives the same PNG bytes whatever matplotlib wrote it
    figure.savefig(path, dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(figure)


def main(argv=None):
    """The console script `tinygrad-rnn-viz` (and `python -m tinygrad_rnn.viz`). Returns 0; bad
    arguments exit 2 with argparse's message, a missing `dot` binary exits 1 saying how to install it."""
    args = parse(argv)
    root, params, trace, text = draw(args)
    try:
        if args.animate:
            try:
                from . import html
            except ImportError:  # the player ships separately from the renderer
                raise ImportError("this install of tinygrad_rnn.viz has no HTML player (viz.animate)") from None
            html.animate(root, path=str(args.output), params=params, detail=args.detail, rolled=args.rolled,
                         highlight=args.highlight, window=tuple(args.window) if args.window else None,
                         max_nodes=args.max_nodes, title=describe(args))
        elif args.format == "dot":
            args.output.write_text(text, encoding="utf-8")
        else:
            render(text, args.output, args.format)
        if args.plot:
            save_plot(trace, args.plot)
    except (RuntimeError, ImportError) as e:
        parser().exit(1, f"tinygrad-rnn-viz: error: {e}\n")
    except ValueError as e:  # plot_grad_flow: no hidden state reached (e.g. --loss-step 0 of a reverse lane)
        args.error(str(e))
    also = f" and the gradient-flow plot {args.plot}" if args.plot else ""
    print(f"wrote {args.output} ({describe(args)}, {args.detail} detail{', rolled' if args.rolled else ''}){also}")
    return 0
