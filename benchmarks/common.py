"""What every benchmark here shares: its standard flags, the machine banner, thread control, a warm
heap for everyone, and interleaved timing."""
import argparse
import ctypes
import os
import platform
import time

import numpy as np


def parser(doc, steps):
    """An ArgumentParser with --steps (default `steps`), --warmup and --threads; `doc` is its help."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=steps, help="timed training steps per implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before each block of 5")
    p.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: numpy's)")
    p.add_argument("--no-jit", action="store_true", help="leave out the tg.kernels('numba') row")
    return p


def blas_threads(requested=None):
    """Threads numpy's BLAS uses (set to `requested` when given and threadpoolctl is present)."""
    try:
        import threadpoolctl
    except ImportError:
        return requested
    if requested:
        threadpoolctl.threadpool_limits(requested, user_api="blas")
    counts = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return counts[0] if counts else requested


def import_torch(threads):
    """torch with `threads` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        print("torch not installed: no torch rows in this run")
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


def warm_heap():
    """Raise glibc malloc's mmap and trim thresholds for the rest of the run, and say so.

    By default glibc returns a freed block above its mmap threshold (128 KiB at first) to the system,
    and the next step faults the memory in again page by page (2 to 3 us per 4 KiB). It raises the
    threshold itself once it sees such blocks freed, so a hand-written numpy step, which makes fresh
    temporaries every time, ran 1.2x to 1.4x slower as the first thing in a process than after other
    work had warmed the heap (the RNN at hidden 128: 9.2 against 6.5 ms). Fixed thresholds give every
    implementation a warm heap from the start: the numpy floors at their best, whatever ran before.
    tinygrad_rnn's own buffer cache (tinygrad_rnn/buffers.py) does not depend on this."""
    if os.environ.get("BENCH_DEFAULT_HEAP"):
        return "default allocator (BENCH_DEFAULT_HEAP set)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        if libc.mallopt(m_mmap_threshold, 32 * 2**20) == 1 and libc.mallopt(m_trim_threshold, 512 * 2**20) == 1:
            return "glibc heap warm (mmap threshold 32 MiB, trim 512 MiB)"
    except (OSError, AttributeError):
        pass
    return "default allocator (not glibc: heap thresholds left alone)"


def banner(threads, torch):
    """The machine, thread counts and versions: numbers from two machines are not comparable. Also
    warms the heap (warm_heap) before anything is timed."""
    heap = warm_heap()
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor() or platform.machine())
    load = ", load %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"machine: {cpu}, {os.cpu_count()} cores{load}; python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__ if torch else '-'}; "
          f"BLAS threads {threads}, torch threads {torch.get_num_threads() if torch else '-'}; {heap}")


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def time_ms(steps, count, warmup, block=5):
    """{name: (median, min) ms per step}. The implementations take turns in blocks of `block` steps,
    so a change in the machine's load hits them all alike; each block starts with `warmup` untimed
    steps, which also lets the previous library's idle threads go to sleep."""
    times = {name: [] for name in steps}
    while any(len(t) < count for t in times.values()):
        for name, step in steps.items():
            for _ in range(warmup):
                step()
            for _ in range(min(block, count - len(times[name]))):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: (1e3 * float(np.median(t)), 1e3 * float(np.min(t))) for name, t in times.items()}


def report(results, reference, also=None):
    """One line per implementation: median (min) ms and its ratio to `reference` (and to `also`)."""
    floor = results[reference][0]
    other = results.get(also, (None,))[0] if also else None
    for name, (median, best) in results.items():
        ratios = f"{median / floor:6.2f}x {reference}"
        if other:
            ratios += f"   {median / other:6.2f}x {also}"
        print(f"  {name:27s} {median:9.1f} ms/step ({best:7.1f})   {ratios}")


def under(mode, step):
    """step run inside the context manager `mode()` (tg.nn.fused(False), tg.kernels("numba"))."""
    def run():
        with mode():
            return step()
    return run


def jit_row(args):
    """The context for a numba-kernels row (tg.kernels("numba")), or None: with --no-jit, or where
    numba is not installed (which it says)."""
    if args.no_jit:
        return None
    import tinygrad_rnn as tg
    try:
        import numba  # noqa: F401
    except ImportError:
        print("numba is not installed: no numba-kernels row (pip install numba, or pip install -e '.[jit]')")
        return None
    return lambda: tg.kernels("numba")
