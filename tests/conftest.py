"""Shared fixtures. Every device-parametrised test runs on numpy, on the strict stand-in
namespace (tests/stub_backend.py, so CI without a GPU still catches ops that bypass the
backend seam), and on cupy when a GPU is present."""
import numpy as np
import pytest
import stub_backend

import tinygrad_rnn as tg

stub_backend.register()

DEVICES = ["cpu", "stub", "cuda"]


@pytest.fixture(params=DEVICES)
def device(request):
    if not tg.is_available(request.param):
        pytest.skip(f"device {request.param!r} not available (no cupy or no GPU)")
    return tg.backend.canonical_device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    tg.manual_seed(0)
    np.random.seed(0)
    yield
    tg.set_detect_anomaly(False)
