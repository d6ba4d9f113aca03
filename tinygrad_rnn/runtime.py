"""What ported torch programs ask of the runtime: device objects and the number of CPU threads."""
from __future__ import annotations

import os

from . import backend


class device:  # noqa: N801  (torch's name)
    """torch.device: `tg.device("cuda:1")`, `tg.device("cuda", 1)`; usable wherever a device name is
    (`.to(dev)`, `device=dev`), and equal to its name."""

    def __init__(self, type, index=None):  # noqa: A002  (torch's argument name)
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        name = str(type) if index is None else f"{type}:{int(index)}"
        self._name = backend.canonical_device(name) if ":" in name or name == "cpu" else name
        backend.canonical_device(self._name)  # validates the name; availability is checked on use
        self.type, _, number = self._name.partition(":")
        self.index = int(number) if number else None

    def __str__(self):
        return self._name

    def __repr__(self):
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(self._name)


def set_num_threads(n):
    """Threads for the array library's BLAS (through threadpoolctl, when installed). Without it the
    count is fixed at start-up by OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, so this only records it."""
    global _threads
    _threads = int(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=_threads)


def get_num_threads():
    return _threads


_threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
