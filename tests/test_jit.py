"""The JIT switch (tg.set_kernels, tg.kernels, TINYGRAD_RNN_KERNELS) and its errors, and numba's Adam
update (tinygrad_rnn/jit/adam.py) against numpy's: bit for bit on every option, and against torch.
The switch's errors are checked without numba too; what runs numba's kernels skips without it."""
import os
import subprocess
import sys

import numpy as np
import pytest
from oracle import needs_torch, torch
from threads import run_in_threads

import tinygrad_rnn as tg
from tinygrad_rnn.optim import adam

try:
    import numba  # noqa: F401
except ImportError:
    numba = None
needs_numba = pytest.mark.skipif(numba is None, reason="numba (the jit extra) is not installed")


# ---- the switch ------------------------------------------------------------------------

@needs_numba
def test_switch_selects_and_restores():
    assert tg.get_kernels() == "numpy"  # the default
    with tg.kernels("numba"):
        assert tg.get_kernels() == "numba"
        with pytest.raises(RuntimeError):
            with tg.kernels("numpy"):
                assert tg.get_kernels() == "numpy"
                raise RuntimeError
        assert tg.get_kernels() == "numba"
    assert tg.get_kernels() == "numpy"
    tg.set_kernels("numba")
    try:
        assert tg.get_kernels() == "numba"
    finally:
        tg.set_kernels("numpy")


@needs_numba
def test_a_block_is_its_threads_and_set_kernels_the_processs():
    """As no_grad and tg.nn.fused: a `kernels` block changes only the thread that entered it, so
    blocks in two threads cannot undo each other; set_kernels is what every other thread follows."""
    seen = []

    def look():
        seen.append(tg.get_kernels())
    with tg.kernels("numba"):
        run_in_threads(look)
        assert tg.get_kernels() == "numba"
    tg.set_kernels("numba")
    try:
        run_in_threads(look)
        with tg.kernels("numpy"):
            assert tg.get_kernels() == "numpy"
            run_in_threads(look)
    finally:
        tg.set_kernels("numpy")
    assert seen == ["numpy", "numba", "numba"]


def test_unknown_kernels_are_named():
    with pytest.raises(ValueError, match=r"set_kernels: expected one of 'numpy', 'numba', got 'cuda'"):
        tg.set_kernels("cuda")
    with pytest.raises(ValueError, match=r"kernels: expected one of 'numpy', 'numba', got 'fast'"):
        tg.kernels("fast")
    assert tg.get_kernels() == "numpy"


def test_missing_numba_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    for name in [m for m in sys.modules if m == "tinygrad_rnn.jit" or m.startswith("tinygrad_rnn.jit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(tg, "jit", raising=False)
    with pytest.raises(ImportError, match=r"needs numba, which is not installed \(pip install numba, or pip "
                                          r"install -e '\.\[jit\]'"):
        tg.set_kernels("numba")
    assert tg.get_kernels() == "numpy"


def import_with(value, code):
    env = dict(os.environ, TINYGRAD_RNN_KERNELS=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("value", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_environment_variable_selects_at_import(value):
    out = import_with(value, "import tinygrad_rnn as tg; print(tg.get_kernels())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == value


def test_bad_environment_variable_fails_at_import_naming_it_and_the_choices():
    out = import_with("fast", "import tinygrad_rnn")
    assert out.returncode != 0
    assert "the environment variable TINYGRAD_RNN_KERNELS='fast'" in out.stderr and "'numpy', 'numba'" in out.stderr
    assert "unset it (or set it to 'numpy')" in out.stderr


def test_environment_variable_without_numba_names_it(tmp_path):
    """numba missing (a stand-in module that fails to import, first on the path): the import error
    says where the choice came from and how to get numpy's code back."""
    (tmp_path / "numba.py").write_text("raise ImportError('no numba here')\n")
    env = dict(os.environ, TINYGRAD_RNN_KERNELS="numba", PYTHONPATH=os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", "import tinygrad_rnn"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "TINYGRAD_RNN_KERNELS='numba'" in out.stderr and "needs numba, which is not installed" in out.stderr


@needs_numba
def test_names_ignore_case_and_spaces_and_kernels_decorates():
    tg.set_kernels(" NumPy ")
    assert tg.get_kernels() == "numpy"

    @tg.kernels("NUMBA")
    def inside():
        return tg.get_kernels()
    assert inside() == "numba" and tg.get_kernels() == "numpy"
    assert inside.__name__ == "inside"


# ---- Adam -------------------------------------------------------------------------------

SHAPES = [(7, 5), (33,), (), (0, 3), (4, 3, 2)]
OPTIONS = {
    "adam": (tg.optim.Adam, {}),
    "adam_l2": (tg.optim.Adam, {"weight_decay": 0.1}),
    "amsgrad": (tg.optim.Adam, {"amsgrad": True}),
    "maximize": (tg.optim.Adam, {"maximize": True, "lr": 0.01}),
    "adamw": (tg.optim.AdamW, {"weight_decay": 0.05}),
    "high_lerp_branch": (tg.optim.Adam, {"betas": (0.3, 0.99)}),  # 1 - beta1 >= 0.5: lerp's other formula
}


def train(kernels, cls, options, dtype=np.float32, steps=6, nan_at=None):
    """steps of cls on a few parameters with fixed random gradients -> every parameter and state array."""
    rng = np.random.default_rng(0)
    params = [tg.nn.Parameter(tg.tensor(rng.standard_normal(s).astype(dtype))) for s in SHAPES]
    opt = cls(params, **options)
    with tg.kernels(kernels):
        for step in range(steps):
            for p in params:
                grad = np.asarray(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 3), dtype=dtype)
                if nan_at == step and grad.size:
                    grad.reshape(-1)[0] = np.nan
                p.grad = tg.tensor(grad)
            opt.step()
    return [p.numpy() for p in params] + [a for p in params for a in opt.state[p].values() if isinstance(a, np.ndarray)]


def spy(monkeypatch):
    from tinygrad_rnn import jit
    calls = []
    entry = jit.adam_update_

    def run(*args):
        out = entry(*args)
        calls.append(out is not NotImplemented)
        return out
    monkeypatch.setattr(jit, "adam_update_", run)
    return calls


@needs_numba
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_adam_is_numpys_bit_for_bit(option, monkeypatch):
    cls, options = OPTIONS[option]
    ref = train("numpy", cls, options)
    calls = spy(monkeypatch)
    jit = train("numba", cls, options)
    assert calls and all(calls)  # every update ran the kernel
    assert len(ref) == len(jit)
    for k, (a, b) in enumerate(zip(ref, jit)):
        np.testing.assert_array_equal(b, a, err_msg=f"array {k}")


@needs_numba
@pytest.mark.parametrize("option", ["adam", "amsgrad"])
def test_adam_nan_spreads_as_numpys(option):
    cls, options = OPTIONS[option]
    ref, jit = (train(k, cls, options, nan_at=2) for k in ("numpy", "numba"))
    assert any(np.isnan(a).any() for a in ref)
    for a, b in zip(ref, jit):
        np.testing.assert_array_equal(b, a)


@needs_numba
def test_adam_declines_what_it_does_not_take(monkeypatch):
    """float64 parameters, a strided gradient: numpy's routine runs (no kernel call), same numbers."""
    calls = spy(monkeypatch)
    ref = train("numpy", tg.optim.Adam, {}, dtype=np.float64)
    assert [np.asarray(a).dtype for a in ref][:1] == [np.float64]
    np.testing.assert_equal(train("numba", tg.optim.Adam, {}, dtype=np.float64), ref)
    assert calls and not any(calls)
    rng = np.random.default_rng(1)
    param, grad = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32).T
    states = []
    for kernels in ("numpy", "numba"):
        p, m, v = param.copy(), np.zeros_like(param), np.zeros_like(param)
        with tg.kernels(kernels):
            adam.adam_update_(p, grad, m, v, None, 0.1, 0.999, 1e-3, 0.0316, 1e-8)
        states.append((p, m, v))
    assert calls[-1] is False
    for a, b in zip(*states):
        np.testing.assert_array_equal(a, b)


@needs_numba
@needs_torch
def test_adam_through_the_kernel_matches_torch():
    rng = np.random.default_rng(3)
    start = rng.standard_normal((50, 20)).astype(np.float32)
    ours, theirs = tg.nn.Parameter(tg.tensor(start)), torch.nn.Parameter(torch.tensor(start))
    opt, opt_t = tg.optim.AdamW([ours], lr=0.01, amsgrad=True), torch.optim.AdamW([theirs], lr=0.01, amsgrad=True)
    with tg.kernels("numba"):
        for _ in range(10):
            grad = rng.standard_normal(start.shape).astype(np.float32)
            ours.grad, theirs.grad = tg.tensor(grad), torch.tensor(grad)
            opt.step()
            opt_t.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7)
