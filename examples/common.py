"""What every example shares, so that each script is only its task and its model: the standard
flags (--seed, --out, --quiet, --kernels), a tqdm progress bar, saving matplotlib figures, and the one
results line printed at the end (which the smoke tests read back)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import tinygrad_rnn as tg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `from common import ...` when a script runs from anywhere


def parser(doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every example takes; the script's docstring is its help."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seeds tinygrad_rnn and numpy (default 0)")
    p.add_argument("--out", type=Path, default=HERE / "out", help="where plots and checkpoints go (examples/out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--kernels", choices=tg.jitswitch.CHOICES, default=None,
                   help="numba: the LSTM/GRU gate math and Adam as JIT kernels (needs the jit extra: "
                        "numba); default: TINYGRAD_RNN_KERNELS, else numpy")
    return p


def positive(text: str) -> int:
    """argparse type: an int of at least 1 (a size, a count of steps), refused with the flag's name."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def setup(args) -> np.random.Generator:
    """Seed everything from --seed, set the BLAS threads, make --out, and return a numpy Generator."""
    tg.manual_seed(args.seed)
    np.random.seed(args.seed)
    # One BLAS thread unless the script offers --threads: these models' matmuls are small, and on a
    # busy machine extra BLAS threads make them many times slower, not faster.
    tg.set_num_threads(getattr(args, "threads", 1))
    if getattr(args, "kernels", None):
        tg.set_kernels(args.kernels)
    if tg.get_kernels() != "numpy":  # said only when it is not the default
        print(f"kernels: {tg.get_kernels()} (the gate math and Adam's update as JIT kernels, tinygrad_rnn/jit/)")
    args.out.mkdir(parents=True, exist_ok=True)
    return np.random.default_rng(args.seed)


def progress(iterable, args, **kwargs):
    """tqdm over `iterable` (plain iteration with --quiet or without tqdm installed)."""
    if args.quiet:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, dynamic_ncols=True, mininterval=0.5, **kwargs)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (the examples only write files)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(figure, args, name: str) -> Path:
    """Write `figure` to <out>/<name>.png, close it, and return the path."""
    path = args.out / f"{name}.png"
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(figure)
    return path


def report(name: str, **results) -> dict:
    """Print the results line: `RESULT <example> {json}`; the smoke tests parse it."""
    clean = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in results.items()}  # 6 digits, any scale
    print(f"RESULT {name} {json.dumps(clean, sort_keys=True, default=str)}")
    return clean
