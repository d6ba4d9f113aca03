"""torch.cuda's questions, answered through the backend seam (cupy is loaded only if asked)."""
from __future__ import annotations

from . import backend


def is_available() -> bool:
    """Whether a cuda device can be used: cupy installed and a GPU present."""
    return backend.is_available("cuda")


def device_count() -> int:
    if not is_available():
        return 0
    return int(backend.xp_for("cuda").cuda.runtime.getDeviceCount())
