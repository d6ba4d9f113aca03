"""Optimizers, schedulers and gradient clipping against PyTorch (the test-only oracle).

Trajectories: the same small tanh model, the same initial weights, 20 steps in both
frameworks; every parameter after every step agrees to 1e-10 in float64, 1e-5 in float32.
"""
import math

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim
from tinygrad_rnn.errors import AnomalyError, ShapeError
from tinygrad_rnn.nn import Parameter
from tinygrad_rnn.nn.utils import clip_grad_norm_, clip_grad_value_
from tinygrad_rnn.optim import lr_scheduler
from oracle import needs_torch, torch

STEPS = 20
TOLERANCES = [(np.float64, 1e-10), (np.float32, 1e-5)]


# ---- a small problem, written once for both frameworks ---------------------------------------

def _problem(dtype):
    """Initial weights (w (4, 3), b (4,), v (4,)) and data x (8, 3), y (8,)."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in [(4, 3), (4,), (4,)]]
    return arrays, rng.standard_normal((8, 3)).astype(dtype), rng.standard_normal(8).astype(dtype)


def _loss(params, x, y):
    """The same expression on tinygrad_rnn or torch tensors."""
    w, b, v = params
    hidden = (x @ w.T + b).tanh()
    return ((hidden @ v - y) ** 2).mean() + (w * w).sum() * 0.01


def _host(t):
    return t.detach().cpu().numpy().copy()


def _train(params, opt, x, y, steps):
    """`steps` rounds of zero_grad/backward/step; the parameters after each, as numpy arrays."""
    history = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(params, x, y).backward()
        opt.step()
        history.append([_host(p) for p in params])
    return history


def _ours(arrays, device="cpu"):
    return [Parameter(tg.tensor(a.copy(), device=device)) for a in arrays]


def _theirs(arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


def _assert_same_history(got, want, tol, dtype):
    for step, (ours, theirs) in enumerate(zip(got, want), 1):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert a.dtype == dtype, f"step {step}, param {i}: dtype {a.dtype}"
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"step {step}, param {i}")


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.05, "maximize": True}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True, "maximize": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True, "weight_decay": 0.1, "eps": 1e-6,
                 "maximize": True}),
]


@needs_torch
@pytest.mark.parametrize("dtype,tol", TOLERANCES, ids=["float64", "float32"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in CASES])
def test_trajectory_matches_torch(device, name, kwargs, dtype, tol):
    arrays, x, y = _problem(dtype)
    ours, theirs = _ours(arrays, device), _theirs(arrays)
    got = _train(ours, getattr(optim, name)(ours, **kwargs),
                 tg.tensor(x, device=device), tg.tensor(y, device=device), STEPS)
    want = _train(theirs, getattr(torch.optim, name)(theirs, foreach=False, **kwargs),
                  torch.tensor(x), torch.tensor(y), STEPS)
    assert np.abs(got[-1][0] - arrays[0]).max() > 1e-2  # the weights did move
    _assert_same_history(got, want, tol, dtype)


def test_amsgrad_keeps_the_running_max(device):
    arrays, x, y = _problem(np.float32)
    params = _ours(arrays, device)
    opt = optim.Adam(params, lr=0.05, amsgrad=True)
    _train(params, opt, tg.tensor(x, device=device), tg.tensor(y, device=device), STEPS)
    state = opt.state[params[0]]
    assert state["step"] == STEPS
    running_max, current = (tg.backend.to_numpy(state[k]) for k in ("max_exp_avg_sq", "exp_avg_sq"))
    assert running_max.dtype == np.float32 and current.dtype == np.float32
    assert np.all(running_max >= current) and np.any(running_max > current)


@needs_torch
@pytest.mark.parametrize("name,kwargs", [("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True})])
def test_param_groups_with_their_own_options(name, kwargs):
    arrays, x, y = _problem(np.float64)
    runs = []
    for module, params in ((optim, _ours(arrays)), (torch.optim, _theirs(arrays))):
        groups = [{"params": params[:1], "lr": 0.2}, {"params": params[1:], "weight_decay": 0.1}]
        extra = {} if module is optim else {"foreach": False}
        opt = getattr(module, name)(groups, lr=0.02, **kwargs, **extra)
        data = (tg.tensor(x), tg.tensor(y)) if module is optim else (torch.tensor(x), torch.tensor(y))
        runs.append(_train(params, opt, *data, STEPS))
    _assert_same_history(runs[0], runs[1], 1e-10, np.float64)
    opt = getattr(optim, name)([{"params": _ours(arrays)[:1], "lr": 0.2}], lr=0.02)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["weight_decay"] == 0


# ---- state_dict ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.05}),
])
def test_state_dict_round_trip_continues_the_same_trajectory(device, name, kwargs):
    arrays, x, y = _problem(np.float32)
    x, y = tg.tensor(x, device=device), tg.tensor(y, device=device)
    params = _ours(arrays, device)
    uninterrupted = _train(params, getattr(optim, name)(params, **kwargs), x, y, 10)

    params = _ours(arrays, device)
    first = getattr(optim, name)(params, **kwargs)
    _train(params, first, x, y, 5)
    saved = first.state_dict()
    assert sorted(saved["state"]) == [0, 1, 2] and saved["param_groups"][0]["params"] == [0, 1, 2]
    resumed = [Parameter(tg.tensor(p.numpy(), device=device)) for p in params]
    second = getattr(optim, name)(resumed, lr=123.0)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == kwargs["lr"]
    continued = _train(resumed, second, x, y, 5)
    for step, (a, b) in enumerate(zip(continued, uninterrupted[5:]), 6):
        assert all(np.array_equal(p, q) for p, q in zip(a, b)), f"step {step} differs"


def test_state_dict_holds_host_copies():
    arrays, x, y = _problem(np.float32)
    params = _ours(arrays)
    opt = optim.Adam(params)
    _train(params, opt, tg.tensor(x), tg.tensor(y), 2)
    saved = opt.state_dict()
    assert isinstance(saved["state"][0]["exp_avg"], np.ndarray) and saved["state"][0]["step"] == 2
    saved["state"][0]["exp_avg"][...] = 7.0
    assert not np.any(opt.state[params[0]]["exp_avg"] == 7.0)


@needs_torch
@pytest.mark.parametrize("name,kwargs", [("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True}),
                                         ("AdamW", {}), ("RMSprop", {"momentum": 0.9, "centered": True})])
def test_state_dict_layout_matches_torch(name, kwargs):
    arrays, x, y = _problem(np.float64)
    layouts = []
    for module, params, data in ((optim, _ours(arrays), (tg.tensor(x), tg.tensor(y))),
                                 (torch.optim, _theirs(arrays), (torch.tensor(x), torch.tensor(y)))):
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.5}]
        opt = getattr(module, name)(groups, **kwargs)
        _train(params, opt, *data, 2)
        layouts.append(opt.state_dict())
    ours, theirs = layouts
    assert list(ours["state"]) == list(theirs["state"]) == [0, 1, 2]
    assert all(set(ours["state"][i]) == set(theirs["state"][i]) for i in range(3))
    for mine, torch_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert set(mine) <= set(torch_group)
        assert all(mine[k] == torch_group[k] for k in mine), (mine, torch_group)
    for key, value in ours["state"][2].items():
        np.testing.assert_allclose(value, theirs["state"][2][key].numpy(), rtol=1e-10)


def test_load_state_dict_checks_groups_and_shapes():
    arrays, _, _ = _problem(np.float32)
    opt = optim.SGD(_ours(arrays), momentum=0.9)
    state = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}] * 2}
    with pytest.raises(ValueError, match="2 parameter groups"):
        opt.load_state_dict(state)
    state = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}
    with pytest.raises(ValueError, match="has 2 parameters"):
        opt.load_state_dict(state)
    state = {"state": {1: {"momentum_buffer": np.zeros(5)}}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]}
    with pytest.raises(ShapeError, match=r"\(5,\).*\(4,\)"):
        opt.load_state_dict(state)


# ---- behaviour -------------------------------------------------------------------------------

def test_params_without_grad_are_skipped(device):
    a = Parameter(tg.tensor(np.ones(3, np.float32), device=device))
    b = Parameter(tg.tensor(np.ones(2, np.float32), device=device))
    opt = optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    opt.step()
    assert b.grad is None and b not in opt.state
    np.testing.assert_array_equal(b.numpy(), np.ones(2, np.float32))
    assert a.dtype == np.float32 and np.all(a.numpy() < 1.0)


def test_zero_grad_and_closure():
    p = Parameter(tg.tensor(np.array([1.0, -2.0])))
    opt = optim.SGD([p], lr=0.5)
    loss = opt.step(lambda: (p * p).sum().backward() or (p * p).sum())
    assert float(loss) == pytest.approx(5.0) and np.array_equal(p.numpy(), [0.0, 0.0])
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and np.array_equal(p.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert p.grad is None


def test_update_is_in_place():
    p = Parameter(tg.tensor(np.array([1.0, 2.0])))
    data = p._data
    p.grad = tg.tensor(np.array([1.0, 1.0]))
    optim.SGD([p], lr=0.5).step()
    assert p._data is data and np.array_equal(data, [0.5, 1.5])


@pytest.mark.parametrize("make,message", [
    (lambda ps: optim.SGD(ps, lr=-0.1), "learning rate"),
    (lambda ps: optim.SGD(ps, momentum=-1), "momentum"),
    (lambda ps: optim.SGD(ps, nesterov=True), "Nesterov"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), "beta parameter at index 1"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), "epsilon"),
    (lambda ps: optim.AdamW(ps, weight_decay=-0.1), "weight decay"),
    (lambda ps: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda ps: optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}]), "more than one parameter group"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make(_ours(_problem(np.float32)[0]))


def test_params_must_be_an_iterable_of_tensors():
    p = Parameter(tg.tensor(np.ones(3)))
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p)
    with pytest.raises(TypeError, match="list"):
        optim.SGD([p, [1.0]])
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2])


# ---- schedulers ------------------------------------------------------------------------------

def _lr_history(module, make_scheduler, steps, param):
    opt = module.SGD([{"params": [param[0]], "lr": 0.1}, {"params": [param[1]], "lr": 0.03}], lr=0.1)
    scheduler = make_scheduler(module.lr_scheduler, opt)
    history = [scheduler.get_last_lr()]
    for _ in range(steps):
        opt.step()
        scheduler.step()
        history.append(scheduler.get_last_lr())
        assert history[-1] == [g["lr"] for g in opt.param_groups]
    return history


SCHEDULERS = {
    "StepLR": (lambda m, opt: m.StepLR(opt, step_size=3, gamma=0.5), 20),
    "CosineAnnealingLR": (lambda m, opt: m.CosineAnnealingLR(opt, T_max=7, eta_min=0.001), 3 * 7),
    "CosineAnnealingLR-eta0": (lambda m, opt: m.CosineAnnealingLR(opt, T_max=4), 2 * 4 + 1),
}


@needs_torch
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(name):
    make, steps = SCHEDULERS[name]
    ours = _lr_history(optim, make, steps, _ours([np.ones(2)] * 2))
    theirs = _lr_history(torch.optim, make, steps, [torch.ones(2, requires_grad=True) for _ in range(2)])
    assert len(set(map(tuple, ours))) > 3  # the lr did change
    assert ours == theirs  # the same float formulas, so bit-equal


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_state_dict_round_trip(name):
    make, steps = SCHEDULERS[name]
    params = _ours([np.ones(2)] * 2)
    opt = optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.03}])
    scheduler = make(lr_scheduler, opt)
    for _ in range(5):
        scheduler.step()
    opt2 = optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}])
    scheduler2 = make(lr_scheduler, opt2)
    opt2.load_state_dict(opt.state_dict())
    scheduler2.load_state_dict(scheduler.state_dict())
    for _ in range(steps):
        scheduler.step()
        scheduler2.step()
        assert scheduler.get_last_lr() == scheduler2.get_last_lr()


def test_scheduler_needs_an_optimizer_and_initial_lr():
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(optim.SGD(_ours([np.ones(2)])), step_size=2, last_epoch=3)


# ---- gradient clipping -----------------------------------------------------------------------

def _grads(dtype):
    rng = np.random.default_rng(2)
    return [np.asarray(rng.standard_normal(shape) * 3, dtype=dtype) for shape in [(3, 4), (5,), ()]]


def _with_grads(grads, new):
    """Parameters holding `grads`, plus one without a grad; new(array, requires_grad) makes a tensor."""
    params = []
    for g in grads:
        p = new(np.zeros(g.shape, g.dtype), True)
        p.grad = new(g.copy(), False)
        params.append(p)
    return params + [new(np.zeros(2, grads[0].dtype), True)]


def _our_tensors(device="cpu"):
    def new(array, requires_grad):
        t = tg.tensor(array, device=device)
        return Parameter(t) if requires_grad else t
    return new


def _torch_tensors():
    return lambda a, requires_grad: torch.tensor(a, requires_grad=requires_grad)


@needs_torch
@pytest.mark.parametrize("dtype,tol", TOLERANCES, ids=["float64", "float32"])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
def test_clip_grad_norm_matches_torch(device, norm_type, max_norm, dtype, tol):
    grads = _grads(dtype)
    ours = _with_grads(grads, _our_tensors(device))
    theirs = _with_grads(grads, _torch_tensors())
    total = clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=False)
    assert isinstance(total, tg.Tensor) and total.shape == () and total.dtype == dtype
    assert total.device == device
    np.testing.assert_allclose(total.item(), expected.item(), rtol=tol)
    for p, q in zip(ours[:-1], theirs[:-1]):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(_host(p.grad), q.grad.numpy(), rtol=tol, atol=tol)
    clipped = max_norm < expected.item()
    assert clipped == (not np.allclose(_host(ours[0].grad), grads[0]))
    assert ours[-1].grad is None


@needs_torch
def test_clip_grad_norm_non_finite():
    grads = _grads(np.float64)
    grads[0][1, 2] = np.inf
    with pytest.raises(AnomalyError, match="non-finite"):
        clip_grad_norm_(_with_grads(grads, _our_tensors()), 1.0, error_if_nonfinite=True)
    ours = _with_grads(grads, _our_tensors())
    theirs = _with_grads(grads, _torch_tensors())
    with np.errstate(invalid="ignore"):  # inf * 0, as in torch: the gradients become NaN/0
        total = clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0, foreach=False)
    assert total.item() == expected.item() == math.inf
    for p, q in zip(ours[:-1], theirs[:-1]):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_clip_grad_norm_scales_in_place_as_torch():
    """torch's clip_grad_norm_ scales each .grad in place (mul_): an alias of it sees the scaled values,
    and a read-only gradient array gets a scaled copy instead of an error."""
    a, b = tg.zeros(3, requires_grad=True), tg.zeros(2, requires_grad=True)
    a.grad, b.grad = tg.tensor([3.0, 0.0, 4.0]), tg.tensor([0.0, 0.0])
    alias = a.grad.numpy()
    tg.nn.utils.clip_grad_norm_([a, b], 1.0)
    np.testing.assert_allclose(alias, [0.6, 0.0, 0.8], rtol=1e-6)
    frozen = np.array([6.0, 8.0], dtype=np.float32)
    frozen.flags.writeable = False
    c = tg.zeros(2, requires_grad=True)
    c.grad = tg.from_numpy(frozen)
    tg.nn.utils.clip_grad_norm_([c], 5.0)
    np.testing.assert_allclose(c.grad.numpy(), [3.0, 4.0], rtol=1e-6)
    np.testing.assert_array_equal(frozen, [6.0, 8.0])


def test_clip_grad_norm_without_grads_and_single_tensor():
    p = Parameter(tg.tensor(np.zeros(3, np.float32)))
    total = clip_grad_norm_([p], 1.0)
    assert total.item() == 0.0 and total.dtype == np.float32
    p.grad = tg.tensor(np.array([3.0, 4.0, 0.0], np.float32))
    assert clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8, 0.0], rtol=1e-6)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value_matches_torch(device, dtype):
    grads = _grads(dtype)
    ours = _with_grads(grads, _our_tensors(device))
    theirs = _with_grads(grads, _torch_tensors())
    assert clip_grad_value_(ours, 1.5) is None
    torch.nn.utils.clip_grad_value_(theirs, 1.5, foreach=False)
    for p, q in zip(ours[:-1], theirs[:-1]):
        assert p.grad.dtype == dtype
        np.testing.assert_array_equal(_host(p.grad), q.grad.numpy())
    assert _host(ours[0].grad).max() == 1.5 and ours[-1].grad is None


@needs_torch
@pytest.mark.parametrize("dtype,tol,steps", [(np.float64, 1e-9, 3), (np.float32, 2e-5, 1)], ids=["float64", "float32"])
@pytest.mark.parametrize("kwargs", [{}, {"lr": 0.5, "history_size": 3, "max_iter": 7},
                                    {"line_search_fn": "strong_wolfe"},
                                    {"line_search_fn": "strong_wolfe", "lr": 0.8, "history_size": 4, "max_iter": 9}],
                         ids=["defaults", "short", "wolfe", "wolfe-short"])
def test_lbfgs_trajectory_matches_torch(kwargs, dtype, tol, steps):
    """step(closure) calls of several inner iterations each, as the sine-wave example uses it. (In
    float32, rounding differences grow over dozens of quasi-Newton iterations: one step there.)"""
    arrays, x, y = _problem(dtype)
    def run(lib, params, data):
        opt = lib.LBFGS(params, **kwargs)

        def closure():
            opt.zero_grad()
            loss = _loss(params, *data)
            loss.backward()
            return loss
        return [[_host(opt.step(closure))] + [_host(p) for p in params] for _ in range(steps)]

    ours = run(optim, _ours(arrays), (tg.tensor(x), tg.tensor(y)))
    theirs = run(torch.optim, _theirs(arrays), (torch.tensor(x), torch.tensor(y)))
    assert np.abs(ours[-1][1] - arrays[0]).max() > 1e-2
    for step_ours, step_theirs in zip(ours, theirs):
        np.testing.assert_allclose(step_ours[0], step_theirs[0], rtol=tol)
        for a, b in zip(step_ours[1:], step_theirs[1:]):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_lbfgs_refuses_groups_unknown_line_searches_and_a_missing_closure():
    arrays, _, _ = _problem(np.float64)
    params = _ours(arrays)
    with pytest.raises(ValueError, match="per-parameter"):
        optim.LBFGS([{"params": params[:1]}, {"params": params[1:]}])
    with pytest.raises(RuntimeError, match="strong_wolfe"):  # torch: RuntimeError (at step time)
        optim.LBFGS(params, line_search_fn="backtracking")
    with pytest.raises(ValueError, match="closure"):
        optim.LBFGS(params).step(None)


def _rosenbrock(xy):
    return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2


@needs_torch
@pytest.mark.parametrize("lr", [1.0, 0.01, 25.0], ids=["lr1", "widening", "overshooting"])
def test_lbfgs_strong_wolfe_on_rosenbrock_matches_torch(lr):
    """A curved valley: the line search both widens (a small lr) and zooms (a large one); the
    iterates, losses and evaluation counts equal torch's step after step."""
    def run(lib, optim_module):
        xy = lib.tensor(np.array([-1.5, 2.0]), requires_grad=True)
        opt = optim_module.LBFGS([xy], lr=lr, max_iter=15, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = _rosenbrock(xy)
            loss.backward()
            return loss
        history = []
        for _ in range(4):
            loss = float(_host(opt.step(closure)))
            state = opt.state[xy]
            history.append((loss, _host(xy), state["func_evals"], state["n_iter"]))
        return history

    ours, theirs = run(tg, optim), run(torch, torch.optim)
    for (loss, xy, evals, iters), (loss_t, xy_t, evals_t, iters_t) in zip(ours, theirs):
        assert (evals, iters) == (evals_t, iters_t)
        np.testing.assert_allclose(loss, loss_t, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(xy, xy_t, rtol=1e-9, atol=1e-12)
    final = ours[-1][1]
    assert _rosenbrock(final) < 0.2 * ours[0][0]  # it did descend the valley


# ---- a 0-d parameter; a .grad that does not fit its parameter -------------------------------

@needs_torch
@pytest.mark.parametrize("name,kwargs", [("Adam", {}), ("Adam", {"amsgrad": True, "maximize": True}),
                                         ("AdamW", {"weight_decay": 0.1}), ("Adam", {"weight_decay": 0.1}),
                                         ("SGD", {"lr": 0.1, "momentum": 0.9}), ("RMSprop", {})])
def test_zero_d_parameter_steps_as_torch(name, kwargs):
    """A scalar parameter (a temperature, a gate bias): numpy turns 0-d arithmetic into scalars,
    which Adam's in-place scratch arrays once refused (TypeError: return arrays must be of ArrayType)."""
    ours, theirs = Parameter(tg.tensor(0.7)), torch.nn.Parameter(torch.tensor(0.7))
    opt, opt_t = getattr(optim, name)([ours], **kwargs), getattr(torch.optim, name)([theirs], **kwargs)
    for k in range(5):
        for p, o in ((ours, opt), (theirs, opt_t)):
            o.zero_grad()
            (p * p * (k + 1.5)).backward()
            o.step()
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("grad,error,words", [
    (tg.ones(1), ShapeError, "assigned grad of shape (1,) for a tensor of shape (3,)"),
    (tg.ones(3, 1), ShapeError, "shape (3, 1)"),
    (tg.ones(3, dtype=tg.float64), tg.DTypeError, "assigned grad of dtype float64 for a tensor of dtype float32"),
    (np.ones(3, np.float32), tg.DTypeError, "must be a Tensor or None, got ndarray"),
    ("stub", tg.DeviceError, "assigned grad on stub:0 for a tensor on cpu"),  # conftest's strict backend
])
def test_assigning_a_grad_that_does_not_fit_is_refused(grad, error, words):
    """As torch: a (1,) gradient would broadcast over the whole parameter in an update, a float64 one
    be cast or fail inside it, a bare array fail in backward. The old .grad stays."""
    p = Parameter(tg.tensor(np.arange(3, dtype=np.float32)))
    p.grad = kept = tg.ones(3)
    if isinstance(grad, str):
        grad = tg.ones(3, device="stub")
    with pytest.raises(error) as info:
        p.grad = grad
    assert words in str(info.value)
    assert p.grad is kept
    p.grad = None  # None always goes
    assert p.grad is None


@pytest.mark.parametrize("storage,error,words", [
    (tg.ones(1), ShapeError, "optimizer step: .grad of shape (1,) for a tensor of shape (3,)"),
    (tg.ones(3, dtype=tg.float64), tg.DTypeError,
     "optimizer step: .grad of dtype float64 for a tensor of dtype float32"),
])
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_step_names_a_gradient_that_no_longer_fits(storage, error, words, name):
    """.grad.data = other swaps the gradient's storage behind the assignment check: the step checks
    again, names both shapes and dtypes, and leaves the parameter as it was."""
    p = Parameter(tg.tensor(np.arange(3, dtype=np.float32)))
    p.grad = tg.ones(3)
    p.grad.data = storage
    opt = getattr(optim, name)([p], lr=0.1)
    with pytest.raises(error) as info:
        opt.step()
    assert words in str(info.value)
    np.testing.assert_array_equal(p.numpy(), [0, 1, 2])
