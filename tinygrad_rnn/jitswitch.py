"""The switch between numpy's code and numba's JIT kernels (tinygrad_rnn/jit/) for the pointwise
routines that have both: the recurrent cells' gate math and its backward, Adam's update.

numpy's code is the default and the reference. `set_kernels` sets the process-wide choice (the
environment variable TINYGRAD_RNN_KERNELS sets it at import); a `with kernels(...)` block overrides
it in its own thread only, as no_grad and tg.nn.fused do, so that blocks in two threads cannot undo
each other. Each routine with a JIT version is marked `@jit_kernel`.
"""
from __future__ import annotations

import functools
import inspect
import os
import threading

from .autograd import _Restoring

CHOICES = ("numpy", "numba")
_PROCESS = object()  # a thread outside any `kernels` block follows set_kernels


class _ThreadChoice(threading.local):
    kernels = _PROCESS  # this thread's innermost block's choice: the jit package, None (numpy), or _PROCESS


_thread = _ThreadChoice()
_process = None  # set_kernels's choice: the jit package, or None for numpy's code


def _load(name, caller):
    """The kernels for a name (case and surrounding spaces ignored): None for numpy's code, the
    tinygrad_rnn.jit package for numba's."""
    choice = name.strip().lower() if isinstance(name, str) else name
    if choice not in CHOICES:
        raise ValueError(f"{caller}: expected one of {', '.join(map(repr, CHOICES))}, got {name!r}")
    if choice == "numpy":
        return None
    try:
        from . import jit
    except ImportError as e:
        raise ImportError(f"{caller}('numba') needs numba, which is not installed (pip install numba, or "
                          "pip install -e '.[jit]' in a clone of tinygrad_rnn)") from e
    return jit


def _active():
    chosen = _thread.kernels
    return _process if chosen is _PROCESS else chosen


def set_kernels(name):
    """Which code runs the pointwise routines that have a JIT version (the recurrent cells' gate math
    and its backward, Adam's update) on the CPU: "numpy" (the default) or "numba" (tinygrad_rnn/jit/,
    compiled on first use and cached on disk where numba finds a writable place; needs numba: the
    `jit` extra, `pip install -e '.[jit]'`). Names ignore case and spaces. Process-wide: every thread
    outside a `tg.kernels(...)` block follows it. The JIT kernels take float32 numpy arrays only;
    other dtypes and devices keep numpy's (or cupy's) code. The environment variable
    TINYGRAD_RNN_KERNELS sets it when tinygrad_rnn is imported (not after)."""
    global _process
    _process = _load(name, "set_kernels")


def get_kernels():
    """"numpy" or "numba": what runs in this thread now (its `kernels` block's, else set_kernels's)."""
    return "numpy" if _active() is None else "numba"


class kernels(_Restoring):  # noqa: N801  (used as a context manager, like no_grad)
    """`with tg.kernels("numba"):` (or `@tg.kernels("numba")` on a function) runs the JIT kernels inside
    the block, in this thread only (other threads keep theirs); the block's end restores what was
    before it (see set_kernels)."""

    def __init__(self, name):
        self.chosen = _load(name, "kernels")

    def __enter__(self):
        self._push(_thread.kernels)
        _thread.kernels = self.chosen
        return self

    def __exit__(self, *exc):
        _thread.kernels = self._pop()


def jit_kernel(fn):
    """Marks a numpy routine that has a JIT version: while "numba" is active, its namesake in
    tinygrad_rnn.jit runs instead, with the arguments as positional ones, unless it declines them
    (returns NotImplemented: not float32 numpy arrays of the shapes it takes, or an output it cannot
    write); numpy's routine then runs."""
    name, signature = fn.__name__, inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        jit = _active()
        if jit is not None:
            if kwargs:
                args, kwargs = signature.bind(*args, **kwargs).args, {}
            out = getattr(jit, name)(*args)
            if out is not NotImplemented:
                return out
        return fn(*args, **kwargs)

    return run


def _from_environment(value):
    """TINYGRAD_RNN_KERNELS, read once, at import: an error names the variable, since the user
    called nothing."""
    try:
        set_kernels(value)
    except (ValueError, ImportError) as e:
        raise type(e)(f"the environment variable TINYGRAD_RNN_KERNELS={value!r}: {e}; unset it (or set it to "
                      "'numpy') to run numpy's code") from e


if os.environ.get("TINYGRAD_RNN_KERNELS", "").strip():
    _from_environment(os.environ["TINYGRAD_RNN_KERNELS"])
