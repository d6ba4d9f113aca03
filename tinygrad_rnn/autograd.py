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

    differentiable = True
    saved = ()  # becomes None when backward frees the node (see run_backward)

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
        # The hot path of the whole engine: kept free of generators, imports and context managers.
        ctx = _new_object(cls)
        first = type(inputs[0].data)
        requires_grad = False
        arrays = []
        for t in inputs:
            if t.requires_grad:
                requires_grad = True
            if type(t.data) is not first:
                _raise_device_mix(ctx, inputs)
            arrays.append(t.data)
        if first is not _ndarray and len(inputs) > 1:
            _check_same_device(ctx, inputs)
        try:
            out = ctx.forward(*arrays, **kwargs)
        except (ValueError, IndexError) as e:
            if isinstance(e, TinyGradRNNError):
                raise
            shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
            raise ShapeError(f"{ctx.name}: cannot combine inputs of shapes {shapes}: {e}") from None
        if _detect_anomaly:
            _check_finite(out, f"forward of {ctx.name}")
        if type(out) in _numpy_scalars:  # numpy turns 0-d results into scalars; keep arrays
            out = backend.np.asarray(out)
        t = _new_tensor(_Tensor)  # Tensor._make, inlined: this runs once per op
        t.data, t.grad = out, None
        if requires_grad and _grad_enabled and cls.differentiable:
            ctx.parents = inputs
            ctx.scope = _scope
            t.requires_grad, t._ctx = True, ctx
        else:
            t.requires_grad, t._ctx = False, None
        return t


_ndarray = backend.np.ndarray
_make_tensor = None  # Tensor._make and Tensor, set by tensor.py (which imports this module)
_Tensor = None
_new_tensor = _new_object = object.__new__
_numpy_scalars = backend.NUMPY_SCALARS
ensure_array = backend.ensure_array


def _check_same_device(ctx, inputs):
    """Same array type is not enough off the CPU: two GPUs share cupy's array type."""
    if len({t.device for t in inputs}) > 1:
        _raise_device_mix(ctx, inputs)


def _raise_device_mix(ctx, inputs):
    devices = " and ".join(sorted({str(x.device) for x in inputs}))
    raise DeviceError(f"{ctx.name}: inputs are on different devices ({devices}); "
                      "move them with .to(device) first")


def _toposort(root):
    """Nodes reachable from root, each after all the nodes it was computed from.

    Iterative depth-first search, one pass, linear in the graph's size: no recursion
    limit on a 100k-step unroll.
    """
    order, visited = [], {id(root)}
    append, mark = order.append, visited.add
    stack = [root, iter(root._ctx.parents)]
    while stack:
        parents = stack[-1]
        for parent in parents:
            if parent._ctx is not None and id(parent) not in visited:
                mark(id(parent))
                stack.append(parent)
                stack.append(iter(parent._ctx.parents))
                break
        else:  # every parent placed: the node goes after them
            stack.pop()
            append(stack.pop())
    return order


class SparseGrad:
    """A gradient that is zero except at `index`: what slicing one time step out of a
    sequence sends back. The engine adds it into the parent's gradient buffer in place,
    so T slices of a (T, ...) tensor cost O(T) in backward, not T full-size arrays."""

    __slots__ = ("index", "values", "shape", "advanced")

    def __init__(self, index, values, shape, advanced):
        self.index, self.values, self.shape, self.advanced = index, values, shape, advanced

    def add_into(self, buffer):
        if self.advanced:
            backend.scatter_add(buffer, self.index, self.values)
        else:
            buffer[self.index] += self.values
        return buffer

    def dense(self):
        xp = backend.get_array_module(self.values)
        return self.add_into(xp.zeros(self.shape, dtype=self.values.dtype))


def run_backward(root, grad, retain_graph=False):
    """Reverse-mode sweep from `root` with upstream gradient `grad` (an array).

    Gradients of a tensor used several times are summed into a buffer the engine owns
    (made by the engine, referenced nowhere else), in place; arrays that came from an
    op's backward may be shared, so they are never written into.
    """
    global _grad_enabled
    if root._ctx is None:
        _accumulate_leaf(root, grad)
        return
    grads = {id(root): grad}
    owned = set()  # keys of `grads` whose array the engine made and may write into
    leaves = []
    pop, get, accumulate, detect, sparse_type = grads.pop, grads.get, _accumulate_leaf, _detect_anomaly, SparseGrad
    previous_mode, _grad_enabled = _grad_enabled, False  # backward builds no graph
    try:
        for node in reversed(_toposort(root)):
            g = pop(id(node), None)  # no consumer comes later in this order: the key is done with
            if g is None:
                continue
            if node._retains_grad:
                accumulate(node, g)
            ctx = node._ctx
            if ctx.saved is None:
                raise GraphError(
                    f"backward through the graph of '{ctx.name}' a second time: its saved arrays "
                    "were freed by the first backward; pass retain_graph=True to the first call")
            input_grads = ctx.backward(g)
            if type(input_grads) is not tuple:
                input_grads = (input_grads,)
            for parent, pg in zip(ctx.parents, input_grads):
                if pg is None or not parent.requires_grad:
                    continue
                sparse = type(pg) is sparse_type
                if not sparse and pg.shape != parent.data.shape:
                    pg = sum_to(pg, parent.data.shape)
                if detect:
                    _check_finite(pg.values if sparse else pg, f"backward of {ctx.name}")
                key = id(parent)
                previous = get(key)
                if previous is None:
                    if sparse:
                        pg = pg.dense()
                        owned.add(key)
                    grads[key] = pg
                    if parent._ctx is None:
                        leaves.append(parent)
                elif key in owned:
                    if sparse:
                        pg.add_into(previous)
                    else:
                        previous += pg
                else:
                    grads[key] = pg.add_into(previous.copy()) if sparse else ensure_array(previous + pg)
                    owned.add(key)
            if not retain_graph:
                ctx.saved = None
        for leaf in leaves:  # each leaf written once, after all its contributions are summed
            key = id(leaf)
            g = grads[key]
            if leaf.grad is None and g.dtype == leaf.data.dtype:  # the usual case, inlined
                leaf.grad = _make_tensor(g if key in owned else g.copy(), False, None)
            else:
                accumulate(leaf, g, owned=key in owned)
    finally:
        _grad_enabled = previous_mode


def _accumulate_leaf(tensor, grad, owned=False):
    if grad.dtype != tensor.data.dtype:
        grad, owned = grad.astype(tensor.data.dtype), True
    if tensor.grad is None:
        # Unless the engine made it, a copy: an op's backward may hand one array to several inputs.
        tensor.grad = _make_tensor(grad if owned else grad.copy(), False, None)
    else:
        tensor.grad.data = backend.ensure_array(tensor.grad.data + grad)
