"""The backward engine, grad mode, scopes, dtypes, factories and the errors bad input gets."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.errors import AnomalyError, DeviceError, DTypeError, GraphError, ShapeError

# ---- backward sweep -------------------------------------------------------------------


def test_gradient_accumulates_over_reuse_like_an_rnn_weight(device):
    w = tg.tensor([[0.5, -0.25], [0.1, 0.3]], device=device, requires_grad=True)
    h = tg.ones(1, 2, device=device)
    for _ in range(10):
        h = h @ w  # the same weight at every time step
    h.sum().backward()
    # d/dW of 1^T (h0 W^10) 1 = sum_k (W^k)^T h0^T 1^T (W^{9-k})^T
    W = w.numpy().astype(np.float64)
    expected = sum(np.linalg.matrix_power(W, k).T @ np.ones((2, 1)) @ np.ones((1, 2))
                   @ np.linalg.matrix_power(W, 9 - k).T for k in range(10))
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-5)


def test_leaf_grads_accumulate_across_backward_calls():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])
    x.zero_grad()
    assert x.grad is None


def test_backward_through_a_100k_node_chain():
    x = tg.tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 1.00001 ** 100_000, rtol=1e-9)


def test_diamond_graph_visits_each_node_once():
    x = tg.tensor(2.0, dtype=np.float64, requires_grad=True)
    a = x * 3
    b = a.exp() + a * a  # a reached along two paths
    b.backward()
    np.testing.assert_allclose(x.grad.item(), 3 * np.exp(6.0) + 2 * 6.0 * 3)


def test_saved_arrays_are_freed_and_second_backward_raises():
    x = tg.randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert y.grad_fn.parents[0].saved is None
    with pytest.raises(GraphError, match="sum.*retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = tg.tensor([1.0, -2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * x.numpy())


def test_non_scalar_root_needs_grad():
    x = tg.randn(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(GraphError, match=r"non-scalar.*\(2, 3\)"):
        y.backward()
    y.backward(tg.ones(2, 3))
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 2.0))
    with pytest.raises(ShapeError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2).backward(tg.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(GraphError, match="does not require grad"):
        (tg.ones(2) * 2).sum().backward()


def test_no_grad_and_detach_cut_the_graph():
    x = tg.randn(3, requires_grad=True)
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    z = (x.detach() * x).sum()  # truncated BPTT: the detached factor is a constant
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), x.numpy())
    assert tg.is_grad_enabled()


def test_retain_grad_on_intermediate():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())


def test_comparisons_return_tensors_without_grad():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x > 1.5
    assert not mask.requires_grad and mask.dtype == np.bool_
    assert mask.tolist() == [False, True, True]
    assert (x == 2.0).tolist() == [False, True, False]


# ---- scopes ---------------------------------------------------------------------------


def test_scope_labels_are_stamped_on_nodes_and_nest():
    x = tg.randn(2, requires_grad=True)
    with tg.scope("lstm"):
        with tg.scope("t3"):
            y = x.tanh()
        z = y * 2
    w = z + 1
    assert y.grad_fn.scope == "lstm/t3"
    assert z.grad_fn.scope == "lstm"
    assert w.grad_fn.scope is None
    assert y.grad_fn.name == "tanh" and y.grad_fn.parents == (x,)


# ---- dtypes and factories ---------------------------------------------------------------


def test_default_dtypes_follow_torch():
    assert tg.tensor([1.0, 2.0]).dtype == np.float32
    assert tg.tensor([1, 2]).dtype == np.int64
    assert tg.tensor(np.zeros(2)).dtype == np.float64  # numpy data keeps its dtype
    assert tg.randn(2).dtype == tg.zeros(2).dtype == tg.ones(2).dtype == tg.rand(2).dtype == np.float32
    assert tg.arange(3).dtype == np.int64 and tg.arange(3.0).dtype == np.float32
    assert tg.zeros_like(tg.zeros(2, dtype=np.float64)).dtype == np.float64


def test_float32_survives_numpy_scalars_on_either_side():
    x = tg.ones(2, requires_grad=True)
    for y in (x * np.float64(2), np.float64(2) * x, x + np.float32(1), x / 3, 1 - x, x ** 2.0):
        assert y.dtype == np.float32, y
    (np.float64(2.0) * x).sum().backward()
    assert x.grad.dtype == np.float32


def test_float64_everywhere():
    x = tg.randn(3, 4, dtype=np.float64, requires_grad=True)
    y = (x.softmax(-1) * x.tanh()).var() + x.logsumexp(1).sum()
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float64


def test_manual_seed_reproduces():
    tg.manual_seed(7)
    a = tg.randn(3).numpy()
    tg.manual_seed(7)
    np.testing.assert_array_equal(a, tg.randn(3).numpy())


def test_tensor_api_basics(device):
    x = tg.arange(6.0, device=device).reshape(2, 3)
    assert x.shape == (2, 3) and x.ndim == 2 and len(x) == 2
    assert x.size() == (2, 3) and x.numel() == 6 and x.size(1) == 3  # size() is the shape, as in torch
    assert x.device == device and x.dtype == np.float32
    assert x[1, 2].item() == 5.0 and isinstance(x.numpy(), np.ndarray)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert x.max(dim=1).indices.tolist() == [2, 2]
    assert x.argmax().item() == 5
    hot = tg.one_hot(tg.tensor([0, 2], device=device), 3)
    assert hot.tolist() == [[1, 0, 0], [0, 0, 1]] and hot.dtype == np.int64  # as torch
    assert "device" in repr(x) or device == "cpu"


def test_softmax_and_logsumexp_are_stable_at_extreme_logits():
    x = tg.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ls = x.log_softmax(-1)
        s = x.softmax(-1)
        lse = x.logsumexp(-1)
        (ls.sum() + lse.sum() + s.sum()).backward()
    for t in (ls, s, lse, x.grad):
        assert np.isfinite(t.numpy()).all()
    np.testing.assert_allclose(lse.numpy(), [1e4, -1e4 + np.log(3)], rtol=1e-6)


# ---- errors ----------------------------------------------------------------------------


def test_matmul_shape_error_names_shapes():
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        tg.randn(2, 3) @ tg.randn(4, 5)


def test_broadcast_error_names_op_and_shapes():
    with pytest.raises(ShapeError, match=r"add.*\(2, 3\).*\(4,\)"):
        tg.randn(2, 3) + tg.randn(4)


def test_float_index_arrays_are_refused():
    x = tg.randn(3)
    with pytest.raises(DTypeError, match="float"):
        x[tg.tensor([0.0, 1.0])]
    with pytest.raises(DTypeError):
        x[1.0]


def test_reshape_error_names_shapes():
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(4,\)"):
        tg.randn(2, 3).reshape(4)


def test_device_mixing_names_both_devices():
    with pytest.raises(DeviceError, match="cpu.*stub:0"):
        tg.ones(2) + tg.ones(2, device="stub")


def test_unknown_and_unavailable_devices():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        tg.zeros(2, device="tpu")
    if not tg.is_available("cuda"):
        with pytest.raises(DeviceError, match="cupy|GPU"):
            tg.zeros(2, device="cuda")


def test_requires_grad_on_integers_is_refused():
    with pytest.raises(DTypeError, match="int64"):
        tg.tensor([1, 2], requires_grad=True)


def test_anomaly_mode_names_the_forward_op():
    tg.set_detect_anomaly(True)
    x = tg.tensor([-1.0, 1.0], requires_grad=True)
    with np.errstate(invalid="ignore"), pytest.raises(AnomalyError, match="forward of log"):
        x.log()


def test_anomaly_mode_names_the_backward_op():
    tg.set_detect_anomaly(True)
    x = tg.tensor([0.0, 1.0], requires_grad=True)
    y = x.sqrt().sum()  # finite forward; backward divides by sqrt(0)
    with np.errstate(divide="ignore"), pytest.raises(AnomalyError, match="backward of sqrt"):
        y.backward()


def test_without_anomaly_mode_nan_passes_silently():
    x = tg.tensor([-1.0], requires_grad=True)
    with np.errstate(invalid="ignore"):
        assert np.isnan(x.log().item())


def test_slices_of_one_tensor_accumulate_in_place_and_exactly():
    """BPTT slices x[t] out of the input projection at every step; the engine sums the slices'
    gradients into one buffer (autograd.SparseGrad). Mixed with dense uses, in both orders."""
    x = tg.randn(50, 3, dtype=np.float64, requires_grad=True)
    y = sum((x[t] * (t + 1)).sum() for t in range(50)) + x.sum() * 2 + x[[0, 0, 49]].sum()
    y.backward()
    expected = np.arange(1, 51, dtype=np.float64)[:, None] + 2 + np.zeros((50, 3))
    expected[0] += 2
    expected[49] += 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    h = x * 1.0  # a non-leaf used densely first, then sliced
    z = (h.exp().sum() + h[1:].sum() + h[:, 0].sum())
    x.grad = None
    z.backward()
    dense = np.exp(x.numpy()) + 1.0
    dense[0] -= 1.0
    dense[:, 0] += 1.0
    np.testing.assert_allclose(x.grad.numpy(), dense, rtol=1e-12)
