"""What every benchmark here shares: its standard flags, the machine banner, thread control and
interleaved timing."""
import argparse
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


def banner(threads, torch):
    """The machine, thread counts and versions: numbers from two machines are not comparable."""
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor() or platform.machine())
    load = ", load %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"machine: {cpu}, {os.cpu_count()} cores{load}; python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__ if torch else '-'}; "
          f"BLAS threads {threads}, torch threads {torch.get_num_threads() if torch else '-'}")


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
        print(f"  {name:24s} {median:9.1f} ms/step ({best:7.1f})   {ratios}")
