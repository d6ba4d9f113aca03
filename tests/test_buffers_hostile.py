"""Hostile-user scenarios for the host buffer cache (tinygrad_rnn/buffers.py) and the in-place reuse
that came with it (Function.consume_saved, LSTMSequence own_proj, clip_grad_norm_ in place): nothing a
user still holds may change, and every number must equal the cache-off run, torch, or a copy taken
when it was made. Sizes are chosen so that the arrays involved are >= 256 KiB (cached)."""
import pickle
import threading

import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn import buffers, nn
from tinygrad_rnn.nn import functional as F

T, B, I, H = 40, 32, 24, 64  # (T, B, 4H) float32 = 1.3 MiB; (T+2, B, H) = 344 KiB: all cached


@pytest.fixture(autouse=True)
def _restore_cache():
    yield
    buffers.set_limit(256 * 2**20)
    buffers.empty_cache()


def cache_off():
    buffers.set_limit(0)
    buffers.empty_cache()


def cache_on():
    buffers.set_limit(256 * 2**20)
    buffers.empty_cache()


def rng(seed=0):
    return np.random.default_rng(seed)


def data(shape, seed=0, dtype=np.float32):
    return rng(seed).standard_normal(shape).astype(dtype)


def both(run):
    """run() with the cache on and with it off; their results (lists of arrays) must be identical."""
    cache_on()
    on = [np.array(a, copy=True) for a in run()]
    cache_off()
    off = [np.array(a, copy=True) for a in run()]
    cache_on()
    assert len(on) == len(off)
    for k, (a, b) in enumerate(zip(on, off)):
        np.testing.assert_array_equal(a, b, err_msg=f"result {k}: cache on != cache off")
    return on


def layer(kind="LSTM", seed=0, dtype="float32", **kw):
    tg.manual_seed(seed)
    m = getattr(nn, kind)(kw.pop("input_size", I), kw.pop("hidden_size", H), **kw)
    return m.to(dtype) if dtype != "float32" else m


def torch_twin(kind, ours, **kw):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(kw.pop("input_size", I), kw.pop("hidden_size", H), **kw).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return theirs


def grads(m):
    return [p.grad.numpy().copy() for p in m.parameters()]


# ---- training loops: values kept across steps ------------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_outputs_kept_from_several_steps_do_not_change(kind):
    def run():
        m = layer(kind)
        opt = tg.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        kept, copies, results = [], [], []
        for step in range(4):
            x = tg.tensor(data((T, B, I), step))
            out, state = m(x)
            h_n = state[0] if kind == "LSTM" else state
            kept.append((out, h_n))
            copies.append((out.numpy().copy(), h_n.numpy().copy()))
            opt.zero_grad()
            (out * out).mean().backward()
            tg.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()
            results += grads(m)
        for (out, h_n), (o, h) in zip(kept, copies):
            np.testing.assert_array_equal(out.numpy(), o)
            np.testing.assert_array_equal(h_n.numpy(), h)
        return results + [o for o, _ in copies]
    both(run)


def test_truncated_bptt_with_detach_and_kept_states():
    def run():
        m = layer("LSTM", num_layers=2)
        opt = tg.optim.SGD(m.parameters(), lr=0.1)
        state, kept, copies, out_list = None, [], [], []
        for step in range(4):
            x = tg.tensor(data((T, B, I), 10 + step))
            out, state = m(x, state)
            kept.append(out)
            copies.append(out.numpy().copy())
            loss = out.pow(2).mean() + state[0].sum() * 0.01 + state[1].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = tuple(s.detach() for s in state)
            out_list += grads(m)
        for a, c in zip(kept, copies):
            np.testing.assert_array_equal(a.numpy(), c)
        return out_list + copies
    both(run)


def test_output_of_one_step_as_input_of_the_next():
    def run():
        m = layer("LSTM", input_size=H)
        x = tg.tensor(data((T, B, H), 3))
        results = []
        for _ in range(3):
            out, _ = m(x)
            out.sum().backward()
            results.append(out.numpy().copy())
            x = out.detach()  # the cached output array becomes the next input
        results.append(x.numpy().copy())
        return results + grads(m)
    both(run)


def test_model_called_twice_before_one_backward():
    def run():
        m = layer("LSTM", bidirectional=True)
        x1 = tg.tensor(data((T, B, I), 1), requires_grad=True)
        x2 = tg.tensor(data((T, B, I), 2), requires_grad=True)
        o1, (h1, c1) = m(x1)
        c_o1 = o1.numpy().copy()
        o2, (h2, c2) = m(x2)
        np.testing.assert_array_equal(o1.numpy(), c_o1)
        (o1 * o2).sum().backward()
        np.testing.assert_array_equal(o1.numpy(), c_o1)
        return [o1.numpy(), o2.numpy(), x1.grad.numpy(), x2.grad.numpy()] + grads(m)
    both(run)


# ---- against torch ---------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("kind,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("RNN", dict(num_layers=2, nonlinearity="relu")),
    ("RNN", dict(bidirectional=True)),
])
def test_layers_equal_torch_float64(kind, kw):
    ours = layer(kind, dtype="float64", **kw)
    theirs = torch_twin(kind, ours, **kw)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    xs = [data(shape, s, np.float64) for s in (5, 6)]
    for x in xs:  # twice, so the second run reuses the first one's buffers
        xo = tg.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        oo, so = ours(xo)
        ot, st = theirs(xt)
        so = so if isinstance(so, tuple) else (so,)
        st = st if isinstance(st, tuple) else (st,)
        w = data(oo.shape, 9, np.float64)
        lo = (oo * tg.tensor(w)).sum() + sum(s.sum() * (k + 2) for k, s in enumerate(so))
        lt = (ot * torch.tensor(w)).sum() + sum(s.sum() * (k + 2) for k, s in enumerate(st))
        lo.backward()
        lt.backward()
        np.testing.assert_allclose(oo.numpy(), ot.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)


@needs_torch
def test_lstm_lengths_equal_torch_packed():
    ours = layer("LSTM", dtype="float64", bidirectional=True)
    theirs = torch_twin("LSTM", ours, bidirectional=True)
    x = data((T, B, I), 7, np.float64)
    lengths = rng(1).integers(1, T + 1, B)
    lengths[0] = T
    xo, xt = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    oo, (ho, co) = ours(xo, lengths=lengths.tolist())
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    ot, (ht, ct) = theirs(packed)
    ot, _ = torch.nn.utils.rnn.pad_packed_sequence(ot, total_length=T)
    (oo.pow(2).sum() + ho.sum() + co.sum()).backward()
    (ot.pow(2).sum() + ht.sum() + ct.sum()).backward()
    np.testing.assert_allclose(oo.numpy(), ot.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), atol=1e-10)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-9)


# ---- retain_graph, autograd.grad, hooks, retain_grad ------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_retain_graph_twice_gives_twice_the_gradient(kind):
    m = layer(kind, num_layers=2)
    x = tg.tensor(data((T, B, I), 4), requires_grad=True)
    out, _ = m(x)
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    once = grads(m) + [x.grad.numpy().copy()]
    loss.backward(retain_graph=True)
    twice = grads(m) + [x.grad.numpy().copy()]
    loss.backward()  # the last one consumes (LSTM: writes over its gates)
    thrice = grads(m) + [x.grad.numpy().copy()]
    for a, b, c in zip(once, twice, thrice):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c, 3 * a, rtol=1e-5, atol=1e-5)
    with pytest.raises(tg.GraphError):
        loss.backward()


def test_autograd_grad_equals_backward_and_leaves_graph_for_a_second_call():
    m = layer("LSTM")
    x = tg.tensor(data((T, B, I), 4), requires_grad=True)
    out, (h, c) = m(x)
    loss = (out * out).sum() + h.sum()
    params = list(m.parameters())
    g1 = tg.autograd.grad(loss, [x] + params, retain_graph=True)
    g1c = [g.numpy().copy() for g in g1]
    g2 = tg.autograd.grad(loss, [x] + params)
    for a, b, c in zip(g1, g1c, g2):
        np.testing.assert_array_equal(a.numpy(), b)
        np.testing.assert_allclose(c.numpy(), b, rtol=1e-6, atol=1e-6)
    out2, (h2, _) = m(x)
    ((out2 * out2).sum() + h2.sum()).backward()
    for p, b in zip([x] + params, g1c):
        np.testing.assert_allclose(p.grad.numpy(), b, rtol=1e-5, atol=1e-5)


@needs_torch
def test_hooks_and_retain_grad_on_layer_outputs_equal_torch():
    ours = layer("LSTM", dtype="float64", num_layers=2)
    theirs = torch_twin("LSTM", ours, num_layers=2)
    x = data((T, B, I), 8, np.float64)
    res = {}
    for lib, mod, X in ((tg, ours, tg.tensor(x, requires_grad=True)),
                        (torch, theirs, torch.tensor(x, requires_grad=True))):
        store = []
        out, (h, c) = mod(X)
        out.register_hook(lambda g, store=store: store.append(g))
        out.retain_grad()
        h.retain_grad()
        X.register_hook(lambda g, store=store: store.append(g))
        loss = (out * out).sum() + (h * 3).sum()
        loss.backward()
        mod2 = mod(X)[0]  # another forward + backward: what the hooks kept must not change
        (mod2 * 2).sum().backward()
        np_ = (lambda t: t.numpy()) if lib is tg else (lambda t: t.detach().numpy())
        res[lib] = [np_(s) for s in store] + [np_(out.grad), np_(h.grad), np_(X.grad)]
    for a, b in zip(res[tg], res[torch]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_hook_replacing_the_gradient_of_an_lstm_output():
    def run():
        m = layer("LSTM")
        x = tg.tensor(data((T, B, I), 8), requires_grad=True)
        out, _ = m(x)
        out.register_hook(lambda g: g * 2)
        out.sum().backward()
        return [x.grad.numpy()] + grads(m)
    both(run)


# ---- ways of holding a cached array ----------------------------------------------------------

@needs_torch
def test_everything_that_holds_an_output_keeps_its_values():
    m = layer("LSTM")
    x = tg.tensor(data((T, B, I), 1))
    out, (h, c) = m(x)
    ref = out.numpy().copy()
    href = h.numpy().copy()
    holders = [torch.from_numpy(out.numpy()), np.asarray(out), memoryview(out.numpy()),
               out.numpy()[5:], out.detach(), np.frombuffer(out.numpy(), np.float32)]
    h_t = torch.from_numpy(h.numpy())
    pick = pickle.dumps(out.detach())
    del out, h, c
    for s in range(4):
        o, (hh, _) = m(tg.tensor(data((T, B, I), 20 + s)))
        o.sum()
        (o * 2).numpy()
    np.testing.assert_array_equal(holders[0].numpy(), ref)
    np.testing.assert_array_equal(holders[1], ref)
    np.testing.assert_array_equal(np.asarray(holders[2]), ref)
    np.testing.assert_array_equal(holders[3], ref[5:])
    np.testing.assert_array_equal(holders[4].numpy(), ref)
    np.testing.assert_array_equal(holders[5], ref.reshape(-1))
    np.testing.assert_array_equal(h_t.numpy(), href)
    np.testing.assert_array_equal(pickle.loads(pick).numpy(), ref)


def test_save_and_load_of_outputs_and_gradients(tmp_path):
    m = layer("LSTM")
    x = tg.tensor(data((T, B, I), 1), requires_grad=True)
    out, _ = m(x)
    out.sum().backward()
    ref = {"out": out.detach(), "gx": x.grad}
    copies = {k: v.numpy().copy() for k, v in ref.items()}
    tg.save(ref, tmp_path / "a.pt")
    loaded = tg.load(tmp_path / "a.pt")
    for s in range(3):
        o, _ = m(tg.tensor(data((T, B, I), 30 + s), requires_grad=True))
        o.sum().backward()
    for k in copies:
        np.testing.assert_array_equal(loaded[k].numpy(), copies[k])
        np.testing.assert_array_equal(ref[k].numpy(), copies[k])


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_outputs_under_no_grad_kept_across_calls(mode):
    m = layer("LSTM", num_layers=2, bidirectional=True)
    ctx = getattr(tg, mode)
    kept, copies = [], []
    with ctx():
        for s in range(4):
            out, (h, c) = m(tg.tensor(data((T, B, I), s)))
            kept.append((out, h, c))
            copies.append(tuple(t.numpy().copy() for t in (out, h, c)))
    for k, cp in zip(kept, copies):
        for a, b in zip(k, cp):
            np.testing.assert_array_equal(a.numpy(), b)
    # and the same numbers as a forward with a graph
    out, (h, c) = m(tg.tensor(data((T, B, I), 3)))
    np.testing.assert_array_equal(out.numpy(), copies[3][0])


# ---- in-place ops on layer outputs ----------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("edit", ["add_", "setitem", "h_add_", "c_mul_"])
def test_in_place_edits_of_lstm_outputs_then_backward_equal_torch(edit):
    ours = layer("LSTM", dtype="float64", bidirectional=True)
    theirs = torch_twin("LSTM", ours, bidirectional=True)
    x = data((T, B, I), 2, np.float64)
    res = []
    for mod, X in ((ours, tg.tensor(x, requires_grad=True)), (theirs, torch.tensor(x, requires_grad=True))):
        out, (h, c) = mod(X)
        if edit == "add_":
            out.add_(1)
        elif edit == "setitem":
            out[0] = 5
        elif edit == "h_add_":
            h.add_(1)
        else:
            c.mul_(2)
        loss = (out * out).sum() + (h * h).sum() + (c * c).sum()
        loss.backward()
        to = (lambda t: t.numpy()) if mod is ours else (lambda t: t.detach().numpy())
        res.append([to(out), to(h), to(c), to(X.grad)] + [to(p.grad) for p in mod.parameters()])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


# ---- log_softmax, cross_entropy, nll_loss ----------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_big_vocab_equals_torch(dtype):
    n, v = 100, 2000
    logits = data((n, v), 3, dtype) * 3
    target = rng(4).integers(0, v, n)
    lo = tg.tensor(logits, requires_grad=True)
    lt = torch.tensor(logits, requires_grad=True)
    kept = []
    for _ in range(2):
        a = F.cross_entropy(lo, tg.tensor(target))
        b = torch.nn.functional.cross_entropy(lt, torch.tensor(target))
        a.backward()
        b.backward()
        kept.append(lo.grad.numpy().copy())
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=tol)
    np.testing.assert_allclose(lo.grad.numpy(), lt.grad.numpy(), rtol=tol, atol=tol * 1e-2)
    np.testing.assert_allclose(kept[1], 2 * kept[0], rtol=1e-6)


@needs_torch
@pytest.mark.parametrize("shape,dim", [((2000, 100), 1), ((2000, 100), 0), ((20, 100, 50), 1),
                                       ((20, 100, 50), 0), ((20, 50, 100), -1)])
def test_log_softmax_kept_outputs_and_grads_equal_torch(shape, dim):
    x = data(shape, 5) * 4
    xo = tg.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo = xo.log_softmax(dim)
    yt = torch.log_softmax(xt, dim)
    keep = yo.numpy().copy()
    w = data(shape, 6)
    (yo * tg.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    gx = xo.grad.numpy().copy()
    y2 = (xo * 2).log_softmax(dim)  # another of the same size: must not land on yo
    (y2.exp() * 0).sum().backward()
    np.testing.assert_array_equal(yo.numpy(), keep)
    np.testing.assert_allclose(keep, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


@needs_torch
def test_nll_loss_of_log_softmax_big_equals_torch():
    n, v = 2000, 100
    x = data((n, v), 7)
    target = rng(8).integers(0, v, n)
    weight = np.abs(data((v,), 9)) + 0.1
    xo, xt = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    a = F.nll_loss(xo.log_softmax(1), tg.tensor(target), weight=tg.tensor(weight), ignore_index=3)
    b = torch.nn.functional.nll_loss(torch.log_softmax(xt, 1), torch.tensor(target), weight=torch.tensor(weight),
                                     ignore_index=3)
    a.backward()
    b.backward()
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-8)


@needs_torch
@pytest.mark.parametrize("edit", ["add_", "setitem"])
def test_in_place_edit_of_log_softmax_output_then_backward(edit):
    """torch refuses (the output is saved for backward); a silently wrong gradient is the bug."""
    x = data((2000, 100), 5)
    xo = tg.tensor(x, requires_grad=True)
    yo = xo.log_softmax(1)
    if edit == "add_":
        yo.add_(1)
    else:
        yo[0] = 5
    loss = (yo * yo).sum()
    try:
        loss.backward()
    except tg.GraphError:
        return  # refused, as torch
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.log_softmax(xt, 1).clone()
    if edit == "add_":
        yt.add_(1)
    else:
        yt[0] = 5
    (yt * yt).sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)


# ---- Linear -----------------------------------------------------------------------------------

def test_linear_outputs_and_input_gradients_kept():
    lin = nn.Linear(256, 512)
    kept, copies = [], []
    for s in range(4):
        x = tg.tensor(data((300, 256), s), requires_grad=True)
        y = lin(x)
        (y * y).sum().backward()
        kept.append((y, x.grad))
        copies.append((y.numpy().copy(), x.grad.numpy().copy()))
        ref = x.numpy() @ lin.weight.numpy().T + lin.bias.numpy()
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-4)
    for (y, g), (yc, gc) in zip(kept, copies):
        np.testing.assert_array_equal(y.numpy(), yc)
        np.testing.assert_array_equal(g.numpy(), gc)


# ---- slices: SparseGrad.dense -----------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("index", [slice(2, 10), slice(-10, None), slice(None, 1000), slice(10, 5),
                                   slice(0, 300), (slice(3, 50), slice(1, 7))])
def test_slice_gradients_equal_torch(index):
    x = data((300, 400), 1, np.float64)
    xo, xt = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    for X in (xo, xt):
        y = X[index]
        (y * y).sum().backward()
        (X[index] * 3).sum().backward()
        (X[index].exp().sum() + X.sum()).backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


# ---- clip_grad_norm_ in place ----------------------------------------------------------------

@needs_torch
def test_clip_grad_norm_does_not_scale_a_gradient_a_hook_kept():
    """torch's AccumulateGrad copies a gradient something else still holds; clipping must not reach it."""
    x = data((300, 300), 3, np.float64)
    res = []
    for lib in (tg, torch):
        w = lib.tensor(x, requires_grad=True)
        kept = []
        w.register_hook(kept.append)
        (w * w).sum().backward()
        before = np.array(kept[0] if lib is tg else kept[0].numpy(), copy=True)
        (tg.nn.utils if lib is tg else torch.nn.utils).clip_grad_norm_([w], 1.0)
        after = kept[0] if lib is tg else kept[0].numpy()
        res.append((before, np.asarray(after)))
    (tb, ta), (rb, ra) = res
    np.testing.assert_array_equal(rb, ra)  # torch: the hook's array is untouched
    np.testing.assert_array_equal(tb, ta)


def test_clip_grad_norm_matches_cache_off():
    def run():
        m = layer("GRU", num_layers=2)
        out, _ = m(tg.tensor(data((T, B, I), 2)))
        (out * out).sum().backward()
        total = tg.nn.utils.clip_grad_norm_(m.parameters(), 0.1)
        return [total.numpy()] + grads(m)
    both(run)


# ---- threads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_threads_training_at_once_equal_one_by_one(kind):
    n = 4
    ms = [layer(kind, seed=k) for k in range(n)]
    xs = [data((T, B, I), 40 + k) for k in range(n)]

    def work(k, out):
        res = []
        for s in range(3):
            y, _ = ms[k](tg.tensor(xs[k] + s))
            z = F.cross_entropy(y.reshape(T * B, H) * 3, tg.tensor(np.arange(T * B) % H))
            (z + (y * y).mean()).backward()
            res.append(y.numpy().copy())
            res += grads(ms[k])
            for p in ms[k].parameters():
                p.grad = None
        out[k] = res

    serial = {}
    for k in range(n):
        work(k, serial)
    par = {}
    threads = [threading.Thread(target=work, args=(k, par)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(n):
        for a, b in zip(serial[k], par[k]):
            np.testing.assert_array_equal(a, b)


# ---- DataLoader ------------------------------------------------------------------------------

def test_dataloader_batches_through_an_lstm():
    ds = tg.data.TensorDataset(tg.tensor(data((B * 3, T, I), 11)))
    def run():
        m = layer("LSTM", batch_first=True)
        kept, copies = [], []
        for (xb,) in tg.data.DataLoader(ds, batch_size=B):
            y, _ = m(xb)
            y.sum().backward()
            kept.append(y)
            copies.append(y.numpy().copy())
        for a, c in zip(kept, copies):
            np.testing.assert_array_equal(a.numpy(), c)
        return copies + grads(m)
    both(run)


@needs_torch
@pytest.mark.parametrize("how", ["tied", "embedding", "lstm_lengths"])
def test_clip_grad_norm_does_not_scale_what_a_parameter_hook_kept(how):
    """The realistic forms: a tied weight (two uses: the engine sums them in its own buffer), an
    embedding (its SparseGrad), an LSTM run with lengths= (its recurrent weight's MatmulGrad). In each the
    engine hands the hook the very array it then makes the leaf's .grad, so clip's in-place scaling
    reaches what the hook kept. torch leaves it as the backward made it."""
    kept = []
    if how == "lstm_lengths":
        m = layer("LSTM", dtype="float64")
        p = m.weight_hh_l0
        p.register_hook(lambda g: kept.append(g))
        out, _ = m(tg.tensor(data((T, B, I), 1, np.float64)), lengths=[T] * (B - 1) + [T - 3])
        (out * out).sum().backward()
    else:
        p = tg.tensor(data((2000, 64), 2, np.float64), requires_grad=True)
        p.register_hook(lambda g: kept.append(g))
        if how == "tied":
            h = tg.tensor(data((64, 64), 3, np.float64))
            ((p @ h) * p).sum().backward()
        else:
            idx = tg.tensor(rng(5).integers(0, 2000, (300,)))
            (F.embedding(idx, p) ** 2).sum().backward()
    snapshot = np.array(kept[0], copy=True)
    np.testing.assert_array_equal(p.grad.numpy(), snapshot)
    tg.nn.utils.clip_grad_norm_([p], 1e-3)
    np.testing.assert_array_equal(kept[0], snapshot)  # fails: scaled by the clip


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_walked_graph_with_node_hooks_gives_the_same_gradients(kind):
    def run(walk):
        m = layer(kind, num_layers=2, bidirectional=True)
        x = tg.tensor(data((T, B, I), 12), requires_grad=True)
        out, _ = m(x)
        loss = (out * out).sum()
        seen = []
        if walk:
            for node in tg.autograd.walk(loss):
                if node.fn is not None and node.op.endswith("step"):
                    node.fn.register_hook(lambda g: seen.append(np.array(getattr(g, "values", g), copy=True)))
        loss.backward()
        return [x.grad.numpy().copy()] + grads(m), seen
    plain, _ = run(False)
    walked, seen = run(True)
    assert seen
    for a, b in zip(plain, walked):  # float32: fused and per-step sums differ in order only
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    # and with the cache off
    cache_off()
    off, _ = run(True)
    for a, b in zip(walked, off):
        np.testing.assert_array_equal(a, b)


def test_walked_graph_retain_graph_then_consuming_backward():
    m = layer("LSTM")
    x = tg.tensor(data((T, B, I), 13), requires_grad=True)
    out, (h, c) = m(x)
    loss = (out * out).sum() + c.sum()
    list(tg.autograd.walk(loss))
    loss.backward(retain_graph=True)
    once = [x.grad.numpy().copy()] + grads(m)
    loss.backward()
    for a, b in zip(once, [x.grad.numpy()] + grads(m)):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-5, atol=1e-5)


def test_threads_autograd_grad_and_backward_at_once():
    m = layer("LSTM", bidirectional=True)
    xs = [data((T, B, I), 60 + k) for k in range(4)]

    def work(k, out):
        x = tg.tensor(xs[k], requires_grad=True)
        y, (h, c) = m(x)
        loss = (y * y).sum() + h.sum()
        (gx,) = tg.autograd.grad(loss, [x], retain_graph=k % 2 == 0)
        out[k] = [y.numpy().copy(), gx.numpy().copy()]

    serial, par = {}, {}
    for k in range(4):
        work(k, serial)
    threads = [threading.Thread(target=work, args=(k, par)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for a, b in zip(serial[k], par[k]):
            np.testing.assert_array_equal(a, b)


def test_gradient_of_lstm_output_kept_by_a_hook_while_training_continues():
    m = layer("LSTM", num_layers=2)
    opt = tg.optim.SGD(m.parameters(), lr=0.01)
    kept, copies = [], []
    for s in range(3):
        x = tg.tensor(data((T, B, I), 70 + s), requires_grad=True)
        out, _ = m(x)
        out.register_hook(lambda g: kept.append(g))
        x.register_hook(lambda g: kept.append(g))
        opt.zero_grad()
        (out * out).sum().backward()
        copies += [np.array(k, copy=True) for k in kept[-2:]]
        opt.step()
    for a, b in zip(kept, copies):
        np.testing.assert_array_equal(a, b)
