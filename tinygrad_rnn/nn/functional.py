"""Stateless forms of the layers and losses (torch.nn.functional)."""
from __future__ import annotations

from .. import backend
from ..tensor import Tensor


def linear(x, weight, bias=None):
    """x (..., in) @ weight.T (out, in) + bias (out,) -> (..., out)."""
    out = x @ weight.T
    return out if bias is None else out + bias


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zero with probability p, scale the rest by 1/(1-p); identity in eval."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = backend.host_rng().random(x.shape) >= p
    mask = Tensor(keep.astype(x.dtype) / (1.0 - p), dtype=x.dtype, device=x.device)
    return x * mask
