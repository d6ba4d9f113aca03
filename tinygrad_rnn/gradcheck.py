"""Finite-difference check of analytic gradients (float64, central differences, full Jacobian)."""
from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .errors import DTypeError, GraphError
from .tensor import Tensor


def _outputs(fn, inputs):
    out = fn(*inputs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def numerical_jacobians(fn, inputs, eps=1e-6):
    """d(all outputs, flattened)/d(each input), one (n_out, n_in) matrix per input."""
    jacobians = []
    for x in inputs:
        host = x.numpy().astype(np.float64)
        flat = host.reshape(-1)
        columns = []
        for k in range(flat.size):
            saved = flat[k]
            values = []
            for step in (eps, -eps):
                flat[k] = saved + step
                x._data = _like(host, x)
                with no_grad():
                    values.append(np.concatenate([o.numpy().reshape(-1) for o in _outputs(fn, inputs)]))
            flat[k] = saved
            x._data = _like(host, x)
            columns.append((values[0] - values[1]) / (2 * eps))
        jacobians.append(np.stack(columns, axis=1) if columns else np.zeros((0, 0)))
    return jacobians


def _like(host, x):
    from . import backend
    return backend.asarray(host.copy(), dtype=x.dtype, device=x.device)


def analytical_jacobians(fn, inputs):
    outputs = _outputs(fn, inputs)
    rows = [[] for _ in inputs]
    for out in outputs:
        for k in range(out.numel()):
            for x in inputs:
                x.grad = None
            seed = np.zeros(out.numel())
            seed[k] = 1.0
            if out.requires_grad:
                out.backward(seed.reshape(out.shape), retain_graph=True)
            for i, x in enumerate(inputs):
                rows[i].append(np.zeros(x.numel()) if x.grad is None else x.grad.numpy().reshape(-1))
    for x in inputs:
        x.grad = None
    return [np.array(r) for r in rows]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """True when fn's backward matches central differences for every input that requires grad.

    fn takes the tensors in `inputs` and returns a tensor or a tuple of tensors. Inputs
    must be float64: in float32 the differences drown in rounding.
    """
    inputs = [x for x in inputs]
    for x in inputs:
        if not isinstance(x, Tensor) or x.dtype != np.float64:
            raise DTypeError(f"gradcheck needs float64 tensors, got {getattr(x, 'dtype', type(x))}")
    if not any(x.requires_grad for x in inputs):
        raise GraphError("gradcheck: no input requires grad")
    checked = [x for x in inputs if x.requires_grad]
    analytic = analytical_jacobians(fn, checked)
    numeric = numerical_jacobians(fn, checked, eps)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        if a.shape != n.shape or not np.allclose(a, n, atol=atol, rtol=rtol):
            if not raise_exception:
                return False
            worst = np.abs(a - n).max() if a.shape == n.shape else "shape mismatch"
            raise AssertionError(f"gradcheck: input {i} of shape {checked[i].shape}: analytic and "
                                 f"numerical Jacobians differ (max abs diff {worst})\n"
                                 f"analytic:\n{a}\nnumerical:\n{n}")
    return True
