"""A hostile review of two engine changes: the backward sweep going by each node's sequence number
(a heap, latest made first, no sort) and a leaf's .grad taking a backward's unshared array uncopied.
Graphs built across threads, reused after retain_graph and extended, views written in place, hooks
that run other backwards or keep gradients, copied graphs, user Functions, fused layers read by walk
between backwards; compared with torch (float64) where torch has an answer."""
import copy
import queue
import threading

import numpy as np
import pytest
from oracle import needs_torch, torch
from threads import TIMEOUT, run_in_threads

import tinygrad_rnn as tg
from tinygrad_rnn import nn


def leaf(values, dtype="float64"):
    return tg.tensor(np.array(values, dtype=dtype), requires_grad=True)


def make(lib, values):
    if lib is tg:
        return leaf(values)
    return torch.tensor(np.array(values, dtype=np.float64), requires_grad=True)


# ---- the order: what must run before what ----------------------------------------------------

@needs_torch
def test_non_leaf_hooks_fire_in_torchs_order_on_a_branching_graph():
    def run(lib):
        x, w = make(lib, [1.0, 2.0]), make(lib, [3.0, -4.0])
        seen = []
        a = x * 2
        b = w * 3
        c = a * b
        d = x * c
        e = d + b
        for name, t in zip("abcde", (a, b, c, d, e)):
            t.register_hook(lambda g, n=name: seen.append(n))
        e.sum().backward()
        return seen, x.grad.numpy(), w.grad.numpy()

    ours, theirs = run(tg), run(torch)
    assert ours[0] == theirs[0] == list("edcba")
    np.testing.assert_allclose(ours[1], theirs[1])
    np.testing.assert_allclose(ours[2], theirs[2])


@needs_torch
def test_a_graph_built_by_two_threads_in_turn_matches_torch():
    """Nodes made in thread A are consumed in thread B and the other way round, 150 times; the
    numbers both threads draw interleave, and the backward (in a third thread) must still be right."""
    def build(lib):
        x = make(lib, [0.5, -1.0, 2.0])
        to_b, to_a = queue.Queue(), queue.Queue()
        result = []

        def a():
            t = x
            for _ in range(150):
                to_b.put(t * 1.01 + x * 0.1)
                t = to_a.get()
            result.append(t)

        def b():
            for _ in range(150):
                t = to_b.get()
                to_a.put((t * 0.5).tanh() * 2.0 + t * 0.01)

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        back = threading.Thread(target=lambda: (result[0] ** 2).sum().backward())
        back.start()
        back.join()
        return x.grad.numpy()

    np.testing.assert_allclose(build(tg), build(torch), rtol=1e-12)


def test_concurrent_backwards_through_one_retained_graph_all_count():
    tg.manual_seed(0)
    x = leaf(np.linspace(-1, 1, 12).reshape(3, 4))
    w = leaf(np.linspace(0.5, 2, 4))
    h = x
    for _ in range(30):
        h = (h * w).tanh() + h * 0.5
    loss = (h ** 2).sum()
    loss.backward(retain_graph=True)
    first_x, first_w = x.grad.numpy().copy(), w.grad.numpy().copy()
    x.grad = w.grad = None
    start = threading.Barrier(6, timeout=TIMEOUT)

    def work():
        start.wait()
        for _ in range(4):
            loss.backward(retain_graph=True)

    run_in_threads(*[work] * 6, barriers=(start,))
    np.testing.assert_allclose(x.grad.numpy(), 24 * first_x, rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), 24 * first_w, rtol=1e-12)


@needs_torch
def test_a_view_whose_base_is_written_twice_feeds_old_and_new_consumers():
    def run(lib):
        x = make(lib, [1.0, 2.0, 3.0, 4.0])
        b = x * 2
        v = b[1:3]
        old = v * 10            # made before the write: the view's first node
        b.mul_(3)               # v's node is made again from b's new one when next used
        new = v * 4
        v.mul_(v.detach() + 1)  # through the view: b gets a copy-slices node, v a node after it
        b.add_(1)
        (old.sum() + new.sum() + (b * x).sum() + (v * 2).sum()).backward()
        return x.grad.numpy()

    np.testing.assert_allclose(run(tg), run(torch))


@needs_torch
def test_a_retained_graph_extended_through_a_stale_view_matches_torch():
    def run(lib):
        x = make(lib, [1.0, -2.0, 0.5])
        b = x * 2.0 + 1.0
        v = b[:2]
        first = (v * 2 + b[1:] * 3).sum()  # saves no array of b's
        first.backward(retain_graph=True)
        grads = [x.grad.numpy().copy()]
        b.mul_(2)               # after the backward: the kept graph is not touched, v is stale
        second = (v * 3).sum() + first * 2  # the new nodes above the kept ones
        second.backward()
        grads.append(x.grad.numpy())
        return grads

    for ours, theirs in zip(run(tg), run(torch)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@needs_torch
def test_a_hook_that_runs_another_backward_sharing_a_leaf():
    def run(lib):
        x, w = make(lib, [1.0, -2.0, 3.0]), make(lib, [0.5, 0.25, 2.0])
        other = (x * w * w).sum()
        log = []

        def hook(g):
            log.append("inner")
            other.backward()  # writes x.grad and w.grad in the middle of the outer sweep
            return g * 3

        y = x * x
        y.register_hook(hook)
        ((y * w).sum() + (x * 7).sum()).backward()
        return log, x.grad.numpy(), w.grad.numpy()

    ours, theirs = run(tg), run(torch)
    assert ours[0] == theirs[0] == ["inner"]
    np.testing.assert_allclose(ours[1], theirs[1])
    np.testing.assert_allclose(ours[2], theirs[2])


def test_grad_with_allow_unused_runs_only_the_paths_it_needs():
    x, w, u = leaf([1.0, 2.0]), leaf([3.0, 4.0]), leaf([5.0, 6.0])
    fired = []
    a = x * w
    b = u * 2
    b.register_hook(lambda g: fired.append("b"))
    a.register_hook(lambda g: fired.append("a"))
    loss = (a * a).sum() + b.sum()
    gx, gn = tg.autograd.grad(loss, [x, leaf([0.0])], allow_unused=True, retain_graph=True)
    assert gn is None and fired == ["a"]
    np.testing.assert_allclose(gx.numpy(), 2 * x.numpy() * w.numpy() ** 2)
    assert x.grad is None and u.grad is None
    loss.backward()  # the branch grad left alone still has its arrays
    np.testing.assert_allclose(u.grad.numpy(), [2.0, 2.0])
    assert fired == ["a", "b", "a"]  # b's branch was made later: it runs first


def test_a_100k_chain_and_a_20k_wide_sum():
    x = leaf([1.0])
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.00001 ** 100_000], rtol=1e-9)
    z = leaf([1.0, 1.0, 1.0])
    tg.stack([z * float(i) for i in range(20_000)]).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [sum(range(20_000))] * 3)


# ---- fused layers that walk expands, between backwards ---------------------------------------

def _torch_twin(layer, cls):
    twin = cls(layer.input_size, layer.hidden_size, layer.num_layers, bidirectional=layer.bidirectional).double()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            getattr(twin, name).copy_(torch.from_numpy(p.numpy().copy()))
    return twin


@needs_torch
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_chunked_bptt_with_walks_between_and_a_retained_second_backward_matches_torch(mode):
    """Two calls of a 2-layer bidirectional layer chained by the state, the first expanded by walk
    before the second is made and the whole graph walked again after a retained backward: every
    gradient is torch's, and the second backward adds exactly the first's."""
    tg.manual_seed(1)
    layer = getattr(nn, mode)(3, 4, 2, bidirectional=True).to(tg.float64)
    twin = _torch_twin(layer, getattr(torch.nn, mode))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 2, 3)) for _ in range(2)]
    weights = rng.standard_normal((5, 2, 8))

    def run(lib, module, walk):
        inputs = [(tg.tensor(a, requires_grad=True) if lib is tg else torch.tensor(a, requires_grad=True)) for a in xs]
        out1, state = module(inputs[0])
        if walk:
            list(tg.autograd.walk(out1))
        out2, state2 = module(inputs[1], state)
        finals = state2 if mode == "LSTM" else (state2,)
        loss = (out1 * lib.tensor(weights)).sum() + (out2 ** 2).sum() + sum((f * f).sum() for f in finals)
        loss.backward(retain_graph=True)
        first = [t.grad.numpy().copy() for t in inputs] + [p.grad.numpy().copy() for p in module.parameters()]
        if walk:
            assert {"lstmstep", "grustep", "rnnstep"} & {n.op for n in tg.autograd.walk(loss)}
        loss.backward()
        second = [t.grad.numpy() for t in inputs] + [p.grad.numpy() for p in module.parameters()]
        return first, second

    theirs, _ = run(torch, twin, False)
    for walk in (False, True):
        layer.zero_grad()
        first, second = run(tg, layer, walk)
        for ours, ref, twice in zip(first, theirs, second):
            np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(twice, 2 * ours, rtol=1e-12, atol=1e-13)


def test_concurrent_backwards_through_a_walked_fused_lstm():
    tg.manual_seed(0)
    lstm = nn.LSTM(4, 5, 2, bidirectional=True).to(tg.float64)
    x = tg.randn(6, 3, 4, dtype=tg.float64, requires_grad=True)
    out, (h, c) = lstm(x)
    loss = (out ** 2).sum() + (h * c).sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    list(tg.autograd.walk(loss))
    x.grad = None

    def work():
        for _ in range(3):
            loss.backward(retain_graph=True)

    run_in_threads(*[work] * 4)
    np.testing.assert_allclose(x.grad.numpy(), 12 * first, rtol=1e-12)


# ---- .grad taken uncopied: nothing else may see it change ------------------------------------

class _Twice(tg.Function):
    """Hands one fresh array to both inputs, or a float64 one to a float32 input, or a view."""

    def forward(self, a, b, how="same"):
        self.how = how
        return a * b

    def backward(self, g):
        if self.how == "same":
            shared = np.asarray(g * 2.0)
            return shared, shared
        if self.how == "float64":
            return (g * 2.0).astype(np.float64), (g * 3.0).astype(np.float64)
        whole = np.stack([g * 2.0, g * 3.0])
        return whole[0], whole[1]  # views of one array


@pytest.mark.parametrize("how", ["same", "float64", "views"])
def test_user_function_gradients_shared_or_cast_or_views_do_not_alias(how):
    dtype = "float32" if how == "float64" else "float64"
    a, b = leaf([1.0, 2.0], dtype), leaf([3.0, 4.0], dtype)
    _Twice.apply(a, b, how=how).sum().backward()
    expected_b = [2.0, 2.0] if how == "same" else [3.0, 3.0]
    assert a.grad.dtype == np.dtype(dtype) and b.grad.dtype == np.dtype(dtype)
    assert not np.shares_memory(a.grad._data, b.grad._data)
    nn.utils.clip_grad_norm_([a], 1e-3)
    np.testing.assert_allclose(b.grad.numpy(), expected_b)


def test_clipping_and_momentum_after_a_taken_grad_leave_every_other_holder_alone():
    x = leaf([1.0, -2.0, 3.0])
    kept = []
    y = x + 5.0                           # Add hands its incoming gradient on as it is
    y.register_hook(lambda g: kept.append(g))
    r = x * 1.0
    r.retain_grad()
    (y.sum() + (r * 2).sum()).backward()
    opt = tg.optim.SGD([x], lr=0.1, momentum=0.9)
    opt.step()
    buffer = opt.state[x]["momentum_buffer"]
    nn.utils.clip_grad_norm_([x], 0.5)
    x.grad._data *= 7
    np.testing.assert_array_equal(kept[0].numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(r.grad.numpy(), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(buffer, [3.0, 3.0, 3.0])
    x.grad = None
    ((x * 2).sum()).backward()           # a second accumulation is a fresh array
    before = x.grad
    ((x * 3).sum()).backward()
    np.testing.assert_array_equal(before.numpy(), [5.0, 5.0, 5.0])


@pytest.mark.parametrize("kept", ["a held tensor", "a stashed result"])
def test_a_non_leaf_hooks_replacement_that_someone_holds_is_copied_into_grad(kept):
    x, held, stash = leaf([1.0, 2.0]), tg.tensor(np.array([4.0, 4.0])), []
    y = x + 1.0  # Add hands the hook's result on to x as it is
    y.register_hook((lambda g: held) if kept == "a held tensor" else (lambda g: stash.append(g * 2) or stash[-1]))
    y.sum().backward()
    other = held if kept == "a held tensor" else stash[0]
    expected = other.numpy().copy()
    x.grad._data *= 3
    np.testing.assert_array_equal(other.numpy(), expected)


# ---- bugs: each of these fails now (see the review's report) ---------------------------------

def test_a_deep_copied_graph_backed_through_with_its_original():
    """deepcopy (or two pickle loads) copies the nodes with their sequence numbers: two nodes in one
    sweep with equal numbers make the heap compare Function objects (TypeError before the fix)."""
    x = leaf([1.0, 2.0])
    y = x * 3
    x2, y2 = copy.deepcopy((x, y))      # a graph of its own, down to a copy of x
    (y + y2 * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(x2.grad.numpy(), [6.0, 6.0])


@needs_torch
def test_a_user_function_may_keep_an_attribute_named_seq():
    """The instance is the context (docs/tour.md): `self.seq` is the user's. The engine writes its
    sequence number there after forward, so backward reads the engine's counter instead."""
    class Scale(tg.Function):
        def forward(self, x, seq=3):
            self.seq = seq
            return x * seq

        def backward(self, g):
            return g * self.seq

    class TorchScale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, seq):
            ctx.seq = seq
            return x * seq

        @staticmethod
        def backward(ctx, g):
            return g * ctx.seq, None

    x = leaf([1.0, 2.0])
    Scale.apply(x, seq=5).sum().backward()
    t = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    TorchScale.apply(t, 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())  # [5, 5]


def test_a_user_function_with_a_len_is_still_a_node():
    """apply takes `t._ctx or t` as the parent: a Function that is falsy (a __len__ of 0) is taken
    for a leaf, the gradient stops at the non-leaf tensor and x gets none."""
    class Sized(tg.Function):
        def __len__(self):  # e.g. how many extra outputs a user op reports
            return 0

        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g * 2

    x = leaf([1.0, 2.0])
    y = Sized.apply(x)
    (y * 3).sum().backward()
    assert y.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
