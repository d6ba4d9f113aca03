"""torch.linalg's vector norm, composed from the primitive Tensor methods (no backward of its own).

Imports only composite.py, so tensor.py can import it for Tensor.norm.
"""
from __future__ import annotations

import math

from .composite import normalize_axes, require_float


def vector_norm(x, ord=2, dim=None, keepdim=False):
    """The ord-norm of x over dim (all elements when None): ord 0 counts non-zeros, inf / -inf take the
    largest / smallest |x| (ties share the gradient, as torch's), any other number (sum |x|^ord)^(1/ord).
    At a zero norm the gradient is 0, as torch's, not the nan of the formula."""
    require_float(x, "linalg.vector_norm")
    axes = normalize_axes(dim, x.ndim)
    ord = float(ord)
    if ord == math.inf:
        return x.abs().amax(axes, keepdim)
    if ord == -math.inf:
        return x.abs().amin(axes, keepdim)
    if ord == 0:
        # both masks replace every element: the count, in the graph with a zero gradient (as torch's)
        return x.masked_fill(x != 0, 1).masked_fill(x == 0, 0).sum(axes, keepdim=keepdim)
    if ord == 1:
        return x.abs().sum(axes, keepdim=keepdim)
    powered = x * x if ord == 2 else x.abs() ** ord
    total = powered.sum(axes, keepdim=keepdim)
    # root where the total is not 0, 0 where it is: the root's slope there (inf) never enters backward
    zero = (total == 0)._data
    safe = total.masked_fill(zero, 1)
    root = safe.sqrt() if ord == 2 else safe ** (1.0 / ord)
    return root.masked_fill(zero, 0)
