"""Shared by the JIT kernels' tests: run a call under each kernel choice. Import it as
`from kernels import both, TANH_ERROR` (tests/ is on sys.path, like oracle and threads)."""
import tinygrad_rnn as tg

TANH_ERROR = 4e-7  # the rational tanh's largest distance from tanh in float32 (tools/fit_tanh.py: 3.4e-7)


def both(call):
    """call() under numpy's kernels, then under numba's -> [numpy's result, numba's]."""
    results = []
    for name in ("numpy", "numba"):
        with tg.kernels(name):
            results.append(call())
    return results
