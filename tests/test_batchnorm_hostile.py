"""BatchNorm as one node (ops.BatchNorm, tg.nn.fused on) against torch.nn.BatchNorm1d /
torch.nn.functional.batch_norm on the same weights, and against its formula's ops (fused(False)):
values, every gradient, running buffers, num_batches_tracked, layouts, extremes, the engine's
hooks, in-place writes after forward, and a whole training run with Adam."""
import itertools

import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn import DTypeError, GraphError, InvalidValueError, ShapeError, nn

F = nn.functional
FUSED = pytest.mark.parametrize("fused", [True, False], ids=["fused", "op_by_op"])


def rel_err(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300)


def module_pair(channels, dtype, rng, **kwargs):
    ours, theirs = nn.BatchNorm1d(channels, **kwargs), torch.nn.BatchNorm1d(channels, **kwargs)
    if dtype == "float64":
        ours, theirs = ours.double(), theirs.double()
    if ours.weight is not None:
        w, b = rng.standard_normal(channels).astype(dtype), rng.standard_normal(channels).astype(dtype)
        with tg.no_grad():
            ours.weight.copy_(tg.tensor(w))
            ours.bias.copy_(tg.tensor(b))
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    return ours, theirs


def compare_steps(ours, theirs, shape, dtype, fused, rng, steps=3, tol=1e-11, scale=1.0, constant=False):
    """Forward + backward on `steps` fresh batches; every value compared after each."""
    for _ in range(steps):
        x = (rng.standard_normal(shape) * scale).astype(dtype)
        if constant:
            x[:, 0] = 3.0
        g = rng.standard_normal(shape).astype(dtype)
        a, b = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        with tg.nn.fused(fused):
            y = ours(a)
        yt = theirs(b)
        (y * tg.tensor(g)).sum().backward()
        (yt * torch.tensor(g)).sum().backward()
        pairs = [(y.numpy(), yt.detach().numpy()), (a.grad.numpy(), b.grad.numpy())]
        if ours.weight is not None:
            pairs += [(ours.weight.grad.numpy(), theirs.weight.grad.numpy()),
                      (ours.bias.grad.numpy(), theirs.bias.grad.numpy())]
        if ours.running_mean is not None:
            pairs += [(ours.running_mean.numpy(), theirs.running_mean.numpy()),
                      (ours.running_var.numpy(), theirs.running_var.numpy())]
            assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked.item())
        for k, (p, q) in enumerate(pairs):
            assert p.dtype == np.dtype(dtype), k
            assert rel_err(p, q) < tol, (k, rel_err(p, q))


# ---- the module against torch: every configuration ------------------------------------------

@needs_torch
@FUSED
@pytest.mark.parametrize("shape", [(2, 3), (7, 4), (2, 3, 4), (5, 3, 1)])
@pytest.mark.parametrize("affine,track,momentum", list(itertools.product([True, False], [True, False], [0.1, None])))
def test_module_matches_torch_train_then_eval(fused, shape, affine, track, momentum):
    rng = np.random.default_rng(hash((shape, affine, track, momentum)) % 2**32)
    ours, theirs = module_pair(shape[1], "float64", rng, affine=affine, track_running_stats=track, momentum=momentum)
    compare_steps(ours, theirs, shape, "float64", fused, rng, steps=3, tol=1e-9)  # N=2: d_x is ~eps-small
    ours.eval(), theirs.eval()  # running buffers, or the batch's own without them
    compare_steps(ours, theirs, shape, "float64", fused, rng, steps=2, tol=1e-9)


@needs_torch
@FUSED
@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 6)])
def test_module_matches_torch_float32(fused, shape):
    rng = np.random.default_rng(1)
    ours, theirs = module_pair(shape[1], "float32", rng, momentum=None)
    compare_steps(ours, theirs, shape, "float32", fused, rng, steps=3, tol=2e-5)


@needs_torch
@FUSED
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-11), ("float32", 5e-5)])
@pytest.mark.parametrize("scale", [1e-20, 1e-3, 1e6, 1e15])
def test_extreme_scales_and_a_constant_channel(fused, dtype, tol, scale):
    rng = np.random.default_rng(2)
    ours, theirs = module_pair(3, dtype, rng)
    compare_steps(ours, theirs, (8, 3), dtype, fused, rng, steps=2, tol=tol, scale=scale)
    ours, theirs = module_pair(3, dtype, rng, affine=False)  # channel 0 constant: variance 0, x_hat 0
    compare_steps(ours, theirs, (4, 3, 5), dtype, fused, rng, steps=2, tol=tol * 10, constant=True)


@needs_torch
@FUSED
def test_large_batch_from_the_buffer_cache_matches_torch(fused):
    """x - mean from buffers.empty (>= 256 KiB: a view of a cached block), float32 and float64."""
    for dtype, tol in (("float32", 5e-5), ("float64", 1e-11)):
        rng = np.random.default_rng(3)
        for shape, affine in (((512, 300), True), ((64, 30, 40), False)):
            ours, theirs = module_pair(shape[1], dtype, rng, affine=affine)
            compare_steps(ours, theirs, shape, dtype, fused, rng, steps=2, tol=tol)


# ---- the functional form: which of weight / bias, and which of them want a gradient -----------

@needs_torch
@FUSED
@pytest.mark.parametrize("given,wants", [
    ("wb", "xwb"), ("wb", "x"), ("wb", "w"), ("wb", "b"), ("wb", "wb"),
    ("w", "xw"), ("b", "xb"), ("", "x")])
def test_functional_weight_bias_combinations_match_torch(fused, given, wants):
    rng = np.random.default_rng(4)
    x, w, b, g = (rng.standard_normal(s) for s in ((5, 3, 2), 3, 3, (5, 3, 2)))
    results = []
    for lib in (tg, torch):
        leaves = {k: lib.tensor(v, requires_grad=k in wants) for k, v in (("x", x), ("w", w), ("b", b))}
        rm, rv = lib.tensor(np.zeros(3)), lib.tensor(np.ones(3))
        args = (leaves["x"], rm, rv, leaves["w"] if "w" in given else None, leaves["b"] if "b" in given else None)
        if lib is tg:
            with tg.nn.fused(fused):
                y = F.batch_norm(*args, training=True, momentum=0.3, eps=1e-3)
            (y * tg.tensor(g)).sum().backward()
        else:
            y = torch.nn.functional.batch_norm(*args, training=True, momentum=0.3, eps=1e-3)
            (y * torch.tensor(g)).sum().backward()
        results.append([y.detach().numpy(), rm.numpy(), rv.numpy()] +
                       [leaves[k].grad is None if k not in wants else leaves[k].grad.numpy() for k in "xwb"])
    for k, (p, q) in enumerate(zip(*results)):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-13, err_msg=str(k))


@needs_torch
@FUSED
@pytest.mark.parametrize("shape,view", [
    ((3, 5), lambda t: t.transpose(0, 1)), ((5, 3, 4), lambda t: t.permute(2, 1, 0)),
    ((6, 9), lambda t: t[::2, 1:7:2]), ((5, 6, 7), lambda t: t[:, ::2, 1::3])],
    ids=["transposed", "permuted", "sliced2d", "sliced3d"])
def test_non_contiguous_inputs_match_torch(fused, shape, view):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    a, b = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    c = view(b).shape[1]
    w, bias = rng.standard_normal(c), rng.standard_normal(c)
    with tg.nn.fused(fused):
        y = F.batch_norm(view(a), None, None, tg.tensor(w), tg.tensor(bias), training=True)
    yt = torch.nn.functional.batch_norm(view(b), None, None, torch.tensor(w), torch.tensor(bias), training=True)
    g = rng.standard_normal(yt.shape)
    (y * tg.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-13)


# ---- the engine around the node -------------------------------------------------------------

@needs_torch
@FUSED
@pytest.mark.parametrize("affine", [True, False])
def test_hooks_autograd_grad_and_retain_graph(fused, affine):
    rng = np.random.default_rng(6)
    x, g = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    with tg.nn.fused(fused):
        a = tg.tensor(x, requires_grad=True)
        y = nn.BatchNorm1d(3, affine=affine).double()(a)
    seen = []
    y.register_hook(lambda grad: seen.append(1) or grad * 2)
    loss = (y * tg.tensor(g)).sum()
    (gx,) = tg.autograd.grad(loss, [a], retain_graph=True)
    loss.backward(retain_graph=True)
    first = a.grad.numpy().copy()
    loss.backward()
    b = torch.tensor(x, requires_grad=True)
    yt = torch.nn.BatchNorm1d(3, affine=affine).double()(b)
    yt.register_hook(lambda grad: grad * 2)
    (gt,) = torch.autograd.grad((yt * torch.tensor(g)).sum(), [b])
    assert len(seen) == 3
    np.testing.assert_allclose(gx.numpy(), gt.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(first, gt.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.grad.numpy(), 2 * gt.numpy(), rtol=1e-10, atol=1e-13)


@FUSED
def test_weight_written_in_place_after_forward_is_an_error(fused):
    """torch raises at backward too (it saved the weight); a silent new-weight gradient is wrong."""
    rng = np.random.default_rng(7)
    with tg.nn.fused(fused):
        bn = nn.BatchNorm1d(3).double()
        y = bn(tg.tensor(rng.standard_normal((4, 3)), requires_grad=True))
    with tg.no_grad():
        bn.weight.mul_(2.0)
    with pytest.raises(GraphError, match="in-place"):
        (y * tg.tensor(rng.standard_normal((4, 3)))).sum().backward()


@FUSED
def test_input_view_written_after_forward_keeps_the_forward_gradient(fused):
    """torch raises here; we must at least not give the gradient of the written values."""
    rng = np.random.default_rng(8)
    base_values, g = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    grads = []
    for write in (False, True):
        base = tg.tensor(base_values, requires_grad=True)
        v = base * 1
        with tg.nn.fused(fused):
            y = nn.BatchNorm1d(3).double()(v[:, :3])
        if write:
            with tg.no_grad():
                v.mul_(3.0).add_(1.0)
        try:
            (y * tg.tensor(g)).sum().backward()
        except GraphError:
            return  # refusing, as torch does, is fine too
        grads.append(base.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-14)


@needs_torch
@FUSED
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("op,arg", [("add_", 2.0), ("mul_", 2.0), ("clamp_", 0.0)])
def test_output_written_in_place_then_backward_matches_torch(fused, affine, op, arg):
    """torch's batch_norm keeps x, mean and invstd, not its output: y.clamp_(0) (an in-place ReLU),
    y += 1 after it are fine there, and here on both paths (ops.BatchNorm without affine once
    returned the x_hat it saved, so any in-place write to the output raised at backward)."""
    rng = np.random.default_rng(9)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    a, b = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with tg.nn.fused(fused):
        y = nn.BatchNorm1d(3, affine=affine).double()(a)
    getattr(y, op)(arg)
    (y * tg.tensor(g)).sum().backward()
    yt = torch.nn.BatchNorm1d(3, affine=affine).double()(b)
    getattr(yt, op)(arg)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-13)


# ---- errors ---------------------------------------------------------------------------------

@FUSED
@pytest.mark.parametrize("values", [[[1, 2], [3, 5]], [[True, False], [False, True]]], ids=["int", "bool"])
def test_non_float_input_is_a_dtype_error(fused, values):
    """Both paths refuse an integer or bool input by name (the fused one once raised numpy's
    UFuncTypeError from batch_stats' subtract into an integer array)."""
    with tg.nn.fused(fused), pytest.raises(DTypeError, match="floating point"):
        F.batch_norm(tg.tensor(values), None, None, training=True)


@FUSED
def test_one_value_per_channel_is_refused_in_train_and_in_eval_without_buffers(fused):
    with tg.nn.fused(fused):
        for bn in (nn.BatchNorm1d(3), nn.BatchNorm1d(3, track_running_stats=False).eval()):
            with pytest.raises(ShapeError, match="more than 1 value"):
                bn(tg.randn(1, 3))
        assert nn.BatchNorm1d(3)(tg.randn(1, 3, 2)).shape == (1, 3, 2)  # N=1 but L=2 values


# ---- the op against its formula, and a training run -----------------------------------------

@pytest.mark.parametrize("shape,affine", [((6, 4), True), ((6, 4), False), ((3, 4, 5), True), ((2, 2, 1), False)])
def test_fused_equals_op_by_op(shape, affine):
    rng = np.random.default_rng(10)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    results = []
    for fused in (True, False):
        bn = nn.BatchNorm1d(shape[1], affine=affine, momentum=0.25).double()
        a = tg.tensor(x, requires_grad=True)
        with tg.nn.fused(fused):
            y = bn(a)
            y2 = bn(tg.tensor(x * 2 + 1))
        (y * tg.tensor(g)).sum().backward()
        results.append([y.numpy(), y2.numpy(), a.grad.numpy(), bn.running_mean.numpy(), bn.running_var.numpy()] +
                       [p.grad.numpy() for p in bn.parameters()])
    for k, (p, q) in enumerate(zip(*results)):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13, err_msg=str(k))


@needs_torch
@FUSED
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 2e-4)])
def test_adam_training_run_matches_torch_and_state_dict_round_trips(fused, dtype, tol):
    rng = np.random.default_rng(11)
    # no bias before the norm: its gradient is rounding noise, which Adam's step would magnify
    ours = nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 8, bias=False), torch.nn.BatchNorm1d(8, momentum=None),
                                 torch.nn.ReLU(), torch.nn.Linear(8, 2))
    if dtype == "float64":
        ours, theirs = ours.double(), theirs.double()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        values = rng.standard_normal(q.shape).astype(dtype) * 0.5
        with tg.no_grad():
            p.copy_(tg.tensor(values))
        with torch.no_grad():
            q.copy_(torch.tensor(values))
    opt, opt_t = tg.optim.Adam(ours.parameters(), lr=0.05), torch.optim.Adam(theirs.parameters(), lr=0.05)
    for _ in range(5):
        x, target = rng.standard_normal((10, 6)).astype(dtype), rng.standard_normal((10, 2)).astype(dtype)
        opt.zero_grad()
        opt_t.zero_grad()
        with tg.nn.fused(fused):
            loss = ((ours(tg.tensor(x)) - tg.tensor(target)) ** 2).mean()
        loss.backward()
        opt.step()
        loss_t = ((theirs(torch.tensor(x)) - torch.tensor(target)) ** 2).mean()
        loss_t.backward()
        opt_t.step()
        assert abs(loss.item() - loss_t.item()) <= tol * abs(loss_t.item())
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for name in theirs_state:
        assert rel_err(np.asarray(ours_state[name]), theirs_state[name].numpy()) < tol * 10, name
    assert int(ours[1].num_batches_tracked.item()) == 5
    # round trip into a fresh model: the same eval outputs as torch's
    copy = nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    if dtype == "float64":
        copy = copy.double()
    copy.load_state_dict(ours_state)
    copy.eval(), theirs.eval()
    x = rng.standard_normal((4, 6)).astype(dtype)
    np.testing.assert_allclose(copy(tg.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=tol * 10,
                               atol=tol)
    assert int(copy[1].num_batches_tracked.item()) == 5


@FUSED
def test_bad_buffers_and_eval_without_buffers_are_named_errors(fused):
    x = tg.randn(4, 3)
    with tg.nn.fused(fused):
        with pytest.raises(InvalidValueError, match="evaluation mode"):
            F.batch_norm(x, None, None, training=False)
        with pytest.raises(ShapeError, match=r"running_mean must be a tensor of shape \(3,\)"):
            F.batch_norm(x, tg.zeros(4), tg.ones(3), training=True)
        with pytest.raises(ShapeError, match="weight must be a tensor"):
            F.batch_norm(x, None, None, np.ones(3, np.float32), None, training=True)


def test_float16_statistics_are_summed_in_float32_as_torch_does():
    """4000 float16 values near 100 sum past float16's 65504: the fused op works in float32 (the
    composite formula under fused(False) still sums in float16, as before)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((4000, 3)) * 3 + 100).astype(np.float16)
    g = rng.standard_normal((4000, 3)).astype(np.float16)
    x64 = x.astype(np.float64)
    x_hat = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    norm = nn.BatchNorm1d(3).half()
    inp = tg.tensor(x, requires_grad=True)
    out = norm(inp)
    (out * tg.tensor(g)).sum().backward()
    assert out.dtype == inp.grad.dtype == norm.weight.grad.dtype == norm.running_mean.dtype == np.float16
    np.testing.assert_allclose(out.numpy().astype(np.float64), x_hat, atol=2e-2)
    np.testing.assert_allclose(norm.weight.grad.numpy(), (g * x_hat).sum(0), rtol=2e-3)
    np.testing.assert_allclose(norm.running_mean.numpy(), 0.1 * x64.mean(0), rtol=2e-3)
    assert np.isfinite(inp.grad.numpy()).all()
