"""Large host arrays reused from one training step to the next, as torch's caching allocators reuse theirs.

A training step makes the same large arrays every time: a layer's input projection, states and
gates, and their gradients. On Linux a fresh array is faulted in page by page when first written,
about 2 to 3 us per 4 KiB page on the machines measured, and glibc hands large blocks back to the
system when they are freed, so the next step faults them in again: 7 ms of a 35 ms LSTM step at
hidden 128 (docs/performance.md). The ops that make such arrays take them from here instead.

A cached buffer is free when nothing but this cache refers to it: every array handed out is a view
of its buffer and so holds a reference to it (sys.getrefcount counts them). Only numpy arrays of at
least MIN_BYTES are cached; smaller ones, and other backends' (cupy keeps a memory pool of its
own), come from xp.empty. Free buffers beyond the limit (`set_limit`) are let go;
`empty_cache()` lets go of every free one.
"""
from __future__ import annotations

import sys
import threading
from math import prod

import numpy as np

from .backend import get_array_module, on_host

MIN_BYTES = 256 * 1024  # below this glibc's heap reuses blocks itself (its mmap threshold is 128 KiB)

_lock = threading.Lock()
_buffers = {}  # size class in bytes -> [uint8 arrays]
_limit = 256 * 2**20  # bytes of free buffers kept


def _references(buffers, i):
    return sys.getrefcount(buffers[i])


_FREE = _references([np.empty(1, np.uint8)], 0)  # what a buffer that only its list holds shows


def empty(shape, dtype, like):
    """An uninitialised array of `shape` and `dtype` on like's backend (xp.empty's contract)."""
    if not on_host(like):
        return get_array_module(like).empty(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or not _limit:
        return np.empty(shape, dtype=dtype)
    size = _size_class(nbytes)
    with _lock:  # another thread must not take the same free buffer
        buffers = _buffers.setdefault(size, [])
        free = _free_indices(buffers)
        if free:
            # the one handed out last (the list is kept in order of hand-out): the likeliest to be
            # in the CPU's caches still, as malloc's last-freed block is
            buffer = buffers.pop(free[-1])
            buffers.append(buffer)
        else:
            _trim(_limit - size)
            buffer = np.empty(size, dtype=np.uint8)
            buffers.append(buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)


def empty_like(array):
    return empty(array.shape, array.dtype, array)


def matmul(a, b):
    """a @ b for a matrix b, into an array from the cache (a (T*B, 4H) projection is a new 4 MiB
    every step). A stack of rows (..., K) runs as one 2-d product: numpy multiplies a stack's
    matrices one by one (a (64, 32, 65) by (65, 512) projection: 2.8 against 1.6 ms)."""
    out = empty(a.shape[:-1] + b.shape[-1:], a.dtype, a)
    xp = get_array_module(a)
    if a.ndim > 2 and a.flags.c_contiguous:
        xp.matmul(a.reshape(-1, a.shape[-1]), b, out=out.reshape(-1, out.shape[-1]))
    else:
        xp.matmul(a, b, out=out)
    return out


def empty_cache():
    """Let go of every cached buffer that no array uses (torch.cuda.empty_cache's counterpart)."""
    with _lock:
        _trim(0)


def cached_bytes():
    """(bytes cached in all, bytes of them free)."""
    with _lock:
        return (sum(b.nbytes for bs in _buffers.values() for b in bs),
                sum(bs[i].nbytes for bs in _buffers.values() for i in _free_indices(bs)))


def set_limit(nbytes):
    """Keep at most `nbytes` of free buffers (0: cache nothing). Returns the previous limit."""
    global _limit
    with _lock:
        previous, _limit = _limit, int(nbytes)
        _trim(_limit)
    return previous


def _size_class(nbytes):
    """nbytes rounded up to a sixteenth to an eighth of its power of two (at least a page), so that
    arrays of nearby sizes (a batch a few steps longer) share buffers at under 12.5% waste."""
    step = 1 << max(nbytes.bit_length() - 4, 12)
    return -(-nbytes // step) * step


def _free_indices(buffers):
    return [i for i in range(len(buffers)) if _references(buffers, i) <= _FREE]


def _trim(keep):
    """Drop free buffers, the largest first, until at most `keep` bytes of free ones remain."""
    free = sorted(((size, i) for size, bs in _buffers.items() for i in _free_indices(bs)), reverse=True)
    total = sum(size for size, _ in free)
    for size, i in free:  # indices from the end of each list first: the earlier ones stay valid
        if total <= keep:
            break
        del _buffers[size][i]
        total -= size
