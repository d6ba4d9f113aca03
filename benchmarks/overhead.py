"""Per-op overhead of the engine: forward + backward of a tiny graph, in one run against torch.

    python benchmarks/overhead.py [--repeat 25] [--number 500]

Graph: ((a*b)+a).sum().backward() on 4x4 float32 arrays. The floor is the same forward in
plain numpy (no graph, no backward). Also prints the backward cost per node for chains of
1k..100k nodes, which should stay flat (the sweep is one pass, latest-made node first).
"""
import argparse
import gc
import time
import timeit

import numpy as np
from common import banner, blas_threads, import_torch

import tinygrad_rnn as tg


def per_iteration_us(fns, repeat, number):
    """{name: best microseconds per call}, the candidates timed in turn within each repeat, so that
    a slow spell of a shared machine hits them all alike."""
    best = {}
    for fn in fns.values():
        fn()  # warm up
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best.get(name, float("inf")), timeit.timeit(fn, number=number) / number * 1e6)
    return best


def tinygrad_step(a, b):
    def step():
        a.grad = b.grad = None
        ((a * b) + a).sum().backward()
    return step


def torch_step(torch, a, b):
    def step():
        a.grad = b.grad = None
        ((a * b) + a).sum().backward()
    return step


def numpy_forward(a, b):
    return lambda: ((a * b) + a).sum()


def chain_backward_ns_per_node(length):
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(length):
        y = y * 1.0
    gc.collect()  # a full collection owed by the build must not land inside the timing
    start = time.perf_counter()
    y.backward()
    return (time.perf_counter() - start) / length * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2))
    a, b = (tg.tensor(x, requires_grad=True) for x in (a_np, b_np))
    candidates = {"numpy forward only (floor)": numpy_forward(a_np, b_np),
                  "tinygrad_rnn fwd+bwd": tinygrad_step(a, b)}
    torch = import_torch(1)  # one thread: a 4x4 graph is all dispatch
    banner(blas_threads(), torch)
    if torch is not None:
        at, bt = (torch.tensor(x, requires_grad=True) for x in (a_np, b_np))
        candidates["torch fwd+bwd"] = torch_step(torch, at, bt)
    results = per_iteration_us(candidates, args.repeat, args.number)

    print("((a*b)+a).sum().backward() on 4x4 float32, microseconds per iteration (best of repeats)")
    for name, us in results.items():
        print(f"  {name:30s} {us:8.2f} us")
    ours = results["tinygrad_rnn fwd+bwd"]
    print(f"  ratio tinygrad_rnn / numpy floor  {ours / results['numpy forward only (floor)']:6.2f}x")
    if "torch fwd+bwd" in results:
        print(f"  ratio tinygrad_rnn / torch        {ours / results['torch fwd+bwd']:6.2f}x  (goal <= 0.50x)")

    print("backward cost per node of a y = y * 1.0 chain (should stay flat: one pass)")
    for length in (1_000, 10_000, 100_000):
        print(f"  {length:7d} nodes  {chain_backward_ns_per_node(length):8.0f} ns/node")


if __name__ == "__main__":
    main()
