"""Helpers for batches of sequences of different lengths, as torch.nn.utils.rnn.

tinygrad_rnn's recurrent layers take `lengths=` instead of packed sequences, so what remains here
is padding: pad_sequence makes the (T, B, *) batch that `lengths` describes.
"""
from __future__ import annotations

from ...creation import full
from ...errors import ShapeError
from ...tensor import Tensor, cat, stack


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """[(L_i, *)] -> (T, B, *) (or (B, T, *) with batch_first), T = max L_i, padded with
    padding_value after each sequence (before it with padding_side="left"). Differentiable."""
    sequences = list(sequences)
    if not sequences:
        raise ShapeError("pad_sequence: needs at least one sequence")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    for i, s in enumerate(sequences):
        if not isinstance(s, Tensor) or s.ndim == 0:
            raise ShapeError(f"pad_sequence: sequence {i} must be a tensor of at least 1 dim, got {s!r:.60}")
    trailing = {s.shape[1:] for s in sequences}
    if len(trailing) != 1:
        raise ShapeError(f"pad_sequence: sequences differ after their first dim: {[s.shape for s in sequences]}")
    longest = max(len(s) for s in sequences)
    padded = []
    for s in sequences:
        missing = longest - len(s)
        if missing:
            pad = full((missing,) + s.shape[1:], padding_value, dtype=s.dtype, device=s.device)
            s = cat([s, pad] if padding_side == "right" else [pad, s])
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)
