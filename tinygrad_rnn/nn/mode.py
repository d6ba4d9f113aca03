"""`tg.nn.fused`: whether the layers that have one-node forms (the recurrent cells and layers,
BatchNorm) use them or their formulas' ops. A mode of its own, per thread as grad mode, read by
nn.cells, nn.rnn and nn.functional alike."""
from __future__ import annotations

import threading

from ..autograd import _Restoring


class _FusedState(threading.local):
    enabled = True  # every new thread's default


_fused = _FusedState()


class fused(_Restoring):  # noqa: N801  (a mode, named like no_grad)
    """`with tg.nn.fused(False):` (or `@tg.nn.fused(False)` on a function) runs the recurrent layers
    and cells op by op (a node per gate: what the renderer's op detail and per-gate gradchecks need)
    and BatchNorm as its formula's ops; fused(True) one node per step and per BatchNorm. Per thread,
    as grad mode; the default is fused."""

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        self._push(_fused.enabled)
        _fused.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _fused.enabled = self._pop()


def set_fused(mode):
    """Switch the one-node forms on or off for this thread (see `fused`)."""
    _fused.enabled = bool(mode)


def is_fused():
    return _fused.enabled
