"""Peak traced memory (tracemalloc) of one char-LSTM training step, tinygrad_rnn against the
hand-written numpy LSTM, at hidden 512 and several sequence lengths.

    python benchmarks/memory.py [--hidden 512] [--seq 64 256]

The step is rnn.py's (vocab 65, batch 32, Adam, clip 5, float32), run once untraced first so
that the optimiser's state exists before the measured step. Goal: within 1.3x of numpy, linear in
T; and nothing saved for backward outlives the backward pass (what a step leaves held is printed,
apart from the free buffers tinygrad_rnn.buffers keeps for the next step, as torch's caching
allocator keeps its blocks; tg.buffers.set_limit(0) turns that off).
"""
import argparse
import gc
import tracemalloc

import numpy as np
import rnn
from common import banner, blas_threads, under

import tinygrad_rnn as tg

MIB = 2 ** 20


def peak_mib(step):
    """MiB above what was held before the step, at the step's peak; what the step left held; and what
    tinygrad_rnn's buffer cache keeps, free, for the next step. The cache is emptied first, so that
    the step's buffers count in its peak as if made fresh (a warm cache would hide them in `before`)."""
    step()  # optimiser state
    gc.collect()
    tg.buffers.empty_cache()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    step()
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cached = tg.buffers.cached_bytes()[1]
    return (peak - before) / MIB, (after - before - cached) / MIB, cached / MIB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    banner(blas_threads(), None)
    print(f"peak traced MiB of one char-LSTM training step, hidden {args.hidden}, batch {rnn.BATCH}")
    print(f"  {'seq':>5s} {'numpy manual':>13s} {'tinygrad_rnn':>13s} {'op-by-op':>10s} {'ratio':>7s}  "
          "left held (cached free for the next step)")
    for steps in args.seq:
        tg.manual_seed(0)
        inputs, targets = rnn.make_data(np.random.default_rng(0), steps=steps)
        ours, model = rnn.tinygrad_step(args.hidden, inputs, targets)
        floor = peak_mib(rnn.numpy_step(rnn.numpy_params(model), inputs, targets))[0]
        fused, held, cached = peak_mib(ours)
        plain = peak_mib(under(lambda: tg.nn.fused(False), ours))[0]
        print(f"  {steps:5d} {floor:13.1f} {fused:13.1f} {plain:10.1f} {fused / floor:6.2f}x  "
              f"{held:.2f} MiB ({cached:.0f} MiB)")


if __name__ == "__main__":
    main()
