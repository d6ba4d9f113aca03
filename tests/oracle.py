"""torch, the test-only oracle, when installed (else None); tests that compare with it are marked needs_torch.

Import it as `from oracle import needs_torch, torch` (tests/ is on sys.path, like stub_backend). Module-level
code must not touch `torch`, so that the tests that do not need it still run where it is absent.
"""
import pytest

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch (the test oracle) is not installed")
