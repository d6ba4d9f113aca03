"""In-place ops, tensor and module hooks, autograd.grad, grad modes, Module.to(dtype) and walk.

Most tests run one function, written once against a tiny adapter (`Lib`), on our tensors and on
torch's (the test-only oracle) built from the same float64 arrays, then compare forward values,
every leaf's gradient, what hooks saw, and the .grad of tensors kept along the way, to 1e-10.
Torch is imported inside the tests that need it, so the rest runs without it.
"""
import threading
import warnings
from collections import defaultdict

import numpy as np
import pytest

import tinygrad_rnn as tg

TOL = 1e-10


# ---- the adapter and the comparison helpers --------------------------------------------------

def to_numpy(x):
    """A hook's gradient, a tensor of either library, or None -> a numpy copy (or None)."""
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch
        return x.detach().numpy().copy()
    if isinstance(x, tg.Tensor):
        return x.numpy().copy()
    return np.array(x, copy=True)


class Lib:
    """What a pattern needs from a library beyond the methods both share: constructors in float64,
    no_grad, hook recorders (what they saw goes to `seen`) and `keep` (tensors whose .grad to compare)."""

    def __init__(self, mod):
        self.mod, self.is_tg = mod, mod is tg
        self.f64 = "float64" if self.is_tg else mod.float64
        self.seen = defaultdict(list)
        self.keep = {}

    def zeros(self, *shape):
        return self.mod.zeros(*shape, dtype=self.f64)

    def const(self, array):
        """A constant tensor; bool and int arrays keep their dtype (masks, indices)."""
        return self.mod.tensor(np.asarray(array))

    def leaf(self, array, requires_grad=True):
        return self.mod.tensor(np.asarray(array, dtype=np.float64), dtype=self.f64, requires_grad=requires_grad)

    def no_grad(self):
        return self.mod.no_grad()

    def grad(self, *args, **kwargs):
        return (tg.autograd.grad if self.is_tg else self.mod.autograd.grad)(*args, **kwargs)

    def record(self, name, replace=None):
        """A tensor hook: records (a copy of) the gradient it gets; returns replace(grad) if given."""
        def hook(g):
            self.seen[name].append(to_numpy(g))
            return None if replace is None else replace(g)
        return hook

    def record_module(self, name, replace=None):
        """A full backward hook: records grad_input and grad_output; returns replace(grad_input) if given."""
        def hook(module, grad_input, grad_output):
            self.seen[name].append(("grad_input", [to_numpy(g) for g in grad_input]))
            self.seen[name].append(("grad_output", [to_numpy(g) for g in grad_output]))
            return None if replace is None else replace(grad_input)
        return hook


def libs():
    torch = pytest.importorskip("torch")
    return Lib(tg), Lib(torch)


def flat_tensors(value):
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flat_tensors(v)]
    return [value]


def close(ours, theirs, what):
    ours, theirs = to_numpy(ours), to_numpy(theirs)
    if ours is None or theirs is None:
        assert ours is None and theirs is None, f"{what}: ours {ours} vs torch {theirs}"
        return
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=TOL, atol=TOL, err_msg=what)


def close_seen(ours, theirs):
    """Hook records: same hooks, called as often, with the same gradients."""
    assert sorted(ours) == sorted(theirs), f"hooks called: ours {sorted(ours)} vs torch {sorted(theirs)}"
    for name in theirs:
        assert len(ours[name]) == len(theirs[name]), \
            f"hook {name!r}: called {len(ours[name])} times, torch {len(theirs[name])}"
        for i, (a, b) in enumerate(zip(ours[name], theirs[name])):
            if isinstance(b, tuple):  # a module hook's (label, [grads])
                assert a[0] == b[0] and len(a[1]) == len(b[1]), f"hook {name!r} call {i}: {a} vs torch {b}"
                for j, (x, y) in enumerate(zip(a[1], b[1])):
                    close(x, y, f"hook {name!r} call {i} {b[0]}[{j}]")
            else:
                close(a, b, f"hook {name!r} call {i}")


def weighted_loss(outputs, rng_seed, mod):
    """sum_i (out_i * r_i).sum() over outputs that require grad, r_i fixed random arrays."""
    rng = np.random.default_rng(rng_seed)
    total = None
    for out in outputs:
        weights = rng.standard_normal(tuple(out.shape))
        if not out.requires_grad:
            continue
        term = (out * mod.tensor(weights, dtype=out.dtype)).sum()
        total = term if total is None else total + term
    return total


def make_arrays(shapes, positive=(), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, s) if i in positive else rng.standard_normal(s) for i, s in enumerate(shapes)]


def run(L, fn, arrays, backwards=1):
    """fn(L, *leaves) on fresh leaves of L's library, then backward of a fixed weighting of its outputs."""
    leaves = [L.leaf(a) for a in arrays]
    outputs = flat_tensors(fn(L, *leaves))
    loss = weighted_loss(outputs, 1, L.mod)
    for i in range(backwards if loss is not None else 0):
        loss.backward(retain_graph=i < backwards - 1)
    return leaves, outputs


def check_parity(fn, shapes, positive=(), backwards=1):
    """Run fn on our tensors and on torch's; compare outputs, leaf grads, hook records and kept tensors."""
    ours, theirs = libs()
    arrays = make_arrays(shapes, positive)
    our_leaves, our_out = run(ours, fn, arrays, backwards)
    their_leaves, their_out = run(theirs, fn, arrays, backwards)
    assert len(our_out) == len(their_out)
    for i, (o, t) in enumerate(zip(our_out, their_out)):
        close(o, t, f"output {i}")
        assert o.requires_grad == t.requires_grad, f"output {i}: requires_grad {o.requires_grad} vs torch"
    for i, (o, t) in enumerate(zip(our_leaves, their_leaves)):
        close(o, t, f"leaf {i} value")
        close(o.grad, t.grad, f"leaf {i} grad")
    close_seen(ours.seen, theirs.seen)
    assert sorted(ours.keep) == sorted(theirs.keep)
    for name, t in theirs.keep.items():
        o = ours.keep[name]
        close(o, t, f"kept {name!r} value")
        their_grad = t.grad if t.is_leaf or t.retains_grad else None  # torch warns on a non-leaf's .grad
        close(o.grad, their_grad, f"kept {name!r} .grad")
        assert (o.requires_grad, o.is_leaf, o.retains_grad) == (t.requires_grad, t.is_leaf, t.retains_grad), name
    return ours, theirs


def check_both_raise(fn, shapes, our_error, match=None):
    """fn (forward and backward) raises our_error here and (if torch is there) RuntimeError in torch."""
    arrays = make_arrays(shapes)
    with pytest.raises(our_error, match=match):
        run(Lib(tg), fn, arrays)
    with pytest.raises(RuntimeError):
        run(libs()[1], fn, arrays)


# ---- in-place ops against torch ----------------------------------------------------------------

MASK = np.array([[True, False, False, True], [False, False, True, False], [True, True, False, False]])


def _ret(t, step):
    """Apply the in-place step(s) to t and return t (lets a pattern be one expression)."""
    step(t)
    return t


def _view_writes(L, a, w, v):
    b = a * 1
    b[1].mul_(w)
    b.T[0] += v
    return b


def _view_before_base_change(L, a):
    b = a * 1
    v = b[0]
    b.mul_(2)
    return v * 3


def _chain(L, a, w, v):
    b = a * 1
    b.mul_(w).add_(a, alpha=2).clamp_(-1, 1)
    b /= v
    b -= 0.25
    return b


def _alias(L, a, w):
    b = a * 1
    c = b
    b += w
    assert c is b
    return c


def _reshape_alias(L, a, w):
    b = a * 1
    c = b.reshape(12)
    c.mul_(w.reshape(12))
    return b


def _setitem_then_used(L, a, w):
    b = a * 2
    b[0] = w
    return (b * b).sum(0) + b.tanh()


def _grad_free_target(L, w, v):
    h = L.zeros(3, 4)
    h += w
    h[1] = v
    h[2, 1:] = v[:3] * 2
    return h.exp()


def _no_grad_on_non_leaf(L, a, w):
    b = a * 1
    with L.no_grad():
        b.mul_(2)
        b[0] = 5.0
    return b * w


def _detached_alias(L, a, w):
    b = a * 1
    d = b.detach()
    d.mul_(3)
    return b * w


def _inplace_after_add(L, a, w):
    b = a * 1
    y = b + w  # add saves nothing: the later write is fine
    b.add_(1)
    return y, b


def _leaf_under_no_grad(L, a, w):
    with L.no_grad():
        a.mul_(2)
        a[0] = 1.0
        a.T[1] += 0.5
        a.clamp_(-1, 1)
    assert a.requires_grad and a.is_leaf
    return a * w


def _set(index, value_fn):
    """b = a * 1; b[index] = value_fn(L, w) (value_fn None: b[index] = b[1], a row of itself)."""
    def fn(L, a, w=None):
        b = a * 1
        b[index] = b[1] if value_fn is None else value_fn(L, w)
        return b
    return fn


def _view_of_grad_free_base(L, w):
    h = L.zeros(3, 4)
    v = h[0]
    v += w
    return h * v, v


def _expand_then_base_write(L, a):
    b = a * 1
    e = b.expand(3, 4)
    b.mul_(2)
    return e * 1


def _view_of_view_after_base_writes(L, a, w):
    b = a * 1
    v = b.T[1:]
    b.add_(w)
    b[0, 2] = 7.0
    return v * 2


def _earlier_view_sees_write(L, a, w):
    b = a * 1
    r = b[0]
    b[0, 1:] = w
    return r * 2, b


def _int_array_iadd(L, a, w):
    b = a * 1
    b[[0, 2]] += w  # a copy (advanced index) added to, then written back
    return b


def _column_imul(L, a, w):
    b = a * 1
    b[:, 0] *= w  # in place through the view, then written back through it
    return b


def _view_read_after_base_write(L, a, w):
    b = a * 1
    v = b[0]
    b.mul_(w)
    return v + b[1]


INPLACE = {
    "iadd": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.__iadd__(w))),
    "isub-broadcast": ([(3, 4), (4,)], lambda L, a, w: _ret(a * 1, lambda b: b.__isub__(w))),
    "imul-saves-its-target": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 2, lambda b: b.__imul__(w))),
    "itruediv": ([(3, 4), (4,)], lambda L, a, w: _ret(a + 0.5, lambda b: b.__itruediv__(w))),
    "numbers": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: (b.__isub__(1.5), b.__imul__(3), b.__itruediv__(2),
                                                                   b.__iadd__(0.25)))),
    "add_-alpha": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.add_(w, alpha=-0.5))),
    "sub_-alpha": ([(3, 4), (4,)], lambda L, a, w: _ret(a * 1, lambda b: b.sub_(w, alpha=2.0))),
    "mul_-div_": ([(3, 4), (4,), (3, 1)], lambda L, a, w, v: _ret(a * 1, lambda b: b.mul_(w).div_(v))),
    "zero_": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.zero_()) + w),
    "fill_-number": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.fill_(2.5)) * w),
    "fill_-tensor": ([(3, 4), (2,)], lambda L, a, w: _ret(a * 1, lambda b: b.fill_(w.sum()))),
    "copy_-broadcast": ([(3, 4), (4,)], lambda L, a, w: _ret(a * 1, lambda b: b.copy_(w))),
    "copy_-then-used": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a.clone(), lambda b: b.copy_(w * 2)) * a),
    "clamp_": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.clamp_(-0.5, 0.5))),
    "clamp_-min-only": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.clamp_(min=0.0))),
    "masked_fill_": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.masked_fill_(L.const(MASK), 0.7))),
    "masked_fill_-tensor": ([(3, 4), (2,)],
                            lambda L, a, w: _ret(a * 1, lambda b: b.masked_fill_(L.const(MASK), w.sum()))),
    "chain": ([(3, 4), (3, 4), (4,)], _chain),
    "setitem-row": ([(3, 4), (4,)], _set(1, lambda L, w: w)),
    "setitem-broadcast-value": ([(3, 4), (4,)], _set(slice(1, None), lambda L, w: w)),
    "setitem-columns": ([(3, 4), (3, 2)], _set((slice(None), slice(1, 3)), lambda L, w: w)),
    "setitem-number": ([(3, 4), (1,)], _set((0, 0), lambda L, w: 3.0)),
    "setitem-0d-tensor": ([(3, 4), (3,)], _set((2, 1), lambda L, w: w.sum())),
    "setitem-int-array": ([(3, 4), (2, 4)], _set([0, 2], lambda L, w: w)),
    "setitem-int-array-pairs": ([(3, 4), (2,)], _set(([0, 2], [1, 3]), lambda L, w: w)),
    "setitem-int-array-broadcast": ([(3, 4), (4,)], _set([2, 0], lambda L, w: w)),
    "setitem-bool-mask": ([(3, 4), (1,)], lambda L, a, w: _set(L.const(MASK), lambda L, w: 0.0)(L, a, w)),
    "setitem-then-used": ([(3, 4), (4,)], _setitem_then_used),
    "target-without-grad": ([(3, 4), (4,)], _grad_free_target),
    "view-writes": ([(3, 4), (4,), (3,)], _view_writes),
    "view-before-base-change": ([(3, 4)], _view_before_base_change),
    "view-of-view-write": ([(3, 4), (2,)], lambda L, a, w: _ret(a * 1, lambda b: b[1:][0, 2:].add_(w))),
    "transpose-view-copy_": ([(3, 4), (4, 3)], lambda L, a, w: _ret(a * 1, lambda b: b.T.copy_(w))),
    "unsqueeze-view-add_": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.unsqueeze(0).add_(w))),
    "alias": ([(3, 4), (3, 4)], _alias),
    "reshape-alias": ([(3, 4), (3, 4)], _reshape_alias),
    "no-grad-on-non-leaf": ([(3, 4), (3, 4)], _no_grad_on_non_leaf),
    "detached-alias": ([(3, 4), (3, 4)], _detached_alias),
    "in-place-after-add": ([(3, 4), (4,)], _inplace_after_add),
    "leaf-under-no-grad": ([(3, 4), (3, 4)], _leaf_under_no_grad),
    "int-array-iadd": ([(3, 4), (2, 4)], _int_array_iadd),
    "column-imul": ([(3, 4), (3,)], _column_imul),
    "earlier-view-sees-base-write": ([(3, 4), (3,)], _earlier_view_sees_write),
    "view-of-grad-free-base": ([(4,)], _view_of_grad_free_base),
    "self-add_": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.add_(b))),
    "setitem-own-row": ([(3, 4)], _set(0, None)),
    "masked_fill_-broadcast-mask": ([(3, 4), (2,)], lambda L, a, w: _ret(a * 1, lambda b: b.masked_fill_(
        L.const(MASK[0]), w.sum()))),
    # no broadcast here: torch sums a broadcast copy_'s gradient in float32, ours in float64 then casts
    "copy_-casts-float32": ([(3, 4), (3, 4)], lambda L, a, w: _ret(a * 1, lambda b: b.copy_(w.float()))),
    "setitem-casts-float32": ([(3, 4), (4,)], _set(0, lambda L, w: w.float())),
    "expand-then-base-write": ([(1, 4)], _expand_then_base_write),
    "setitem-ellipsis": ([(3, 4), (4,)], _set(Ellipsis, lambda L, w: w)),
    "setitem-none-index": ([(3, 4), (4,)], _set((None, 0), lambda L, w: w)),
    "setitem-negative-indices": ([(3, 4), (2,)], _set((-1, slice(-2, None)), lambda L, w: w)),
    "setitem-negative-int-array": ([(3, 4), (2, 4)], _set([-1, 0], lambda L, w: w)),
    "setitem-int-tensor-index": ([(3, 4), (2, 4)], lambda L, a, w: _set(L.const([2, 1]), lambda L, w: w)(L, a, w)),
    "view-of-view-after-base-writes": ([(3, 4), (4,)], _view_of_view_after_base_writes),
    "view-read-after-base-write": ([(3, 4), (4,)], _view_read_after_base_write),
    "transpose-twice-view-add_": ([(3, 4), (4,)], lambda L, a, w: _ret(a * 1, lambda b: b.T.T[0].add_(w))),
    "reshape-row-mul_": ([(3, 4), (6,)], lambda L, a, w: _ret(a * 1, lambda b: b.reshape(2, 6)[1].mul_(w))),
    "view-zero_": ([(3, 4), (4,)], lambda L, a, w: _ret(a * 1, lambda b: b[1].zero_()) * w),
    "view-fill_-tensor": ([(3, 4), (2,)], lambda L, a, w: _ret(a * 1, lambda b: b[:, 1].fill_(w.sum()))),
    "view-clamp_": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: (b[0].clamp_(max=0.0), b[2].clamp_(min=0.1)))),
    "div_-by-own-sum": ([(3, 4)], lambda L, a: _ret(a.abs() + 1, lambda b: b.div_(b.sum()))),
    # torch refuses these two (a view of a multi-output op; overlapping source and target):
    # ours allows them, so compare with torch's spelling of the same computation
    "chunk-view-write": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: (b.chunk(2, 1)[0] if L.is_tg else b[:, :2])
                                                     .mul_(2))),
    "overlapping-setitem": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.__setitem__(
        slice(1, None), b[:-1] if L.is_tg else b[:-1].clone()))),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_matches_torch(name):
    shapes, fn = INPLACE[name]
    check_parity(fn, shapes, positive=(1, 2) if name in ("itruediv", "mul_-div_", "chain") else ())


def test_inplace_returns_self_and_bumps_version():
    a = tg.tensor(np.ones((2, 3)), dtype="float64", requires_grad=True)
    b = a * 1
    before = b._version
    for step in (lambda t: t.add_(1), lambda t: t.mul_(2), lambda t: t.zero_(), lambda t: t.fill_(1.0),
                 lambda t: t.clamp_(0, 1), lambda t: t.copy_(a)):
        assert step(b) is b
    assert b._version > before and not b.is_leaf


def test_target_that_needs_no_grad_starts_requiring_it():
    w = tg.tensor(np.arange(3.0), dtype="float64", requires_grad=True)
    h = tg.zeros(3, dtype="float64")
    h += w
    assert h.requires_grad and not h.is_leaf
    h.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones(3))
    g = tg.zeros(2, 3, dtype="float64")
    g[0].add_(w)  # through a view: the base records it
    assert g.requires_grad and not g.is_leaf


LEAF_WRITES = {
    "iadd": lambda L, a: a.__iadd__(1.0),
    "isub": lambda L, a: a.__isub__(1.0),
    "imul": lambda L, a: a.__imul__(2.0),
    "itruediv": lambda L, a: a.__itruediv__(2.0),
    "add_": lambda L, a: a.add_(a * 1),
    "sub_": lambda L, a: a.sub_(1.0),
    "mul_": lambda L, a: a.mul_(2.0),
    "div_": lambda L, a: a.div_(2.0),
    "zero_": lambda L, a: a.zero_(),
    "fill_": lambda L, a: a.fill_(3.0),
    "copy_": lambda L, a: a.copy_(L.zeros(3, 4)),
    "clamp_": lambda L, a: a.clamp_(-1, 1),
    "masked_fill_": lambda L, a: a.masked_fill_(L.const(MASK), 0.0),
    "setitem": lambda L, a: a.__setitem__(0, 1.0),
    "setitem-int-array": lambda L, a: a.__setitem__([0, 2], L.zeros(4)),
    "view-add_": lambda L, a: a[0].add_(1.0),
    "view-setitem": lambda L, a: a[1].__setitem__(2, 1.0),
    "transpose-view-iadd": lambda L, a: a.T[0].__iadd__(1.0),
}


@pytest.mark.parametrize("name", sorted(LEAF_WRITES))
def test_inplace_on_leaf_that_requires_grad_raises(name):
    """Refused (before any write) while grad is enabled, done under no_grad; the torch part last."""
    ours, array = Lib(tg), make_arrays([(3, 4)])[0]
    a = ours.leaf(array)
    with pytest.raises(tg.GraphError, match="leaf"):
        LEAF_WRITES[name](ours, a)
    np.testing.assert_array_equal(a.numpy(), array)
    assert a.is_leaf and a.requires_grad and a._version == 0
    with tg.no_grad():  # as optimisers do
        LEAF_WRITES[name](ours, a)
    assert a.is_leaf and a.requires_grad and a._ctx is None and a._version > 0
    theirs = libs()[1]
    with pytest.raises(RuntimeError):
        LEAF_WRITES[name](theirs, theirs.leaf(array))
    t = theirs.leaf(array)
    with theirs.no_grad():
        LEAF_WRITES[name](theirs, t)
    close(a, t, "after the write under no_grad")


def _output_written_under_no_grad(L, a):
    y = a.exp()
    with L.no_grad():
        y.add_(1)
    return y


SAVED_THEN_WRITTEN = {
    "output-of-exp": ([(3, 4)], lambda L, a: _ret(a.exp(), lambda b: b.add_(1))),
    "output-of-tanh-via-view": ([(3, 4)], lambda L, a: _ret(a.tanh(), lambda b: b[0].mul_(2))),
    "input-of-mul": ([(3, 4), (3, 4)], lambda L, a, w: _saved_input_written(a, w, lambda b: b.add_(1))),
    "input-of-mul-setitem": ([(3, 4), (3, 4)],
                             lambda L, a, w: _saved_input_written(a, w, lambda b: b.__setitem__(0, 0.0))),
    "self-mul_": ([(3, 4)], lambda L, a: _ret(a * 1, lambda b: b.mul_(b))),
    "input-of-pow": ([(3, 4)], lambda L, a: _saved_input_written(a, 2.0, lambda b: b.add_(1), op=lambda b, w: b ** w)),
    "output-written-through-detached-alias": ([(3, 4)], lambda L, a: _ret(a.exp(), lambda y: y.detach().add_(1))),
    "output-written-under-no-grad": ([(3, 4)], _output_written_under_no_grad),
}


def _saved_input_written(a, w, write, op=lambda b, w: b * w):
    b = a * 1
    y = op(b, w)  # saves b (b * w: for w's gradient)
    write(b)
    return y


@pytest.mark.parametrize("name", sorted(SAVED_THEN_WRITTEN))
def test_writing_a_saved_tensor_fails_backward_as_in_torch(name):
    shapes, fn = SAVED_THEN_WRITTEN[name]
    check_both_raise(fn, shapes, tg.GraphError, match="modified by an in-place operation")


# b's value is saved but needs no gradient (the other operand is a constant): torch does not save it,
# so writing b afterwards is fine there
CONSTANT_OPERAND = {
    "mul-number": lambda L, b: b * 2,
    "rmul-number": lambda L, b: 2 * b,
    "div-number": lambda L, b: b / 2,
    "mul-constant-tensor": lambda L, b: b * L.const(np.full((3, 4), 2.0)),
    "matmul-constant": lambda L, b: b @ L.const(np.arange(12.0).reshape(4, 3)),
}


@pytest.mark.parametrize("name", sorted(CONSTANT_OPERAND))
def test_writing_an_operand_no_gradient_needs_matches_torch(name):
    op = CONSTANT_OPERAND[name]
    check_parity(lambda L, a: _saved_input_written(a, None, lambda b: b.add_(1), op=lambda b, _: op(L, b)),
                 [(3, 4)])


def test_inplace_dtype_rules():
    t = tg.tensor(np.array([1, 2, 3]))
    with pytest.raises(tg.DTypeError):
        t += 0.5
    with pytest.raises(tg.DTypeError):
        t.add_(tg.tensor(np.array([0.5, 0.5, 0.5])))
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])
    t += 2  # int into int is fine
    assert t.dtype == np.int64 and t.tolist() == [3, 4, 5]
    f = tg.zeros(3, dtype="float32")
    f += tg.tensor(np.ones(3), dtype="float64")  # same kind: cast to the target's dtype, as torch
    assert f.dtype == np.float32 and f.tolist() == [1.0, 1.0, 1.0]


def test_inplace_int_error_matches_torch():
    torch = pytest.importorskip("torch")
    t = torch.tensor([1, 2, 3])
    with pytest.raises(RuntimeError):
        t += 0.5


@pytest.mark.parametrize("write", [
    lambda a, b: a.__iadd__(b), lambda a, b: a.add_(b), lambda a, b: a.mul_(b), lambda a, b: a.copy_(b),
    lambda a, b: a.__setitem__(slice(None), b)])
def test_inplace_does_not_broadcast_its_target(write):
    a = tg.zeros(3, dtype="float64")
    with pytest.raises(tg.ShapeError):
        write(a, tg.zeros(2, 3, dtype="float64"))
    w = tg.tensor(np.ones((2, 3)), dtype="float64", requires_grad=True)
    with pytest.raises(tg.ShapeError):
        write(a, w)
    assert a.tolist() == [0.0, 0.0, 0.0] and not a.requires_grad


def test_inplace_target_broadcast_error_matches_torch():
    torch = pytest.importorskip("torch")
    a = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        a += torch.zeros(2, 3, dtype=torch.float64)


def test_writing_an_expanded_tensor_raises_shape_error():
    e = tg.zeros(1, 3, dtype="float64").expand(2, 3)
    with pytest.raises(tg.ShapeError):
        e += 1


# ---- tensor hooks and retain_grad against torch -------------------------------------------------

def _leaf_hook(L, a, w):
    a.register_hook(L.record("a"))
    return a * w + a.exp()  # a used twice: its hook still runs once, on the summed gradient


def _leaf_hook_replaces(L, a, w):
    a.register_hook(L.record("a", lambda g: g * 2))
    w.register_hook(L.record("w", lambda g: g - 1))
    return (a * w).tanh()


def _non_leaf_hook_replaces(L, a, w):
    b = a * w
    b.register_hook(L.record("b", lambda g: g * 3 + 1))
    return b.tanh(), b * a  # b used twice: one call with the summed gradient


def _hooks_in_order(L, a):
    b = a * 1
    b.register_hook(L.record("first", lambda g: g + 1))
    b.register_hook(L.record("second"))
    b.register_hook(L.record("third", lambda g: g * 0.5))
    return b.exp()


def _removed_hooks(L, a, w):
    b = a * w
    gone = b.register_hook(L.record("gone", lambda g: g * 100))
    b.register_hook(L.record("kept"))
    leaf_gone = a.register_hook(L.record("leaf_gone", lambda g: g * 0))
    gone.remove()
    leaf_gone.remove()
    leaf_gone.remove()  # twice is harmless
    return b.tanh()


def _hook_then_inplace(L, a, w):
    b = a * 1
    b.register_hook(L.record("b_before"))
    b.mul_(w)
    b.register_hook(L.record("b_after"))
    return b


def _hook_on_view(L, a):
    b = a * 2
    v = b[1:]
    v.register_hook(L.record("view", lambda g: g * 2))
    return v.exp(), b


def _retain(L, a, w):
    b = a * w
    b.retain_grad()
    b.retain_grad()  # twice is harmless
    a.retain_grad()  # a no-op on a leaf
    c = b.tanh()
    L.keep.update(b=b, a=a, c=c)
    return c * a


def _retain_with_hook(L, a):
    b = a * 2
    b.retain_grad()
    b.register_hook(L.record("b", lambda g: g * 2))  # torch 2: .grad sees the hooked gradient
    L.keep["b"] = b
    return b.exp()


def _retain_then_inplace(L, a, w):
    b = a * 1
    b.retain_grad()
    b.mul_(w)  # retain_grad follows b to its new value
    L.keep["b"] = b
    return b.exp()


def _hook_then_view_write(L, a, w):
    b = a * 1
    b.register_hook(L.record("b"))  # on b's value before the write through its view
    b[0].mul_(w[0])
    return b


def _retain_then_setitem(L, a, w):
    b = a * 1
    b.retain_grad()
    b[0] = w[0]
    L.keep["b"] = b
    return b.exp()


def _view_hook_then_base_write(L, a):
    b = a * 1
    v = b[0]
    v.register_hook(L.record("v"))
    b.mul_(2)  # v's history is made again from b's new value
    return v * 3


def _write_under_no_grad_then_hook(L, a, w):
    b = a * 1
    with L.no_grad():
        b[0] = 1.0
    b.register_hook(L.record("b"))
    return b * w


def _view_retain_then_base_write(L, a):
    b = a * 1
    v = b[0]
    v.retain_grad()
    b.mul_(2)
    L.keep["v"] = v
    return v * 3


HOOKS = {
    "leaf-hook": ([(3, 4), (3, 4)], _leaf_hook, 1),
    "leaf-hook-two-backwards": ([(3, 4), (3, 4)], _leaf_hook, 2),
    "leaf-hook-replaces": ([(3, 4), (3, 4)], _leaf_hook_replaces, 1),
    "non-leaf-hook-replaces": ([(3, 4), (3, 4)], _non_leaf_hook_replaces, 1),
    "non-leaf-hook-two-backwards": ([(3, 4), (3, 4)], _non_leaf_hook_replaces, 2),
    "hooks-in-order": ([(2, 3)], _hooks_in_order, 1),
    "removed-hooks": ([(3, 4), (3, 4)], _removed_hooks, 1),
    "hook-then-inplace": ([(3, 4), (3, 4)], _hook_then_inplace, 1),
    "hook-on-view": ([(3, 4)], _hook_on_view, 1),
    "retain-grad": ([(3, 4), (3, 4)], _retain, 1),
    "retain-grad-two-backwards": ([(3, 4), (3, 4)], _retain, 2),
    "retain-grad-with-hook": ([(3, 4)], _retain_with_hook, 1),
    "retain-grad-then-inplace": ([(3, 4), (3, 4)], _retain_then_inplace, 1),
    "hook-then-view-write": ([(3, 4), (3, 4)], _hook_then_view_write, 1),
    "retain-grad-then-setitem": ([(3, 4), (3, 4)], _retain_then_setitem, 1),
    "view-hook-then-base-write": ([(3, 4)], _view_hook_then_base_write, 1),
    "write-under-no-grad-then-hook": ([(3, 4), (3, 4)], _write_under_no_grad_then_hook, 1),
}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_tensor_hooks_match_torch(name):
    shapes, fn, backwards = HOOKS[name]
    check_parity(fn, shapes, backwards=backwards)


def test_retained_view_after_base_write_matches_torch():
    check_parity(_view_retain_then_base_write, [(3, 4)])


def test_hook_gets_a_tensor_and_a_handle_removes_it():
    a = tg.tensor(np.arange(3.0), dtype="float64", requires_grad=True)
    seen = []
    handle = a.register_hook(lambda g: seen.append(g))
    (a * 2).sum().backward()
    assert len(seen) == 1 and type(seen[0]) is tg.Tensor and not seen[0].requires_grad  # as torch
    np.testing.assert_array_equal(seen[0].numpy(), [2.0, 2.0, 2.0])
    handle.remove()
    (a * 2).sum().backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 4.0, 4.0])


def test_hook_needs_a_tensor_that_requires_grad():
    with pytest.raises(tg.GraphError):
        tg.zeros(3).register_hook(lambda g: g)
    with pytest.raises(tg.GraphError):
        tg.zeros(3).retain_grad()


def test_retains_grad_flags():
    a = tg.tensor(np.ones(2), dtype="float64", requires_grad=True)
    b, c = a * 2, a * 3
    b.retain_grad()
    a.retain_grad()
    assert b.retains_grad and not c.retains_grad and not a.retains_grad
    (b * c).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [3.0, 3.0])
    assert c.grad is None


# ---- autograd.grad against torch ------------------------------------------------------------

GRAD_CASES = {
    # name: fn(L, a, w, v) -> (outputs, inputs, grad_outputs-or-None, kwargs)
    "single": lambda L, a, w, v: ((a * w).tanh().sum(), a, None, {}),
    "two-inputs": lambda L, a, w, v: ((a * w).tanh().sum(), [a, w], None, {}),
    "two-outputs": lambda L, a, w, v: ([(a * w).sum(), (a.exp() * v).sum()], [a, w, v], None, {}),
    "non-leaf-input": lambda L, a, w, v: _non_leaf_grad(a, w),
    "grad-outputs": lambda L, a, w, v: ((a * w).exp(), [a, w], L.leaf(np.linspace(-1, 1, 12).reshape(3, 4), False),
                                        {}),
    "grad-outputs-list": lambda L, a, w, v: ([a * w, v * 2], [w, v],
                                             [L.leaf(np.full((3, 4), 0.5), False), L.leaf(-np.ones((3, 4)), False)],
                                             {}),
    "allow-unused": lambda L, a, w, v: ((a * w).sum(), [a, v, w], None, {"allow_unused": True}),
    "through-inplace": lambda L, a, w, v: (_ret(a * 1, lambda b: b.mul_(w)).sum(), [a, w], None, {}),
    "tuple-inputs-repeated": lambda L, a, w, v: ((a * w).sum(), (w, a, w), None, {}),
    "hooked-leaf-input": lambda L, a, w, v: (_ret(a, lambda t: t.register_hook(lambda g: g * 10)).exp().sum(),
                                             [a], None, {}),  # a leaf's hooks run before it is captured
}


def _non_leaf_grad(a, w):
    h = a * w
    return (h.exp() * a).sum(), [h, a], None, {}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_autograd_grad_matches_torch(name):
    ours, theirs = libs()
    arrays = make_arrays([(3, 4)] * 3)
    results = []
    for L in (ours, theirs):
        leaves = [L.leaf(x) for x in arrays]
        outputs, inputs, grad_outputs, kwargs = GRAD_CASES[name](L, *leaves)
        results.append(L.grad(outputs, inputs, grad_outputs=grad_outputs, **kwargs))
        assert all(t.grad is None for t in leaves), ".grad must stay untouched"
    assert type(results[0]) is tuple and len(results[0]) == len(results[1])
    for i, (o, t) in enumerate(zip(*results)):
        assert o is None or (isinstance(o, tg.Tensor) and not o.requires_grad and o.dtype == np.float64)
        close(o, t, f"grad {i}")


def test_autograd_grad_leaves_existing_grad_and_needs_retain_graph_for_a_second_call():
    for L in libs():
        a = L.leaf(np.arange(1.0, 4.0))
        (a * a).sum().backward()
        before = to_numpy(a.grad)
        y = (a.exp() * a).sum()
        first = L.grad(y, a, retain_graph=True)
        second = L.grad(y, [a])
        close(first[0], second[0], "same graph twice")
        close(a.grad, before, ".grad untouched")
        with pytest.raises(tg.GraphError if L.is_tg else RuntimeError):
            L.grad(y, a)  # freed by the second call


def test_autograd_grad_errors():
    a = tg.tensor(np.ones(3), dtype="float64", requires_grad=True)
    unused = tg.tensor(np.ones(3), dtype="float64", requires_grad=True)
    y = (a * 2).sum()
    with pytest.raises(tg.GraphError, match="allow_unused"):
        tg.autograd.grad(y, [a, unused], retain_graph=True)
    with pytest.raises(tg.GraphError, match=r"create_graph.*higher-order"):
        tg.autograd.grad(y, a, create_graph=True)
    with pytest.raises(tg.GraphError, match="does not require grad"):
        tg.autograd.grad(y, tg.zeros(3), retain_graph=True)
    with pytest.raises(tg.GraphError, match="grad_outputs"):
        tg.autograd.grad(y, a, grad_outputs=[None, None], retain_graph=True)
    with pytest.raises(tg.GraphError, match="non-scalar"):
        tg.autograd.grad(a * 2, a)
    with pytest.raises(tg.GraphError, match="does not require grad"):
        tg.autograd.grad(tg.zeros(3).sum(), a)
    (ga,) = tg.autograd.grad(y, a)
    assert ga.tolist() == [2.0, 2.0, 2.0] and a.grad is None


def test_autograd_grad_unused_input_errors_like_torch():
    torch = pytest.importorskip("torch")
    a, unused = (torch.ones(3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    with pytest.raises(RuntimeError):
        torch.autograd.grad((a * 2).sum(), [a, unused])


def test_autograd_grad_of_hooked_non_leaf_input_matches_torch():
    ours, theirs = libs()
    results = []
    for L in (ours, theirs):
        a = L.leaf(np.array([1.0, 2.0, 3.0]))
        b = a * 2
        b.register_hook(lambda g: g * 10)
        results.append(L.grad((b * b).sum(), [b, a]))
    for i, (o, t) in enumerate(zip(*results)):
        close(o, t, f"grad {i}")


# ---- module hooks against torch --------------------------------------------------------------

def _linear(nn):
    return nn.Linear(3, 2)


def _two_inputs(nn):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x, y):
            return self.lin(x) * y.tanh()

    return Two()


def _lstm(nn):
    return nn.LSTM(3, 2)


def module_twins(make):
    """The same module in both libraries, float64, torch's weights copied into ours."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = make(torch.nn).double()
    ours = make(tg.nn).to("float64")
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def check_module_parity(make, shapes, register, requires_grad=None, calls=1, torch_warns=False,
                        forward=lambda module, *inputs: module(*inputs)):
    """register(L, module) adds hooks; then `calls` forward(module, *inputs) + backward passes in each library.
    Compares outputs, input and parameter gradients and everything the hooks recorded."""
    ours, theirs = libs()
    modules = module_twins(make)
    arrays = make_arrays(shapes)
    requires_grad = requires_grad or [True] * len(shapes)
    results = []
    for L, module in zip((ours, theirs), modules):
        register(L, module)
        inputs = [L.leaf(x, r) for x, r in zip(arrays, requires_grad)]
        with warnings.catch_warnings():
            if torch_warns and not L.is_tg:
                warnings.simplefilter("ignore", UserWarning)
            for _ in range(calls):
                outputs = flat_tensors(forward(module, *inputs))
                weighted_loss(outputs, 2, L.mod).backward()
        results.append((outputs, inputs, dict(module.named_parameters())))
    (o_out, o_in, o_par), (t_out, t_in, t_par) = results
    assert len(o_out) == len(t_out)
    for i, (o, t) in enumerate(zip(o_out, t_out)):
        close(o, t, f"output {i}")
    for i, (o, t) in enumerate(zip(o_in, t_in)):
        close(o.grad, t.grad, f"input {i} grad")
    assert sorted(o_par) == sorted(t_par)
    for name in t_par:
        close(o_par[name].grad, t_par[name].grad, f"{name} grad")
    close_seen(ours.seen, theirs.seen)
    return ours, theirs


def _forward_hooks(L, module):
    def pre(mod, args):
        assert mod is module and type(args) is tuple
        L.seen["pre"].append(to_numpy(args[0]))

    def post(mod, args, output):
        L.seen["post-args"].append(to_numpy(args[0]))
        L.seen["post-output"].append(to_numpy(flat_tensors(output)[0]))

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


def _replacing_forward_hooks(L, module):
    module.register_forward_pre_hook(lambda mod, args: (args[0] * 2,) + args[1:])
    module.register_forward_pre_hook(lambda mod, args: args[0] - 1 if len(args) == 1 else None)  # bare value
    module.register_forward_hook(lambda mod, args, out: out * 3 if not isinstance(out, tuple) else None)


def _removed_module_hooks(L, module):
    for handle in (module.register_forward_pre_hook(lambda mod, args: (args[0] * 100,) + args[1:]),
                   module.register_forward_hook(lambda mod, args, out: L.seen["gone"].append(1)),
                   module.register_full_backward_hook(L.record_module("gone-backward"))):
        handle.remove()
    module.register_full_backward_hook(L.record_module("kept"))


def _backward_hook(L, module):
    module.register_full_backward_hook(L.record_module("backward"))


def _backward_hook_replaces(L, module):
    # every input gradient halved; parameter gradients stay as they were
    module.register_full_backward_hook(
        L.record_module("replace", lambda gi: tuple(None if g is None else g * 0.5 for g in gi)))
    module.register_full_backward_hook(L.record_module("after"))  # sees the replacement


def _lstm_output_replaced(L, module):
    module.register_forward_hook(lambda mod, args, out: (out[0] * 2, (out[1][0].tanh(), out[1][1])))
    _forward_hooks(L, module)  # registered later: sees the replaced output


def _all_hooks(L, module):
    _forward_hooks(L, module)
    _backward_hook(L, module)


MODULE_CASES = {
    "linear-forward-hooks": (_linear, [(4, 3)], _forward_hooks, {}),
    "linear-forward-hooks-replace": (_linear, [(4, 3)], _replacing_forward_hooks, {}),
    "linear-backward-hook": (_linear, [(4, 3)], _backward_hook, {}),
    "linear-backward-hook-twice": (_linear, [(4, 3)], _all_hooks, {"calls": 2}),
    "linear-backward-hook-replaces": (_linear, [(4, 3)], _backward_hook_replaces, {}),
    "linear-removed-hooks": (_linear, [(4, 3)], _removed_module_hooks, {}),
    "linear-input-without-grad": (_linear, [(4, 3)], _backward_hook, {"requires_grad": [False],
                                                                      "torch_warns": True}),
    "two-inputs-hooks": (_two_inputs, [(4, 3), (4, 3)], _all_hooks, {}),
    "two-inputs-forward-replace": (_two_inputs, [(4, 3), (4, 3)], _replacing_forward_hooks, {}),
    "two-inputs-backward-replaces": (_two_inputs, [(4, 3), (4, 3)], _backward_hook_replaces, {}),
    "two-inputs-removed": (_two_inputs, [(4, 3), (4, 3)], _removed_module_hooks, {}),
    "square-linear-called-twice": (lambda nn: nn.Linear(3, 3), [(4, 3)], _all_hooks,
                                   {"forward": lambda m, x: m(m(x).tanh()), "calls": 2}),
    "square-linear-called-twice-replaces": (lambda nn: nn.Linear(3, 3), [(4, 3)], _backward_hook_replaces,
                                            {"forward": lambda m, x: m(m(x).tanh())}),
    "lstm-forward-hooks": (_lstm, [(5, 2, 3)], _forward_hooks, {}),
    "lstm-removed-hooks": (_lstm, [(5, 2, 3)], _removed_module_hooks, {}),
    "lstm-forward-hook-replaces-tuple": (_lstm, [(5, 2, 3)], _lstm_output_replaced, {}),
    "later-hooks-see-replacements": (_two_inputs, [(4, 3), (4, 3)],
                                     lambda L, m: (_replacing_forward_hooks(L, m), _all_hooks(L, m)), {}),
}


@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_module_hooks_match_torch(name):
    make, shapes, register, kwargs = MODULE_CASES[name]
    check_module_parity(make, shapes, register, **kwargs)


def test_lstm_backward_hook_gradients_match_torch():
    """nn.LSTM returns (output, (h, c)): the hook's first grad_output and its grad_input match torch,
    and replacing grad_input reaches the input's .grad but not the weights'."""
    def register(L, module):
        def hook(mod, grad_input, grad_output):
            L.seen["grad_input"].append(to_numpy(grad_input[0]))
            L.seen["grad_output[0]"].append(to_numpy(grad_output[0]))
            return (grad_input[0] * -2,)
        module.register_full_backward_hook(hook)

    check_module_parity(_lstm, [(5, 2, 3)], register)


def test_lstm_backward_hook_grad_output_structure_matches_torch():
    check_module_parity(_lstm, [(5, 2, 3)], _backward_hook)


def test_backward_hook_with_an_input_without_grad_matches_torch():
    check_module_parity(_two_inputs, [(4, 3), (4, 3)], _backward_hook, requires_grad=[True, False])


def test_module_hook_handles_and_call_counts():
    lin = tg.nn.Linear(2, 2).to("float64")
    calls = defaultdict(int)
    handles = [lin.register_forward_pre_hook(lambda m, a: calls.__setitem__("pre", calls["pre"] + 1)),
               lin.register_forward_hook(lambda m, a, o: calls.__setitem__("post", calls["post"] + 1)),
               lin.register_full_backward_hook(lambda m, gi, go: calls.__setitem__("back", calls["back"] + 1))]
    x = tg.tensor(np.ones((3, 2)), dtype="float64", requires_grad=True)
    for _ in range(2):
        lin(x).sum().backward()
    assert dict(calls) == {"pre": 2, "post": 2, "back": 2}
    for h in handles:
        h.remove()
    lin(x).sum().backward()
    assert dict(calls) == {"pre": 2, "post": 2, "back": 2}
    with lin.register_forward_hook(lambda m, a, o: o * 0):  # a handle is a context manager too
        assert lin(x).abs().sum().item() == 0
    assert lin(x).abs().sum().item() != 0


# ---- grad modes ---------------------------------------------------------------------------------

@pytest.fixture
def restore_grad_mode():
    yield
    tg.set_grad_enabled(True)
    assert tg.is_grad_enabled() and not tg.is_inference_mode_enabled()


def _made_with_grad():
    x = tg.tensor(np.ones(2), dtype="float64", requires_grad=True)
    return (x * 2).requires_grad


def test_no_grad_decorator_forms(restore_grad_mode):
    @tg.no_grad
    def bare():
        return tg.is_grad_enabled(), _made_with_grad()

    @tg.no_grad()
    def called():
        return tg.is_grad_enabled(), _made_with_grad()

    assert bare() == (False, False) and called() == (False, False)
    assert bare.__name__ == "bare" and called.__name__ == "called"
    assert tg.is_grad_enabled() and _made_with_grad()


def test_enable_grad_inside_no_grad_and_nesting(restore_grad_mode):
    with tg.no_grad():
        with tg.enable_grad():
            assert tg.is_grad_enabled() and _made_with_grad()
            with tg.no_grad():
                assert not tg.is_grad_enabled()
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled() and not _made_with_grad()

        @tg.enable_grad()
        def inner():
            return tg.is_grad_enabled()

        assert inner() and not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_one_no_grad_object_entered_twice(restore_grad_mode):
    ng = tg.no_grad()
    with ng:
        with tg.enable_grad():
            with ng:
                assert not tg.is_grad_enabled()
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_set_grad_enabled_as_call_context_and_decorator(restore_grad_mode):
    tg.set_grad_enabled(False)  # acts when called
    assert not tg.is_grad_enabled() and not _made_with_grad()
    tg.set_grad_enabled(True)
    assert tg.is_grad_enabled()
    with tg.set_grad_enabled(False):
        assert not tg.is_grad_enabled()
        with tg.set_grad_enabled(True):
            assert tg.is_grad_enabled() and _made_with_grad()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    with tg.no_grad():
        with tg.set_grad_enabled(True):
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled()

    @tg.set_grad_enabled(False)
    def off():
        return tg.is_grad_enabled()

    assert tg.is_grad_enabled() and off() is False and tg.is_grad_enabled()


def test_inference_mode_forms(restore_grad_mode):
    assert not tg.is_inference_mode_enabled()
    with tg.inference_mode():
        assert tg.is_inference_mode_enabled() and not tg.is_grad_enabled() and not _made_with_grad()
        with tg.inference_mode(False):
            assert not tg.is_inference_mode_enabled()
        assert tg.is_inference_mode_enabled()
    assert not tg.is_inference_mode_enabled() and tg.is_grad_enabled()

    @tg.inference_mode
    def bare():
        return tg.is_grad_enabled(), tg.is_inference_mode_enabled()

    @tg.inference_mode()
    def called():
        return tg.is_grad_enabled(), tg.is_inference_mode_enabled()

    assert bare() == (False, True) and called() == (False, True)
    assert tg.is_grad_enabled() and not tg.is_inference_mode_enabled()


def test_inference_mode_false_matches_torch(restore_grad_mode):
    torch = pytest.importorskip("torch")
    modes = []
    for lib in (tg, torch):
        with lib.no_grad(), lib.inference_mode(False):
            modes.append((lib.is_grad_enabled(), lib.is_inference_mode_enabled()))
    assert modes[0] == modes[1]


@pytest.mark.parametrize("mode", [tg.no_grad, tg.inference_mode, lambda: tg.set_grad_enabled(False)])
def test_exceptions_restore_the_mode(mode, restore_grad_mode):
    with pytest.raises(KeyError):
        with mode():
            raise KeyError("boom")
    assert tg.is_grad_enabled() and not tg.is_inference_mode_enabled()

    @tg.no_grad()
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert tg.is_grad_enabled()


def test_recursion_under_a_decorator(restore_grad_mode):
    @tg.no_grad()
    def depth(n):
        assert not tg.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(5) == 5 and tg.is_grad_enabled()


def test_grad_mode_is_per_thread(restore_grad_mode):
    seen = []
    with tg.no_grad():
        worker = threading.Thread(target=lambda: seen.append(tg.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_decorated_generator_runs_under_the_mode(restore_grad_mode):
    @tg.no_grad()
    def gen():
        yield tg.is_grad_enabled()
        yield _made_with_grad()

    @tg.inference_mode
    def gen2():
        yield tg.is_inference_mode_enabled()

    it = gen()
    assert next(it) is False
    assert tg.is_grad_enabled()  # the caller's mode between resumes
    assert next(it) is False
    assert list(gen2()) == [True]


# ---- Module.to(dtype) ------------------------------------------------------------------------

@pytest.mark.parametrize("convert, dtype", [
    (lambda m: m.to("float64"), np.float64), (lambda m: m.to(np.float64), np.float64),
    (lambda m: m.to(dtype="float64"), np.float64), (lambda m: m.double(), np.float64),
    (lambda m: m.double().float(), np.float32), (lambda m: m.half(), np.float16),
    (lambda m: m.to("cpu", "float64"), np.float64)])
def test_module_to_changes_parameter_dtypes_in_place(convert, dtype):
    lin = tg.nn.Linear(2, 2)
    params = list(lin.parameters())
    lin(tg.ones(3, 2)).sum().backward()
    assert convert(lin) is lin
    assert [p for p in lin.parameters()] == params  # the same Parameters, cast in place
    for p in lin.parameters():
        assert p.dtype == dtype and p.grad.dtype == dtype and p.requires_grad and p.is_leaf
    if dtype != np.float16:
        out = lin(tg.ones(3, 2, dtype=dtype))
        assert out.dtype == dtype


def test_module_to_float64_forward_matches_torch():
    ours, theirs = module_twins(_linear)
    x = make_arrays([(4, 3)])[0]
    close(ours(tg.tensor(x, dtype="float64")), theirs(pytest.importorskip("torch").tensor(x)), "linear float64")


def test_module_to_refuses_non_float_dtypes():
    with pytest.raises(tg.DTypeError):
        tg.nn.Linear(2, 2).to("int64")


def test_module_to_keeps_integer_buffers():
    bn = tg.nn.BatchNorm1d(3).to("float64")
    dtypes = {k: b.dtype for k, b in bn.named_buffers()}
    assert dtypes == {"running_mean": np.float64, "running_var": np.float64, "num_batches_tracked": np.int64}
    assert all(p.dtype == np.float64 for p in bn.parameters())


# ---- walk ------------------------------------------------------------------------------------

def _graph():
    x = tg.tensor(np.ones((2, 3)), dtype="float64", requires_grad=True)
    w = tg.tensor(np.ones((3, 4)), dtype="float64", requires_grad=True)
    w.name = "w"
    with tg.scope("layer"):
        h = (x @ w).tanh()
    return x, w, (h * h + h).sum()  # h used twice: a diamond


def test_walk_yields_each_node_once_in_topological_order():
    x, w, y = _graph()
    nodes = list(tg.autograd.walk(y))
    assert [n.id for n in nodes] == list(range(len(nodes)))
    assert all(isinstance(n, tg.autograd.GraphNode) for n in nodes)
    for n in nodes:
        assert all(p.id < n.id for p in n.parents)
        assert all(nodes[p.id] is p for p in n.parents)
    fns = [n.fn for n in nodes if n.fn is not None]
    assert len(fns) == len({id(f) for f in fns})  # each op once, the shared tanh included
    leaves = [n for n in nodes if n.is_leaf]
    assert {id(n.tensor) for n in leaves} == {id(x), id(w)}
    assert all(n.op == "leaf" and n.fn is None and n.parents == () for n in leaves)
    assert all(n.tensor is None for n in nodes if not n.is_leaf)
    assert nodes[-1].fn is y.grad_fn and nodes[-1].shape == () and nodes[-1].dtype == np.float64
    assert [n.name for n in leaves if n.tensor is w] == ["w"]
    tanh = [n for n in nodes if n.op == "tanh"]
    assert len(tanh) == 1 and tanh[0].scope == "layer" and tanh[0].shape == (2, 4)
    assert sum(p is tanh[0] for n in nodes for p in n.parents) == 3  # h * h + h: twice in mul, once in add


def _signature(nodes):
    return [(n.id, n.op, n.scope, tuple(p.id for p in n.parents), n.shape, str(n.dtype)) for n in nodes]


def test_walk_ids_are_deterministic_across_identical_graphs():
    first = _signature(tg.autograd.walk(_graph()[2]))
    second = _signature(tg.autograd.walk(_graph()[2]))
    assert first == second and len(first) > 5


def test_walk_over_several_roots_and_roots_without_grad():
    x, w, y = _graph()
    z = (x * 2).sum()
    nodes = list(tg.autograd.walk([y, z, tg.zeros(2)]))
    assert [n.id for n in nodes] == list(range(len(nodes)))
    assert len([n for n in nodes if n.is_leaf]) == 2  # x shared by both roots, listed once
    assert list(tg.autograd.walk(tg.zeros(3))) == []
    single = list(tg.autograd.walk(x))
    assert len(single) == 1 and single[0].tensor is x


def test_walk_records_in_place_writes():
    a = tg.tensor(np.ones((2, 3)), dtype="float64", requires_grad=True)
    b = a * 1
    b[0] = a[1] * 2
    ops = [n.op for n in tg.autograd.walk(b)]
    assert ops.count("leaf") == 1 and "copyslices" in ops


def test_walk_and_backward_over_a_5000_step_chain():
    x = tg.tensor(np.ones(2), dtype="float64", requires_grad=True)
    h = x
    for _ in range(5000):
        h = h * 1.0001 + 0.0
    nodes = list(tg.autograd.walk(h))
    assert len(nodes) == 1 + 2 * 5000 and nodes[0].is_leaf
    assert all(n.parents[0].id == n.id - 1 for n in nodes[1:])
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0001 ** 5000, rtol=1e-9)
