"""Engine safety: what the redesigned engine promises beyond correct gradients.

* Threads. Grad mode, scope labels and anomaly mode belong to the thread that set them, so
  one thread's no_grad(), scope() or backward() never changes what another thread records.
  Every interleaving here is forced with Events and Barriers (never sleeps), and every wait
  and join has a timeout, so a deadlock fails the test instead of hanging the run.
* Versions. A storage counts its in-place writes (shared by its views); an op that saved a
  tensor for backward notes the count, and backward refuses a tensor written since with a
  GraphError naming the op, instead of computing a gradient from the new values.
* Memory. Nodes hold parent nodes, not tensors, and backward frees what they saved, so a loss
  kept after backward costs its small nodes (still walkable), not the forward activations.
"""
import gc
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest
from threads import TIMEOUT, run_in_threads, wait

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim
from tinygrad_rnn.errors import AnomalyError, GraphError

def _assert_inplace_error(excinfo, op, version, expected):
    """The error backward gives for a saved tensor written in place: what, which op, which versions."""
    message = str(excinfo.value)
    assert "modified by an in-place operation" in message, message
    assert f"'{op}'" in message, message
    assert f"version {version}, expected version {expected}" in message, message


def _regression_step(rnn, head, opt, x, y):
    """One ordinary training step of a recurrent model: zero_grad, forward, backward, clip, step."""
    opt.zero_grad()
    out, _ = rnn(x)
    loss = ((head(out[-1]) - y) ** 2).mean()
    loss.backward()
    nn.utils.clip_grad_norm_(list(rnn.parameters()) + list(head.parameters()), 1.0)
    opt.step()
    return loss


# ---- threads: grad mode ----------------------------------------------------------------

def test_no_grad_in_one_thread_does_not_stop_another_from_recording():
    a_inside, b_recorded = threading.Event(), threading.Event()
    seen = {}

    def thread_a():
        x = tg.randn(3, requires_grad=True)
        with tg.no_grad():
            a_inside.set()
            wait(b_recorded)  # stay inside no_grad() while B records its graph
            seen["a_mode"] = tg.is_grad_enabled()
            seen["a_records"] = (x * 2).requires_grad

    def thread_b():
        wait(a_inside)
        x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
        seen["b_mode"] = tg.is_grad_enabled()
        seen["b_x"], seen["b_loss"] = x, (x * x).sum()
        b_recorded.set()

    run_in_threads(thread_a, thread_b, events=(a_inside, b_recorded))
    assert seen["a_mode"] is False and seen["a_records"] is False  # no_grad() still works where it was entered
    assert seen["b_mode"] is True, "thread A's no_grad() turned grad mode off in thread B"
    assert seen["b_loss"].grad_fn is not None, "thread B's ops recorded no graph"
    seen["b_loss"].backward()  # the graph B recorded is whole: backward from the main thread
    np.testing.assert_allclose(seen["b_x"].grad.numpy(), [2.0, 4.0, 6.0])
    assert tg.is_grad_enabled()


def _inside_no_grad(form, body):
    """`body` run under no_grad() in one of its three spellings."""
    if form == "with":
        def run():
            with tg.no_grad():
                body()
        return run
    if form == "@no_grad":
        return tg.no_grad(body)
    return tg.no_grad()(body)


@pytest.mark.parametrize("form", ["with", "@no_grad", "@no_grad()"])
def test_no_grad_left_in_interleaved_order_restores_each_threads_mode(form):
    # A enters, B enters, A exits, B exits. With one global flag, A's exit would turn grad
    # back on inside B's no_grad(), and B's exit would restore the False it saw on entry.
    a_in, b_in, a_out, b_out = (threading.Event() for _ in range(4))
    seen = {}

    def thread_a():
        with tg.no_grad():
            a_in.set()
            wait(b_in)
        seen["a_after_exit"] = tg.is_grad_enabled()
        a_out.set()
        wait(b_out)
        seen["a_at_end"] = tg.is_grad_enabled()

    def b_body():
        b_in.set()
        wait(a_out)
        seen["b_inside_after_a_left"] = tg.is_grad_enabled()

    b_under_no_grad = _inside_no_grad(form, b_body)

    def thread_b():
        wait(a_in)
        b_under_no_grad()
        seen["b_after_exit"] = tg.is_grad_enabled()
        b_out.set()

    run_in_threads(thread_a, thread_b, events=(a_in, b_in, a_out, b_out))
    assert seen == {"a_after_exit": True, "b_inside_after_a_left": False, "b_after_exit": True, "a_at_end": True}
    assert tg.is_grad_enabled(), "grad mode left off in the main thread"


def test_a_new_thread_starts_with_the_default_modes_whatever_its_starter_had():
    seen = {}

    def fresh():
        seen["modes"] = (tg.is_grad_enabled(), tg.autograd.current_scope(), tg.is_anomaly_enabled())

    tg.set_detect_anomaly(True)
    try:
        with tg.no_grad(), tg.scope("starter"):
            run_in_threads(fresh)
            assert (tg.is_grad_enabled(), tg.autograd.current_scope()) == (False, "starter")
    finally:
        tg.set_detect_anomaly(False)
    assert seen["modes"] == (True, None, False)


def test_anomaly_mode_set_in_one_thread_does_not_reach_another():
    a_on, b_done = threading.Event(), threading.Event()
    seen = {}

    def thread_a():
        tg.set_detect_anomaly(True)
        try:
            a_on.set()
            wait(b_done)
            with pytest.raises(AnomalyError, match="mul"):
                tg.tensor([np.nan]) * 1  # NaN from a NaN input: numpy itself stays silent
        finally:
            tg.set_detect_anomaly(False)

    def thread_b():
        wait(a_on)
        seen["b_mode"] = tg.is_anomaly_enabled()
        seen["b_value"] = (tg.tensor([np.nan]) * 1).numpy()  # no AnomalyError here
        b_done.set()

    run_in_threads(thread_a, thread_b, events=(a_on, b_done))
    assert seen["b_mode"] is False
    assert np.isnan(seen["b_value"]).all()
    assert not tg.is_anomaly_enabled()


def test_one_no_grad_object_shared_by_two_threads_restores_each_threads_mode():
    evaluating = tg.no_grad()  # e.g. made once at module level, entered by every worker thread
    a_in, b_in, a_out = (threading.Event() for _ in range(3))
    seen = {}

    def thread_a():  # enters with grad on
        with evaluating:
            a_in.set()
            wait(b_in)
        seen["a_after"] = tg.is_grad_enabled()
        a_out.set()

    def thread_b():  # enters with grad already off, and leaves after A
        wait(a_in)
        with tg.no_grad():
            with evaluating:
                b_in.set()
                wait(a_out)
            seen["b_between"] = tg.is_grad_enabled()
        seen["b_after"] = tg.is_grad_enabled()

    run_in_threads(thread_a, thread_b, events=(a_in, b_in, a_out))
    assert seen == {"a_after": True, "b_between": False, "b_after": True}


# ---- threads: forward in one thread while another is inside backward ---------------------

class _CallInBackward(tg.Function):
    """Identity whose backward first calls `callback`: a pause point inside the sweep that does
    not rely on hooks."""

    def forward(self, a, callback):
        self.callback = callback
        return a.copy()

    def backward(self, grad):
        self.callback()
        return grad


def _pause_with_hook(t, callback):
    t.register_hook(lambda grad: callback())  # returns None: the gradient goes on unchanged
    return t


def _pause_with_function(t, callback):
    return _CallInBackward.apply(t, callback=callback)


def _second_model_loss(x, w):
    """What thread 2 computes: a few ops with saved tensors (matmul, sigmoid, tanh, mul)."""
    h = (x @ w).sigmoid()
    return (h * (x @ w).tanh()).sum()


@pytest.mark.parametrize("pause", [_pause_with_hook, _pause_with_function], ids=["hook", "function"])
def test_forward_and_backward_in_one_thread_while_another_is_inside_backward(pause):
    rng = np.random.default_rng(1)
    x1_data = rng.standard_normal((4, 3)).astype(np.float32)
    x2_data, w2_data = (rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (3, 2)))

    # The single-threaded reference for thread 2's gradients.
    x2, w2 = tg.tensor(x2_data, requires_grad=True), tg.tensor(w2_data, requires_grad=True)
    _second_model_loss(x2, w2).backward()
    want_x2, want_w2 = x2.grad.numpy(), w2.grad.numpy()

    in_backward, thread_2_done = threading.Event(), threading.Event()
    seen = {}

    def hold_backward():  # runs inside thread 1's backward, which grad mode is off for
        in_backward.set()
        wait(thread_2_done)

    def thread_1():
        x1 = tg.tensor(x1_data, requires_grad=True)
        h = pause(x1.tanh(), hold_backward)
        (h * h).sum().backward()
        seen["x1_grad"] = x1.grad.numpy()

    def thread_2():
        wait(in_backward)
        seen["mode_during_other_backward"] = tg.is_grad_enabled()
        x2, w2 = tg.tensor(x2_data, requires_grad=True), tg.tensor(w2_data, requires_grad=True)
        loss = _second_model_loss(x2, w2)
        seen["recorded"] = loss.grad_fn is not None
        if seen["recorded"]:
            loss.backward()  # a second backward while the first is still paused
            seen["x2_grad"], seen["w2_grad"] = x2.grad.numpy(), w2.grad.numpy()
        thread_2_done.set()

    run_in_threads(thread_1, thread_2, events=(in_backward, thread_2_done))
    assert seen["mode_during_other_backward"] is True, "thread 1's backward turned grad mode off in thread 2"
    assert seen["recorded"], "thread 2 recorded no graph while thread 1 was in backward"
    np.testing.assert_allclose(seen["x2_grad"], want_x2, rtol=1e-6)
    np.testing.assert_allclose(seen["w2_grad"], want_w2, rtol=1e-6)
    t = np.tanh(x1_data)
    np.testing.assert_allclose(seen["x1_grad"], 2 * t * (1 - t * t), rtol=1e-5)
    assert tg.is_grad_enabled()


# ---- threads: scope labels ------------------------------------------------------------

def test_scope_labels_of_two_threads_neither_mix_nor_grow():
    rounds = 3
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    scopes = {"alpha": [], "beta": []}  # the scope of every node each thread recorded
    outside = {"alpha": [], "beta": []}  # current_scope() after each of its `with` blocks
    x_data = np.arange(4, dtype=np.float32).reshape(2, 2) / 4

    def worker(label, leaves_first):
        y = tg.tensor(x_data, requires_grad=True)

        def record(t):
            scopes[label].append(t.grad_fn.scope)
            return t

        for _ in range(rounds):
            with tg.scope(label):
                barrier.wait()  # both threads inside their own scope
                y = record(record(y * 2).tanh())
                barrier.wait()  # both recorded ops there
                if not leaves_first:
                    barrier.wait()  # the other thread has now left its scope; this one is still in
                    y = record(y + 1)
            if leaves_first:
                barrier.wait()
            outside[label].append(tg.autograd.current_scope())
        with tg.scope(label):
            record(y.sum())

    run_in_threads(lambda: worker("alpha", True), lambda: worker("beta", False), barriers=(barrier,))
    assert set(scopes["alpha"]) == {"alpha"}, scopes["alpha"]
    assert set(scopes["beta"]) == {"beta"}, scopes["beta"]
    assert outside == {"alpha": [None] * rounds, "beta": [None] * rounds}
    assert tg.autograd.current_scope() is None


def test_one_scope_object_entered_twice_restores_each_label():
    encoder = tg.scope("encoder")  # e.g. kept by a module whose forward recurses into itself
    try:
        with encoder:
            with encoder:
                inner = tg.autograd.current_scope()
            between = tg.autograd.current_scope()
        after = tg.autograd.current_scope()
    finally:
        tg.autograd.state.scope = None  # a leaked label would stamp every later test's nodes
    assert (inner, between, after) == ("encoder/encoder", "encoder", None)


def test_one_scope_object_shared_by_two_threads_keeps_their_labels_apart():
    shared = tg.scope("shared")  # e.g. one module's scope, its forward run by two threads
    a_in, b_in, a_out = (threading.Event() for _ in range(3))
    seen = {}

    def thread_a():
        with shared:
            a_in.set()
            wait(b_in)  # B enters the same object (from inside its own scope) before A leaves
        seen["a_after"] = tg.autograd.current_scope()
        a_out.set()

    def thread_b():
        wait(a_in)
        with tg.scope("b"), shared:
            seen["b_inside"] = tg.autograd.current_scope()
            b_in.set()
            wait(a_out)
        seen["b_after"] = tg.autograd.current_scope()

    run_in_threads(thread_a, thread_b, events=(a_in, b_in, a_out))
    assert seen == {"a_after": None, "b_inside": "b/shared", "b_after": None}


# ---- threads: two models trained at once ------------------------------------------------

def _make_models():
    """Two small recurrent regressors, each seeded before it is built (no dropout), with their data."""
    made = []
    for seed, (cell, make_opt) in enumerate([(nn.LSTM, lambda p: optim.Adam(p, lr=0.01)),
                                             (nn.GRU, lambda p: optim.SGD(p, lr=0.1, momentum=0.9))]):
        tg.manual_seed(seed)
        rnn, head = cell(3, 8), nn.Linear(8, 1)
        opt = make_opt(list(rnn.parameters()) + list(head.parameters()))
        rng = np.random.default_rng(seed)
        x = tg.tensor(rng.standard_normal((6, 4, 3)).astype(np.float32))
        y = tg.tensor(rng.standard_normal((4, 1)).astype(np.float32))
        made.append((rnn, head, opt, x, y))
    return made


def _train(model, steps, barrier=None):
    losses = []
    for _ in range(steps):
        losses.append(_regression_step(*model).item())
        if barrier is not None:
            barrier.wait()  # lockstep: the threads' forwards, backwards and steps overlap
    return losses


def test_two_models_trained_concurrently_match_training_them_one_after_the_other():
    steps = 20
    sequential = [_train(model, steps) for model in _make_models()]

    models = _make_models()
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    concurrent = [None, None]

    def trainer(i):
        def run():
            concurrent[i] = _train(models[i], steps, barrier)
        return run

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often, so the threads really interleave
    try:
        run_in_threads(trainer(0), trainer(1), barriers=(barrier,))
    finally:
        sys.setswitchinterval(switch)
    for i in range(2):
        np.testing.assert_allclose(concurrent[i], sequential[i], rtol=1e-6, atol=0)
    assert tg.is_grad_enabled()


# ---- versions: in-place writes after a tensor was saved ----------------------------------

def test_optimizer_step_before_backward_raises_naming_matmul():
    w = nn.Parameter(tg.randn(3, 2))
    x = tg.randn(4, 3, requires_grad=True)  # x's gradient needs w's forward value
    opt = optim.SGD([w], lr=0.1)
    (x @ w).sum().backward()  # w has a gradient, so the step below updates it
    y = (x @ w).sum()
    opt.step()
    with pytest.raises(GraphError) as excinfo:
        y.backward()
    _assert_inplace_error(excinfo, "matmul", 1, 0)


def test_gan_pattern_second_backward_through_an_updated_weight_raises():
    generator = nn.Parameter(tg.randn(3, 4))
    discriminator = nn.Parameter(tg.randn(4, 1))
    opt_d = optim.SGD([discriminator], lr=0.1)
    fake = tg.randn(5, 3) @ generator
    score = fake @ discriminator  # saves discriminator: the gradient to `fake` needs it
    d_loss, g_loss = score.mean(), -score.mean()
    d_loss.backward(retain_graph=True)
    opt_d.step()  # discriminator changes in place...
    with pytest.raises(GraphError) as excinfo:
        g_loss.backward()  # ...and the generator's gradient would silently use the new one
    _assert_inplace_error(excinfo, "matmul", 1, 0)
    assert "input 1" in str(excinfo.value)


@pytest.mark.parametrize("saved", ["output", "input"])
def test_in_place_op_on_a_saved_tensor_raises(saved):
    x = tg.randn(4, 3, requires_grad=True)
    if saved == "output":
        written = result = (x * 2).tanh()  # tanh saves its output for 1 - tanh^2
        op, named = "tanh", "its output"
    else:
        written = x * 1
        result = written * written  # mul saves both inputs
        op, named = "mul", "input 0"
    written.add_(1)
    with pytest.raises(GraphError) as excinfo:
        result.sum().backward()
    _assert_inplace_error(excinfo, op, 1, 0)
    assert named in str(excinfo.value)


def test_in_place_dunder_raises_only_for_a_tensor_that_was_saved():
    x = tg.randn(3, requires_grad=True)
    a = x * 1
    same = a
    y = a.exp() + a.sigmoid()  # exp and sigmoid save their outputs, not a
    z = (a + tg.ones(3)).sum()  # add saves nothing
    a += 1
    assert a is same and a._version == 1  # in place: the name still holds the written tensor
    y.sum().backward(retain_graph=True)  # nothing these saved was written: no false alarm
    z.backward(retain_graph=True)  # (kept: the next graph runs back through x * 1 too)
    prod = a * a  # saves a at version 1
    a *= 2
    with pytest.raises(GraphError) as excinfo:
        prod.sum().backward()
    _assert_inplace_error(excinfo, "mul", 2, 1)
    assert tg.is_grad_enabled()  # the failed backward restored grad mode


@pytest.mark.parametrize("written", ["saved-input-requiring-grad", "saved-constant"])
def test_setitem_on_a_saved_tensor_raises(written):
    x = tg.randn(4, 3, requires_grad=True)
    if written == "saved-constant":
        target = tg.randn(4, 3)  # needs no gradient, but x's gradient needs its values
        y = x * target
    else:
        target = x * 1
        y = target * target
    target[0] = 5.0
    with pytest.raises(GraphError) as excinfo:
        y.sum().backward()
    _assert_inplace_error(excinfo, "mul", 1, 0)


def test_writing_through_a_view_invalidates_what_was_saved_from_the_base():
    x = tg.randn(2, 3, requires_grad=True)
    base = x * 1
    y = base.exp() * base  # mul saves base
    row = base[1]  # a view: shares base's storage and version counter
    row.mul_(0.0)
    assert base._version == row._version == 1
    with pytest.raises(GraphError) as excinfo:
        y.sum().backward()
    _assert_inplace_error(excinfo, "mul", 1, 0)


# ---- versions: no false alarms ----------------------------------------------------------

def test_lstm_training_loop_with_truncated_bptt_raises_nothing_and_bumps_each_parameter_once():
    tg.manual_seed(0)
    lstm, head = nn.LSTM(3, 8), nn.Linear(8, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=0.01)
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((6, 4, 3)).astype(np.float32))
    y = tg.tensor(rng.standard_normal((4, 1)).astype(np.float32))

    losses = []
    for _ in range(5):  # full BPTT: the ordinary loop
        before = [p._version for p in params]
        losses.append(_regression_step(lstm, head, opt, x, y).item())
        assert [p._version for p in params] == [v + 1 for v in before]  # one step, one write each
    assert losses[-1] < losses[0]

    state = None
    for _ in range(4):  # truncated BPTT: the state carries on, its graph does not
        opt.zero_grad()
        out, state = lstm(x, state)
        loss = ((head(out[-1]) - y) ** 2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        h, c = state
        state = (h.detach(), c.detach())
        assert state[0].grad_fn is None and state[0]._version == h._version  # detach shares the counter
        assert np.isfinite(loss.item())


@pytest.mark.parametrize("use", [
    pytest.param(lambda a, c, m: a * 3, id="a*3"),
    pytest.param(lambda a, c, m: a * c, id="a*constant"),
    pytest.param(lambda a, c, m: a / c, id="a/constant"),
    pytest.param(lambda a, c, m: m @ a, id="constant@a"),
])
def test_writing_a_saved_tensor_that_no_gradient_needs_is_no_error(use):
    # d(a * c)/da needs c, never a: a is saved (and its version checked) only when c requires grad,
    # as in torch, so writing a after the op is no error and the gradient is exact.
    x_data = [[1.0], [2.0], [3.0]]
    c, m = tg.tensor([[2.0], [4.0], [8.0]]), tg.tensor([[1.0, 2.0, 3.0]])
    reference = tg.tensor(x_data, requires_grad=True)
    use(reference * 1, c, m).sum().backward()

    x = tg.tensor(x_data, requires_grad=True)
    a = x * 1
    y = use(a, c, m).sum()
    a.add_(100)
    assert a._version == 1
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), reference.grad.numpy())


# ---- versions: the counter itself ------------------------------------------------------

def test_version_counts_every_kind_of_in_place_write():
    t = tg.zeros(3, 4)
    assert t._version == 0
    writes = [lambda: t.add_(1), lambda: t.sub_(0.5), lambda: t.mul_(2), lambda: t.div_(2),
              lambda: t.clamp_(-1, 1), lambda: t.fill_(3), lambda: t.zero_(),
              lambda: t.copy_(tg.ones(3, 4))]
    for n, write in enumerate(writes, start=1):
        assert write() is t
        assert t._version == n
    t += 1
    t -= 1
    t *= 2
    t /= 2
    assert t._version == len(writes) + 4
    t[0] = 7.0
    t[1:, ::2] = tg.ones(2, 2)
    assert t._version == len(writes) + 6
    np.testing.assert_array_equal(t.numpy()[0], 7.0)


def test_views_share_the_version_counter_and_the_storage():
    t = tg.arange(12, dtype=np.float32).reshape(3, 4)
    views = {"t[0]": t[0], "slice": t[1:, ::2], "reshape": t.reshape(12), "permute": t.permute(1, 0),
             ".T": t.T, "detach": t.detach()}
    copies = {"clone": t.clone(), "fancy index": t[[0, 2]]}
    start = t._version

    row = views["t[0]"]
    row.add_(100)  # a write through a view is a write to t...
    assert t._version == start + 1
    np.testing.assert_array_equal(t.numpy()[0], np.arange(4) + 100)
    t.mul_(2)  # ...and a write to t is a write to every view
    for name, view in views.items():
        assert view._version == t._version == start + 2, name
    for name, copy in copies.items():
        assert copy._version == 0, name  # a copy has storage, and a counter, of its own
    np.testing.assert_array_equal(views[".T"].numpy(), t.numpy().T)
    views["detach"][2, 3] = -1.0
    assert t._version == start + 3 and t.numpy()[2, 3] == -1.0


def test_parameter_writes_bump_the_version_under_no_grad_and_in_nn_helpers():
    lin = nn.Linear(3, 2)
    w, b = lin.weight, lin.bias

    def versions():
        return w._version, b._version

    w0, b0 = versions()  # construction already ran nn.init on both
    with tg.no_grad():
        w.add_(1)
        w[0, 0] = 0.5
        w.T[1].mul_(2)  # through a view of the parameter
    assert versions() == (w0 + 3, b0)

    nn.init.zeros_(b)
    nn.init.xavier_uniform_(w)
    assert versions() == (w0 + 4, b0 + 1)

    lin.load_state_dict(lin.state_dict())
    assert versions() == (w0 + 5, b0 + 2)

    for make in (lambda: optim.SGD([w, b], lr=0.1), lambda: optim.Adam([w, b], lr=0.1)):
        opt = make()
        lin.zero_grad()
        lin(tg.ones(1, 3)).sum().backward()
        b.grad = None  # a parameter without a gradient is not updated, so not bumped
        before = versions()
        opt.step()
        assert versions() == (before[0] + 1, before[1])


# ---- memory: a kept loss costs its nodes, not its activations -----------------------------

def test_keeping_losses_after_backward_costs_little_memory():
    # The setting: an LSTM over (T=100, B=8, I=16) inputs with H=64. A step's
    # activations are megabytes; its nodes (op, scope, shape, parent links) far less.
    kept, warmup = 10, 3  # few kept: tracemalloc makes each step ~10x slower
    tg.manual_seed(0)
    lstm, head = nn.LSTM(16, 64), nn.Linear(64, 1)
    opt = optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=0.01)
    x, y = tg.randn(100, 8, 16), tg.randn(8, 1)
    losses = [_regression_step(lstm, head, opt, x, y) for _ in range(warmup)]  # grads, caches: made once

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        losses += [_regression_step(lstm, head, opt, x, y) for _ in range(kept)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_loss = (after - before) / kept
    assert per_loss < 0.5 * 2**20, f"each kept loss holds {per_loss / 2**20:.2f} MiB"
    assert all(loss.grad_fn is not None for loss in losses)


def _describe(root):
    """A graph as plain data: per node, (op, scope, shape, parent ids)."""
    return [(n.op, n.scope, n.shape, tuple(p.id for p in n.parents)) for n in tg.autograd.walk(root)]


def test_a_loss_kept_after_backward_can_still_be_walked():
    tg.manual_seed(0)
    lstm = nn.LSTM(3, 4)
    out, _ = lstm(tg.randn(5, 2, 3))
    loss = out.sum()
    drawn_before = _describe(loss)
    loss.backward()

    nodes = list(tg.autograd.walk(loss))
    assert _describe(loss) == drawn_before  # the same drawing after backward
    assert all(node.fn.saved is None for node in nodes if not node.is_leaf)  # yet its arrays are freed
    assert {"linear", "lstmstep", "getitem", "stack"} <= {node.op for node in nodes}  # fused steps (the default)
    assert {"lstm/l0/t0", "lstm/l0/t4"} <= {node.scope for node in nodes}
    leaves = [node.tensor for node in nodes if node.is_leaf]
    assert {id(p) for p in lstm.parameters()} == {id(t) for t in leaves}
    assert nodes[-1].op == "sum" and nodes[-1].shape == ()
    for node in nodes:  # each node after those it was computed from
        assert all(parent.id < node.id for parent in node.parents)


def test_the_graph_does_not_keep_forward_outputs_alive():
    x = tg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    t = x.tanh()
    y = t * 2
    z = y.sum()
    t_ref, y_ref = weakref.ref(t), weakref.ref(y)
    del t, y
    # Reference counting alone frees them: no gc.collect(), the graph makes no cycles with them.
    assert t_ref() is None, "the graph keeps the tanh output tensor alive"
    assert y_ref() is None, "the graph keeps the mul output tensor alive"
    z.backward()  # what backward needs was saved as arrays, not as the tensors
    expected = 2 * (1 - np.tanh([0.5, -1.0, 2.0]) ** 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)
