"""The graph engine: grad mode, scope labels and anomaly mode (each per thread, as in torch),
`Function` (an op's node in the graph: its backward, what it saved, where it came from),
the backward sweep, `grad`, and `walk`, the public read of a graph.

The engine knows nothing of how tensors are made. A node holds its parent *nodes* (and,
for leaves, the leaf tensor that accumulates the gradient), never forward outputs, plus
what a renderer needs: op name, scope label, output shape and dtype. Backward frees the
saved arrays, so a kept loss costs its nodes, not its activations.

Tensors meet the engine through these members (tensor.py implements them):
  t._grad_target()        its node, or t itself for a leaf (what its gradient is sent to)
  t._seed(gradient)       the array backward starts from (ones for a one-element tensor)
  t._accumulate_grad(g)   add a gradient array into t.grad (leaves, retained non-leaves)
  t._hooks                a leaf's {id: hook on arrays}, or None
  t._wrap(array)          a constant tensor holding the array (what autograd.grad returns)
  t._ctx                  the node that made t, or None (what `mark` names for a renderer)
  t.requires_grad, t.shape
"""
from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import operator
import sys
import threading
import weakref
from typing import NamedTuple

import numpy as np

from . import backend, buffers
from .errors import AnomalyError, GraphError


class _ThreadState(threading.local):
    """Per-thread modes; the class attributes are every new thread's defaults."""

    grad_enabled = True
    inference = False
    anomaly = False
    scope = None  # "lstm/l0/t3"-style label stamped on every node made under `scope()`
    releasing = False  # in a sweep that frees each node's saved arrays after its backward (see consume_saved)


class _Restoring:
    """Base of the context managers: what an exit restores is kept per object and per thread, so
    one object can be entered again (nested, or by several threads), and managers left in any
    order (generators, tasks) each restore their own value."""

    def _push(self, value):
        self.__dict__.setdefault("_entered", {}).setdefault(threading.get_ident(), []).append(value)

    def _pop(self):
        stacks = self._entered
        ident = threading.get_ident()
        value = stacks[ident].pop()
        if not stacks[ident]:
            del stacks[ident]
        return value

    def _fresh(self):
        """The context each call of a decorated function enters (grad modes make a new one)."""
        return self

    def __call__(self, func):
        """Used as a decorator: each call of func (each resume, for a generator) runs inside the block."""
        if inspect.isgeneratorfunction(func):
            return _wrap_generator(self._fresh, func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self._fresh():
                return func(*args, **kwargs)
        return wrapper


state = _ThreadState()


def is_grad_enabled() -> bool:
    return state.grad_enabled


def is_inference_mode_enabled() -> bool:
    return state.inference


class _GradMode(_Restoring):
    """Context manager and decorator (`@no_grad`, `@no_grad()`, `with no_grad():`) setting grad
    mode for this thread only; entering again (recursion, generators) is fine."""

    enabled = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        if callable(func):  # bare decorator: @no_grad
            return self(func)
        return self

    def __init__(self, func=None):
        pass

    def __enter__(self):
        self._push(state.grad_enabled)
        state.grad_enabled = self.enabled

    def __exit__(self, *exc):
        state.grad_enabled = self._pop()

    def _fresh(self):
        """The same mode as a new context, for each call of a decorated function."""
        return type(self)()


def _wrap_generator(context, func):
    """A decorated generator runs under the mode at every resume, not just at creation."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        generator = func(*args, **kwargs)
        try:
            with context():
                response = generator.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with context():
                        generator.close()
                    raise
                except BaseException as error:  # thrown in: passed to the generator, under the mode
                    with context():
                        response = generator.throw(error)
                else:
                    with context():
                        response = generator.send(request)
        except StopIteration as finished:
            return finished.value
    return wrapper


class no_grad(_GradMode):  # noqa: N801  (torch's name)
    """Ops record no graph inside (evaluation, optimiser updates). In this thread only."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801
    enabled = True


class set_grad_enabled(_GradMode):  # noqa: N801
    """set_grad_enabled(False) switches grad mode now (as a call) or for a block (as a context)."""

    def __new__(cls, mode):
        return super().__new__(cls)

    def __init__(self, mode):
        super().__init__()
        self.enabled = bool(mode)
        self._before_call = state.grad_enabled
        state.grad_enabled = self.enabled  # torch's set_grad_enabled acts when called
        self._switched = True  # ... so the first `with` only has to remember what was before

    def __enter__(self):
        if self._switched:
            self._switched = False
            self._push(self._before_call)
        else:
            super().__enter__()

    def __call__(self, func):
        state.grad_enabled = self._before_call  # used as a decorator: act only inside the calls
        return super().__call__(func)

    def _fresh(self):
        return set_grad_enabled(self.enabled)


class inference_mode(_GradMode):  # noqa: N801
    """no_grad for inference; `is_inference_mode_enabled()` is True inside."""

    enabled, mode = False, True  # the bare decorator's instance skips __init__

    def __new__(cls, mode=True):
        if callable(mode):
            return super().__new__(cls)(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        super().__init__()
        self.enabled = not bool(mode)
        self.mode = bool(mode)

    def _fresh(self):
        return inference_mode(self.mode)

    def __enter__(self):
        self._push((state.grad_enabled, state.inference))
        state.grad_enabled, state.inference = self.enabled, self.mode

    def __exit__(self, *exc):
        state.grad_enabled, state.inference = self._pop()


anomaly_threads = set()  # idents of the threads with anomaly mode on: the hot path checks this first


def set_detect_anomaly(enabled: bool):
    """Raise at the first NaN/Inf made by an op's forward or backward, naming the op (this thread)."""
    state.anomaly = bool(enabled)
    (anomaly_threads.add if enabled else anomaly_threads.discard)(threading.get_ident())


def is_anomaly_enabled() -> bool:
    return state.anomaly


class ScopeLabel(str):
    """A node's scope label ("lstm/l0/t3"), a plain string to everyone but the renderer, which
    reads `parts`: per '/'-separated component, the serial of the `scope()` entry that made it.
    Two calls of one cell module in a Python loop share a label but not the serials, so the
    renderer can tell the time steps apart and order them as they ran."""

    parts = ()  # ((component, entry serial), ...), outermost first


node_numbers = itertools.count()  # next() on a count is atomic: each recorded node's own number


def reserve_sequence(n):
    """The first of n consecutive sequence numbers, for nodes made later that must sort between
    nodes made now (sequence.expand's steps, between a layer's node and its consumers). One C-level
    pass over the count, which no other thread can enter halfway (the GIL is not let go inside)."""
    return max(itertools.islice(node_numbers, n), default=-1) - n + 1


_entries = itertools.count()  # next() on a count is atomic: serials are unique across threads


def reserve_serials(n):
    """n scope-entry serials, in order, for scopes a node will be shown in later (sequence.Unrolled)."""
    return [next(_entries) for _ in range(n)]


class scope(_Restoring):  # noqa: N801
    """`with scope("encoder"):` labels every graph node made inside; nested scopes join with '/'.
    The label is per thread: two threads never see each other's."""

    def __init__(self, label):
        self.label = str(label)

    def __enter__(self):
        previous = state.scope
        self._push(previous)
        label = ScopeLabel(self.label if previous is None else f"{previous}/{self.label}")
        serial = next(_entries)
        label.parts = (previous.parts if previous is not None else ()) + tuple(
            (component, serial) for component in self.label.split("/"))
        state.scope = label
        return self

    def __exit__(self, *exc):
        state.scope = self._pop()


def current_scope():
    return state.scope


def mark(tensor, role, cut=None):
    """Name the node that made `tensor` for a renderer (see Function.role); a no-op without one."""
    node = tensor._ctx
    if node is not None:
        node.role = role
        if cut is not None:
            node.cut = cut
    return tensor


def sum_to(grad, shape):
    """Undo numpy broadcasting: sum `grad` down to `shape`. The one place every op relies on."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead < 0 or any(n != 1 and n != g for n, g in zip(shape, grad.shape[lead:])):
        raise GraphError(f"a gradient of shape {tuple(grad.shape)} cannot be summed down to shape {tuple(shape)}: "
                         "a backward or a hook returned a gradient of the wrong shape")
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    if lead:
        grad = grad.reshape(shape)
    return grad


def check_finite(array, what):
    xp = backend.get_array_module(array)
    if array.dtype.kind in "fc" and not bool(xp.isfinite(array).all()):
        raise AnomalyError(f"{what} produced NaN or Inf (shape {tuple(array.shape)}, {array.dtype})")


class RemovableHandle:
    """What register_hook returns: `handle.remove()` takes the hook out again."""

    _ids = itertools.count()  # next() on a count is atomic: two threads never share an id

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Function:
    """An op, and (once it ran on inputs that require grad) its node in the graph.

    Subclasses implement `forward(*arrays, **kwargs)` and `backward(grad)` on raw arrays and keep
    what backward needs with `save_for_backward`; the engine frees it after backward. Set when
    recorded: `scope`, and the `shape` and `dtype` of the output. `apply` runs the op on Tensors.
    """

    differentiable = True
    # Set before forward (per input: its node, the leaf tensor, or None when it needs no gradient,
    # all None when no graph is recorded), so forward can save only what the wanted gradients use.
    parents = ()
    saved = ()  # None once backward freed it (the sweep's last step per node)
    saved_versions = ()  # (version counter, value when saved, input index or -1, position in saved)
    hooks = None  # {handle id: fn(grad) -> grad or None}, run before this node's backward; a dict
    # (perhaps empty) whenever `retained` is set, so that the sweep checks one attribute per node
    retained = None  # weakref to the tensor whose .grad keeps this node's incoming gradient
    # What a renderer reads besides op and scope: the node's part in a recurrent cell ("i", "f",
    # "g", "o", "c", "h"; "r", "z", "n" for the GRU) and, on the first node of a step whose
    # incoming state had no graph, how it was cut ("zero": the default state, "detached").
    role = cut = None
    # when recorded: next(node_numbers), above every node it was computed from (the sweep's order); a
    # private name, since a user's Function keeps its own state on itself (torch's _sequence_nr)
    _sequence_nr = -1

    @property
    def needs_input_grad(self):
        """Per input, whether it requires grad (all False in a forward that records no graph)."""
        return tuple(map(operator.is_not, self.parents, itertools.repeat(None)))

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def consume_saved(self):
        """True when this backward may write into its saved arrays: the sweep frees them after it
        (no retain_graph). They are then marked freed at once, so that a second backward after an
        interrupted one fails as after any free instead of reading overwritten arrays. A backward
        that gets False must leave them as they are."""
        if not state.releasing:
            return False
        self.saved = None
        return True

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
        """Run on Tensors. The Tensor side builds the output and records the node."""
        from .tensor import apply
        return apply(cls, *inputs, **kwargs)

    def register_hook(self, fn):
        handle = RemovableHandle(self._hook_dict())
        self.hooks[handle.id] = fn
        return handle

    def retain(self, tensor):
        """Keep the gradient arriving here in tensor.grad (Tensor.retain_grad)."""
        self._hook_dict()
        self.retained = None if tensor is None else weakref.ref(tensor)

    def _hook_dict(self):
        if self.hooks is None:
            self.hooks = {}
        return self.hooks

    def __repr__(self):
        where = f" in {self.scope}" if getattr(self, "scope", None) else ""
        return f"<{self.name}{where}>"


# ---- the backward sweep ---------------------------------------------------------------

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
        # zeros written, not calloc'd: += on a large calloc'd buffer faults each page twice (read
        # maps the shared zero page, the write then copies it); a (T, B, 4H) buffer filled by T
        # slices cost 4x more that way (9 ms against 2 ms for 4 MiB on a 2-core VM)
        buffer = buffers.empty(self.shape, self.values.dtype, self.values)
        index = self.index
        if not self.advanced and len(index) == 1 and type(index[0]) is slice and index[0].step in (None, 1):
            # the rows of a sequence's states that a layer outputs: written once, zeros around them
            start, stop, _ = index[0].indices(self.shape[0])
            buffer[:start] = 0
            buffer[max(start, stop):] = 0
            buffer[start:stop] = self.values
            return buffer
        buffer.fill(0)
        return self.add_into(buffer)


class MatmulGrad:
    """A gradient equal to the sum over its parts of left.T @ right, kept unevaluated until its
    target's gradient is read: what a recurrent weight gets from every time step (left h<t-1>
    (B, H), right the step's gate gradients (B, G*H)). The engine appends the parts as the steps
    send them and then does one (H, T*B) @ (T*B, G*H) matmul, instead of T small matmuls and
    T additions of an (H, G*H) array."""

    __slots__ = ("left", "right", "shape")

    def __init__(self, left, right):
        self.left, self.right, self.shape = [left], [right], (left.shape[-1], right.shape[-1])

    @property
    def values(self):  # what anomaly mode checks: the newest gate gradients
        return self.right[-1]

    def extend(self, other):
        self.left += other.left
        self.right += other.right

    CHUNK = 16  # parts per matmul: big enough for BLAS, small enough that the copies stay small

    def dense(self):
        if len(self.left) == 1:
            return self.left[0].T @ self.right[0]
        xp = backend.get_array_module(self.right[0])
        total = None
        for start in range(0, len(self.left), self.CHUNK):
            part = (xp.concatenate(self.left[start:start + self.CHUNK]).T
                    @ xp.concatenate(self.right[start:start + self.CHUNK]))
            if total is None:
                total = part
            else:
                total += part
        return total


def _is_node(parent):
    return isinstance(parent, Function)


def _toposort(roots):
    """The Function nodes reachable from `roots`, each after every node it was computed from: what
    autograd.grad prunes by (the sweep itself needs no sort: it goes by Function._sequence_nr).

    Iterative depth-first search, one pass, linear in the graph's size: no recursion
    limit on a 100k-step unroll.
    """
    order, visited = [], set()
    append, mark = order.append, visited.add
    for root in roots:
        if id(root) in visited or not isinstance(root, Function):
            continue
        mark(id(root))
        stack = [root, iter(root.parents)]
        while stack:
            for parent in stack[-1]:
                if parent is not None and id(parent) not in visited and isinstance(parent, Function):
                    mark(id(parent))
                    stack.append(parent)
                    stack.append(iter(parent.parents))
                    break
            else:  # every parent placed: the node goes after them
                stack.pop()
                append(stack.pop())
    return order


class _Sweep:
    """One backward pass: gradients summed per node (and per leaf) in buffers the engine owns.

    Arrays that came from an op's backward may be shared between inputs, so they are never
    written into; the first time a second gradient arrives the engine makes its own copy.
    """

    __slots__ = ("grads", "owned", "retain_graph", "capture", "captured", "needed", "executed", "ready", "leaves")

    def __init__(self, retain_graph, capture=None):
        self.grads = {}     # id(node or leaf) -> summed gradient array
        # heap of (-number, id, node): the nodes a gradient reached, the latest made first (the id
        # orders the equal numbers of a copied graph's nodes: copies are unrelated, any order will do)
        self.ready = []
        self.leaves = []    # the leaves a gradient reached, in the order of first arrival
        self.owned = set()  # keys whose array the engine made and may add into in place
        self.retain_graph = retain_graph
        self.capture = capture  # autograd.grad: ids of nodes and leaves to return, no .grad writes
        self.captured = {}
        self.needed = self.executed = None  # with capture: the nodes on a path to it, and those to run

    def prune(self, order):
        """autograd.grad runs only what leads to the captured tensors, as torch does: other parts
        of the graph keep their saved arrays, and their hooks do not fire."""
        needed, executed = set(self.capture), set()
        for node in order:  # parents first
            if any(parent is not None and id(parent) in needed for parent in node.parents):
                executed.add(id(node))
                needed.add(id(node))
        self.needed, self.executed = needed, executed

    def arrive(self, target):
        """The first gradient for `target` is in: a node joins the heap, a leaf the list."""
        if isinstance(target, Function):
            heapq.heappush(self.ready, (-target._sequence_nr, id(target), target))
        else:
            self.leaves.append(target)

    def run(self):
        """Each node once, after every node that consumes it: its summed gradient through its
        hooks and its backward, the results sent on to its parents.

        The order needs no sort: a node is made after every node it was computed from, so its
        sequence number is above theirs, and when the heap hands out the latest-made node it
        holds, every consumer of it that the gradient reaches has run (each was made later).
        """
        grads, send, capture, ready = self.grads, self.send, self.capture, self.ready
        anomaly, retain, needed, leaves = state.anomaly, self.retain_graph, self.needed, self.leaves
        pop, push = heapq.heappop, heapq.heappush
        while ready:
            node = pop(ready)[2]
            grad = grads.pop(id(node))  # every consumer has run: done with it
            if type(grad) is MatmulGrad:
                grad = grad.dense()
            if needed is not None and id(node) not in needed:
                continue
            if node.hooks is not None or capture is not None:
                grad = self._pre_hooks(node, grad)
                if needed is not None and id(node) not in self.executed:
                    continue  # captured, and nothing below it is wanted
            if node.saved is None:
                _check_saved(node)
            for record in node.saved_versions:  # (counter, version when saved, ...)
                if record[0][0] != record[1]:
                    _check_saved(node)
            input_grads = node.backward(grad)
            if type(input_grads) is not tuple:
                input_grads = (input_grads,)
            for parent, parent_grad in zip(node.parents, input_grads):
                if parent is None or parent_grad is None:
                    continue
                if anomaly:
                    check_finite(getattr(parent_grad, "values", parent_grad), f"backward of {node.name}")
                key = id(parent)
                if key in grads:
                    send(parent, parent_grad)
                    continue
                if type(parent_grad) is not SparseGrad and parent_grad.shape == parent.shape:
                    grads[key] = parent_grad  # the usual first arrival, inlined
                else:
                    send(parent, parent_grad)
                if isinstance(parent, Function):  # (arrive, inlined)
                    push(ready, (-parent._sequence_nr, id(parent), parent))
                else:
                    leaves.append(parent)
            if not retain:  # free what backward needed: a kept graph costs its nodes, not its arrays
                node.saved = None
                if node.saved_versions:
                    node.saved_versions = ()

    def _pre_hooks(self, node, grad):
        """What autograd.grad captures (before the hooks, as torch), then the tensor hooks on a
        non-leaf, then its retained .grad (after them)."""
        if self.capture is not None and id(node) in self.capture:
            self.captured[id(node)] = grad
        if node.hooks:
            grad = _run_hooks(node.hooks, grad)
        if node.retained is not None:  # (retain_grad makes node.hooks a dict too, so this is reached)
            tensor = node.retained()
            if tensor is not None:
                tensor._accumulate_grad(grad, owned=False)
        return grad

    def send(self, target, grad):
        """Add `grad` (dense, or a SparseGrad) into the buffer of `target` (a node or a leaf),
        summed down to its shape."""
        key = id(target)
        grads, owned = self.grads, self.owned
        previous = grads.get(key)
        if type(grad) is MatmulGrad or type(previous) is MatmulGrad:
            if type(grad) is type(previous):
                previous.extend(grad)  # the engine's own object (a step's, stored on first arrival)
                return
            if previous is None:
                grads[key] = grad
                return
            if type(previous) is MatmulGrad:  # mixed with a dense or sparse gradient: evaluate it now
                previous = grads[key] = previous.dense()
                owned.add(key)
            else:
                grad = grad.dense()
        if type(grad) is SparseGrad:
            if previous is None:
                grads[key] = grad.dense()
                owned.add(key)
            elif key in owned:
                grad.add_into(previous)
            else:
                grads[key] = grad.add_into(previous.copy())
                owned.add(key)
            return
        if grad.shape != target.shape:
            grad = sum_to(grad, target.shape)
        if previous is None:
            grads[key] = grad
        elif key in owned:
            previous += grad
        else:
            grads[key] = backend.ensure_array(previous + grad)
            owned.add(key)

    def finish(self):
        """Each leaf's summed gradient through the leaf's hooks, then into .grad (or captured), once."""
        grads, owned_keys, capture = self.grads, self.owned, self.capture
        for leaf in self.leaves:
            key = id(leaf)
            grad = grads.get(key)
            if grad is None:
                continue
            if type(grad) is MatmulGrad:
                grad = grad.dense()
                owned_keys.add(key)
            if capture is not None and key not in capture:
                continue  # autograd.grad: other leaves are left alone (their hooks do not fire)
            # a backward's fresh array that only the sweep refers to (this dict, this local): .grad
            # takes it uncopied, as torch's AccumulateGrad steals a gradient nobody else holds; not
            # a view (its memory may be another's), not read-only (.grad is written in place), and
            # numpy's only (other backends keep references)
            owned = key in owned_keys or (type(grad) is np.ndarray and grad.base is None
                                          and sys.getrefcount(grad) <= _UNSHARED and grad.flags.writeable)
            hooks = leaf._hooks
            if hooks:
                # not owned any more: a hook may keep the array it was given, and .grad is written in
                # place later (clip_grad_norm_, as torch's mul_); torch clones it then too
                grad, owned = _run_hooks(hooks, grad), False
            if capture is None:
                leaf._accumulate_grad(grad, owned)
            else:
                self.captured[key] = grad


def _calibrate():
    grads = {0: np.empty(1)}
    grad = grads[0]  # as in finish: the dict's reference, a local one, getrefcount's argument
    return sys.getrefcount(grad)


_UNSHARED = _calibrate()


def _run_hooks(hooks, grad):
    for fn in list(hooks.values()):
        replaced = fn(grad)
        if replaced is not None:
            if replaced.shape != grad.shape or replaced.dtype != grad.dtype:
                raise GraphError(f"hook {getattr(fn, '__name__', fn)!r} returned a gradient of shape "
                                 f"{tuple(replaced.shape)} ({replaced.dtype}) for one of shape "
                                 f"{tuple(grad.shape)} ({grad.dtype}): a hook may change values only")
            grad = replaced
    return grad


def _check_saved(node):
    if node.saved is None:
        raise GraphError(
            f"backward through '{node.name}'{_where(node)} a second time: its saved arrays were "
            "freed by the first backward; pass retain_graph=True to the first backward")
    for counter, expected, index, position in node.saved_versions:
        if counter[0] != expected:
            what = "its output" if index < 0 else f"its input {index}"
            array = node.saved[position]
            raise GraphError(
                f"backward of '{node.name}'{_where(node)}: {what} (shape {tuple(array.shape)}, {array.dtype}), "
                f"saved for its gradient, was modified by an in-place operation: it is at version "
                f"{counter[0]}, expected version {expected}. Its forward value is gone; make the in-place "
                "change after backward, or on a .clone()")


def _where(node):
    return f" (scope {node.scope})" if getattr(node, "scope", None) else ""


def _targets(tensors):
    """Tensor -> what the engine sends its gradient to: its node, or itself for a leaf."""
    return [t._grad_target() for t in tensors]


def run_backward(tensors, grads, retain_graph=False, capture=None):
    """Reverse-mode sweep from `tensors` with upstream gradients `grads` (arrays of their shapes).

    capture: a list of tensors whose gradients to return (autograd.grad) instead of writing .grad.
    """
    targets = _targets(tensors)
    sweep = _Sweep(retain_graph, None if capture is None else {id(k) for k in _targets(capture)})
    previous, previous_releasing = state.grad_enabled, state.releasing
    state.grad_enabled = False  # backward builds no graph (in this thread only)
    state.releasing = not retain_graph
    try:
        for target, grad in zip(targets, grads):
            if id(target) not in sweep.grads:
                sweep.arrive(target)
            sweep.send(target, grad)
        if capture is not None:
            sweep.prune(_toposort(targets))
        sweep.run()
        sweep.finish()
    finally:
        state.grad_enabled, state.releasing = previous, previous_releasing
    if capture is not None:
        return [sweep.captured.get(id(k)) for k in _targets(capture)]  # (views fresh already: no new nodes)
    return None


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, returned as a tuple of Tensors instead of
    accumulated into .grad, as torch.autograd.grad. Higher-order gradients are not supported."""
    if create_graph:
        raise GraphError("autograd.grad(create_graph=True): higher-order gradients are not supported by "
                         "this engine (backward records no graph)")
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise GraphError(f"autograd.grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise GraphError(f"autograd.grad: input {i} of shape {t.shape} does not require grad")
    seeds = [out._seed(g) for out, g in zip(outputs, grad_outputs)]
    arrays = run_backward(outputs, seeds, retain_graph=bool(retain_graph), capture=inputs)
    results = []
    for i, (t, g) in enumerate(zip(inputs, arrays)):
        if g is None and not allow_unused:
            raise GraphError(f"autograd.grad: input {i} of shape {t.shape} was not used to compute the "
                             "outputs; pass allow_unused=True to get None for it")
        # a copy: the array may be shared with other gradients or be the caller's own seed
        results.append(None if g is None else t._wrap(g.astype(t.dtype, copy=True)))
    return tuple(results)


# ---- the public read of a graph (what a renderer uses) ---------------------------------

class GraphNode(NamedTuple):
    """One node of a walked graph. `id` counts from 0 in the walk's order (never id()),
    so the same graph gives the same ids every run."""

    id: int
    op: str           # the op's name ("matmul", "tanh", ...) or "leaf"
    scope: str | None  # tg.scope label, e.g. "lstm/l0/t3"
    parents: tuple    # the GraphNodes it was computed from, in input order (inputs without grad left out)
    shape: tuple
    dtype: object
    tensor: object    # the leaf Tensor (a parameter, an input with requires_grad); None for ops
    fn: object        # the Function (the op's node, for hooks); None for leaves
    role: str | None = None  # a cell's "i", "f", "g", "o", "c", "h", "r", "z", "n" (Function.role)

    @property
    def is_leaf(self):
        return self.fn is None

    @property
    def name(self):
        """A leaf's label if it has one (tensor.name), else the op name."""
        label = getattr(self.tensor, "name", None)
        return label if label else self.op


def walk(roots):
    """An iterator over every node reachable from `roots` (a Tensor or a list of them), once each,
    each after the nodes it was computed from, as GraphNodes. Iterative: any depth of unroll is
    fine. A sequence layer's loop in one node is expanded into its steps first, when walk is
    called (tinygrad_rnn.sequence), not when the iterator is first advanced."""
    if not isinstance(roots, (list, tuple)):
        roots = [roots]
    from .sequence import expand_all
    starts = _targets([r for r in roots if r.requires_grad])
    expand_all(starts)
    return _walk(starts)


def _walk(starts):
    made = {}  # id(node or leaf) -> GraphNode
    for start in starts:
        if id(start) in made:
            continue
        stack = [(start, False)]
        while stack:
            item, expanded = stack.pop()
            if id(item) in made:
                continue
            parents = [p for p in item.parents if p is not None] if _is_node(item) else []
            if not expanded and any(id(p) not in made for p in parents):
                stack.append((item, True))
                stack.extend((p, False) for p in reversed(parents) if id(p) not in made)
                continue
            if _is_node(item):
                node = GraphNode(len(made), item.name, item.scope, tuple(made[id(p)] for p in parents),
                                 tuple(item.shape), item.dtype, None, item, item.role)
            else:
                node = GraphNode(len(made), "leaf", None, (), tuple(item.shape), item.dtype, item, None)
            made[id(item)] = node
            yield node
