"""The autograd machinery: `Function` (whose instance is the op's context), grad mode,
scope labels for graph rendering, anomaly detection and the iterative backward pass."""
from __future__ import annotations

import contextlib

from . import backend
from .errors import AnomalyError, DeviceError, GraphError, ShapeError, TinyGradRNNError

_grad_enabled = True
_detect_anomaly = False
_scope = None  # "lstm/l0/t3"-style label stamped on every node made under `scope()`


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def _set_grad(enabled):
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, enabled
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context in which ops record no graph (evaluation, optimiser updates)."""
    return _set_grad(False)


def enable_grad():
    return _set_grad(True)


def set_detect_anomaly(enabled: bool):
    """Raise at the first NaN/Inf made by an op's forward or backward, naming the op."""
    global _detect_anomaly
    _detect_anomaly = bool(enabled)


def is_anomaly_enabled() -> bool:
    return _detect_anomaly


@contextlib.contextmanager
def scope(label):
    """Label every graph node made inside; nested scopes join with '/'."""
    global _scope
    previous = _scope
    _scope = str(label) if previous is None else f"{previous}/{label}"
    try:
        yield
    finally:
        _scope = previous


def current_scope():
    return _scope


def sum_to(grad, shape):
    """Undo numpy broadcasting: sum `grad` down to `shape`. The one place every op relies on."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    if lead:
        grad = grad.reshape(shape)
    return grad


def _check_finite(array, what):
    xp = backend.get_array_module(array)
    if array.dtype.kind in "fc" and not bool(xp.isfinite(array).all()):
        raise AnomalyError(f"{what} produced NaN or Inf (shape {tuple(array.shape)}, {array.dtype})")


class Function:
    """An op. `forward`/`backward` work on raw arrays; the instance holds what backward needs.

    Subclasses keep arrays for backward with `save_for_backward`, so that they are
    released after backward unless `retain_graph=True`.
    """

    __slots__ = ("parents", "saved", "scope", "freed", "__dict__")
    differentiable = True

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        """Return one gradient (or None) per input, each of the output's broadcast shape at most."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    @classmethod
    def apply(cls, *inputs, **kwargs):
        from .tensor import Tensor
        ctx = cls()
        ctx.saved = ()
        ctx.freed = False
        if len(inputs) > 1:
            _check_same_device(ctx, inputs)
        try:
            out = ctx.forward(*[t.data for t in inputs], **kwargs)
        except (ValueError, IndexError) as e:
            if isinstance(e, TinyGradRNNError):
                raise
            shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
            raise ShapeError(f"{ctx.name}: cannot combine inputs of shapes {shapes}: {e}") from None
        if _detect_anomaly:
            _check_finite(out, f"forward of {ctx.name}")
        if _grad_enabled and cls.differentiable and any(t.requires_grad for t in inputs):
            ctx.parents = inputs
            ctx.scope = _scope
            return Tensor._make(out, True, ctx)
        return Tensor._make(out, False, None)

    def release(self):
        self.saved = None
        self.freed = True


def _check_same_device(ctx, inputs):
    first = type(inputs[0].data)
    for t in inputs[1:]:
        if type(t.data) is not first or (first is not backend.np.ndarray
                                         and t.device != inputs[0].device):
            devices = " and ".join(sorted({str(x.device) for x in inputs}))
            raise DeviceError(f"{ctx.name}: inputs are on different devices ({devices}); "
                              "move them with .to(device) first")


def _toposort(root):
    """Nodes reachable from root, each after all the nodes it was computed from; no recursion."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._ctx.parents:
            if parent._ctx is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def run_backward(root, grad, retain_graph=False):
    """Reverse-mode sweep from `root` with upstream gradient `grad` (an array)."""
    if root._ctx is None:
        _accumulate_leaf(root, grad)
        return
    grads = {id(root): grad}
    for node in reversed(_toposort(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._retains_grad:
            _accumulate_leaf(node, g)
        ctx = node._ctx
        if ctx.freed:
            raise GraphError(
                f"backward through the graph of '{ctx.name}' a second time: its saved arrays "
                "were freed by the first backward; pass retain_graph=True to the first call")
        with _set_grad(False):
            input_grads = ctx.backward(g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, pg in zip(ctx.parents, input_grads):
            if pg is None or not parent.requires_grad:
                continue
            if pg.shape != parent.data.shape:
                pg = sum_to(pg, parent.data.shape)
            if _detect_anomaly:
                _check_finite(pg, f"backward of {ctx.name}")
            if parent._ctx is None:
                _accumulate_leaf(parent, pg)
            else:
                key = id(parent)
                previous = grads.get(key)
                grads[key] = pg if previous is None else previous + pg
        if not retain_graph:
            ctx.release()


def _accumulate_leaf(tensor, grad):
    from .tensor import Tensor
    if grad.dtype != tensor.data.dtype:
        grad = grad.astype(tensor.data.dtype)
    if tensor.grad is None:
        # A copy: an op's backward may hand the same array to several inputs.
        tensor.grad = Tensor._make(grad.copy(), False, None)
    else:
        tensor.grad.data = backend.ensure_array(tensor.grad.data + grad)
