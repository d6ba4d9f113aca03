"""numba.njit with its on-disk cache where numba finds a writable place for one, in memory otherwise.

numba looks for the cache's folder when a function is decorated, that is when this package is
imported, and raises RuntimeError ("no locator available") where neither the package's folder nor
a user cache folder is writable: a read-only install run by a user without a home, as containers
do. The kernels then compile in each process (about 2 s) instead of failing.
"""
from __future__ import annotations

import numba


def njit(**options):
    def decorate(fn):
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:
            return numba.njit(**options)(fn)
    return decorate
