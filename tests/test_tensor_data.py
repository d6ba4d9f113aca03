"""Tensor.data as torch's: a Tensor on the same storage, without grad or graph, with its own version
counter; `t.data = other` takes other's storage. Ported manual-update code runs as written."""
import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.errors import DTypeError, GraphError

W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
X = np.array([[1.0, 2.0], [-0.5, 0.3], [0.1, -2.0], [0.7, 0.7]])


def manual_sgd(lib, steps=4, lr=0.1):
    """A torch-style loop: backward, then the update through .data, zeroing through .grad.data."""
    w = lib.tensor(W0, requires_grad=True)
    x = lib.tensor(X)
    for _ in range(steps):
        loss = (x @ w).tanh().pow(2).sum()
        loss.backward()
        w.data.add_(w.grad, alpha=-lr)
        w.grad.data.zero_()
    return w


@needs_torch
def test_manual_sgd_through_data_matches_torch():
    ours, theirs = manual_sgd(tg), manual_sgd(torch)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert ours.requires_grad and ours.is_leaf and not ours.grad.numpy().any()


@needs_torch
@pytest.mark.parametrize("lib", ["tg", "torch"])
def test_data_is_a_grad_free_tensor_on_the_same_storage(lib):
    lib = tg if lib == "tg" else torch
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    d = x.data
    assert isinstance(d, type(x)) and not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert x.data is not x.data  # a new tensor each time, as torch's
    d[0] = 5.0
    x.data.mul_(2)
    x.data[2] = -1.0
    assert x.detach().numpy().tolist() == [10.0, 4.0, -1.0]
    assert x.data.numpy().tolist() == [10.0, 4.0, -1.0]
    # writes through .data are invisible to autograd: x's counter never moved, d counts its own
    assert x._version == 0 and d._version == 1
    y = (x * 2).data
    assert not y.requires_grad and y.grad_fn is None


@needs_torch
def test_a_write_through_data_is_not_caught_as_in_torch():
    """torch's documented hazard of .data: a saved input changed through it gives the new values' gradient."""
    grads = []
    for lib in (tg, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        loss = (x * x).sum()
        x.data.add_(1)
        loss.backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(*grads)


def test_in_place_writes_through_a_leaf_data_need_no_no_grad():
    p = tg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    p.data.copy_(tg.tensor([4.0, 5.0, 6.0]))
    p.data.mul_(0.5)
    assert p.detach().numpy().tolist() == [2.0, 2.5, 3.0]
    p.data.clamp_(max=2.5)
    p.data.fill_(7.0)
    assert p.detach().numpy().tolist() == [7.0, 7.0, 7.0]
    p.data.zero_()
    assert not p.detach().numpy().any() and p.requires_grad
    with pytest.raises(GraphError, match="leaf"):  # on the tensor itself, torch's rule still holds
        p.mul_(2)


@pytest.mark.parametrize("method, args, low, high", [("normal_", (0.0, 0.1), -1.0, 1.0),
                                                     ("uniform_", (-0.2, 0.3), -0.2, 0.3)])
def test_normal_and_uniform_fill_in_place(method, args, low, high):
    p = tg.zeros(200, 50, requires_grad=True)
    view = p.detach()
    tg.manual_seed(0)
    getattr(p.data, method)(*args)
    values = view.numpy()
    assert values.dtype == np.float32 and values.min() >= low and values.max() <= high
    expected_mean, expected_std = ((args[0], args[1]) if method == "normal_"
                                   else ((low + high) / 2, (high - low) / 12 ** 0.5))
    assert abs(values.mean() - expected_mean) < 0.01 and abs(values.std() - expected_std) < 0.01
    tg.manual_seed(0)
    again = getattr(tg.zeros(200, 50), method)(*args)
    np.testing.assert_array_equal(again.numpy(), values)  # seeded by tg.manual_seed
    with pytest.raises(GraphError, match="leaf"):
        getattr(p, method)(*args)
    with pytest.raises(DTypeError, match="int64"):
        getattr(tg.zeros(3, dtype="int64"), method)()


@needs_torch
def test_normal_on_a_non_leaf_passes_a_zero_gradient_as_torch():
    grads = []
    for lib in (tg, torch):
        x = lib.ones(3, requires_grad=True)
        y = x * 2
        y.normal_()
        (y * 3).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(*grads)


@needs_torch
@pytest.mark.parametrize("lib", ["tg", "torch"])
def test_setting_data_takes_the_storage_and_keeps_the_rest(lib):
    lib = tg if lib == "tg" else torch
    p = lib.ones(2, 3, requires_grad=True)
    other = lib.zeros(4, dtype=lib.float64)
    p.data = other
    assert tuple(p.shape) == (4,) and p.dtype == lib.float64 and p.requires_grad and p.is_leaf
    other.add_(1)
    assert p.detach().numpy().tolist() == [1.0] * 4  # shares other's storage
    (p * p).sum().backward()
    assert p.grad.numpy().tolist() == [2.0] * 4
    y = lib.ones(3, requires_grad=True) * 2
    node = y.grad_fn
    y.data = lib.zeros(3)
    assert y.grad_fn is node and y.requires_grad


def test_setting_data_to_a_non_tensor_is_a_type_error():
    p = tg.ones(2)
    for value in ([1.0, 2.0], np.zeros(2), 3.0):
        with pytest.raises(DTypeError, match="has to be set to a Tensor"):
            p.data = value
        assert isinstance(p._data, np.ndarray) and p.shape == (2,)


def test_setting_data_detaches_from_old_views():
    """After `t.data = other`, writes into t must not flag nodes that saved t's old storage."""
    w = tg.ones(3, requires_grad=True)
    base = tg.ones(3)
    loss = (w * base).sum()  # saves base's array
    base.data = tg.zeros(3)
    with tg.no_grad():
        base.add_(1)
    loss.backward()  # the saved (old) array was never written
    assert w.grad.numpy().tolist() == [1.0, 1.0, 1.0]
