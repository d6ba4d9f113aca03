"""nn.init: gains and fans against torch's, and the statistics of each initialiser on large tensors."""
import math

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.nn import init
from oracle import needs_torch, torch


@needs_torch
@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("sigmoid", None),
    ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
    ("leaky_relu", 0), ("leaky_relu", math.sqrt(5)), ("selu", None),
    ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_calculate_gain_unknown_nonlinearity():
    with pytest.raises(ValueError, match="softsign"):
        init.calculate_gain("softsign")


@needs_torch
@pytest.mark.parametrize("shape", [(4, 3), (5, 3, 7), (6, 2, 3, 3), (2, 1, 1, 1, 4), (1, 9)])
def test_fan_in_and_fan_out_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(tg.zeros(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_two_dims_and_a_known_mode():
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.xavier_uniform_(tg.zeros(5))
    with pytest.raises(ValueError, match="fan_in"):
        init.kaiming_uniform_(tg.zeros(3, 3), mode="fan_avg")


LARGE = (400, 500)  # 200k draws: the sample std is within ~0.2% of the true one


def _assert_uniform(values, low, high):
    assert values.min() >= low and values.max() <= high
    width = high - low
    assert values.min() < low + 0.01 * width and values.max() > high - 0.01 * width  # fills the range
    assert abs(values.std() - width / math.sqrt(12)) < 0.01 * width / math.sqrt(12)


def _assert_normal(values, mean, std):
    assert abs(values.mean() - mean) < 0.01 * std + 1e-12
    assert abs(values.std() - std) < 0.01 * std


def test_uniform_and_normal_statistics():
    t = tg.zeros(*LARGE)
    _assert_uniform(init.uniform_(t, -2.0, 3.0).numpy(), -2.0, 3.0)
    _assert_normal(init.normal_(t, 0.5, 2.0).numpy(), 0.5, 2.0)
    assert t.dtype == np.float32


def test_constant_zeros_ones():
    t = tg.randn(3, 4)
    assert np.all(init.constant_(t, 0.25).numpy() == 0.25)
    assert np.all(init.zeros_(t).numpy() == 0) and np.all(init.ones_(t).numpy() == 1)
    assert t.dtype == np.float32


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_eye(shape):
    np.testing.assert_array_equal(init.eye_(tg.randn(*shape)).numpy(), np.eye(*shape))
    np.testing.assert_array_equal(init.eye_(tg.randn(*shape), gain=0.5).numpy(), 0.5 * np.eye(*shape))
    with pytest.raises(ValueError, match="2-D"):
        init.eye_(tg.zeros(2, 2, 2))


def test_xavier_statistics():
    fan_out, fan_in = LARGE
    gain = init.calculate_gain("tanh")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    _assert_uniform(init.xavier_uniform_(tg.zeros(*LARGE), gain=gain).numpy(), -bound, bound)
    _assert_normal(init.xavier_normal_(tg.zeros(*LARGE), gain=gain).numpy(), 0.0,
                   gain * math.sqrt(2.0 / (fan_in + fan_out)))


@needs_torch
@pytest.mark.parametrize("a, mode, nonlinearity", [(math.sqrt(5), "fan_in", "leaky_relu"),
                                                    (0, "fan_out", "relu"), (0.1, "fan_in", "leaky_relu")])
def test_kaiming_statistics(a, mode, nonlinearity):
    fan = dict(zip(("fan_in", "fan_out"), init._calculate_fan_in_and_fan_out(tg.zeros(*LARGE))))[mode]
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    t = init.kaiming_uniform_(tg.zeros(*LARGE), a=a, mode=mode, nonlinearity=nonlinearity)
    _assert_uniform(t.numpy(), -math.sqrt(3) * std, math.sqrt(3) * std)
    t = init.kaiming_normal_(tg.zeros(*LARGE), a=a, mode=mode, nonlinearity=nonlinearity)
    _assert_normal(t.numpy(), 0.0, std)


def test_kaiming_uniform_sqrt5_is_torch_linear_default():
    t = init.kaiming_uniform_(tg.zeros(30, 64), a=math.sqrt(5))
    assert np.abs(t.numpy()).max() <= 1 / math.sqrt(64)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (3, 2, 4)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal(shape, gain):
    flat = init.orthogonal_(tg.zeros(*shape, dtype=np.float64), gain=gain).numpy().reshape(shape[0], -1)
    rows, cols = flat.shape
    product = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(product, gain ** 2 * np.eye(min(rows, cols)), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.orthogonal_(tg.zeros(4))


def test_orthogonal_draws_differ_and_seed_repeats():
    tg.manual_seed(7)
    first = init.orthogonal_(tg.zeros(4, 4)).numpy()
    second = init.orthogonal_(tg.zeros(4, 4)).numpy()
    tg.manual_seed(7)
    again = init.orthogonal_(tg.zeros(4, 4)).numpy()
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("fill", [
    lambda t: init.uniform_(t, -1, 1), lambda t: init.normal_(t), lambda t: init.xavier_uniform_(t),
    lambda t: init.kaiming_normal_(t), lambda t: init.orthogonal_(t), lambda t: init.eye_(t),
    lambda t: init.constant_(t, 3.0),
])
def test_initialisers_keep_device_and_dtype(fill, device):
    tg.manual_seed(1)
    t = tg.zeros(6, 4, device=device)
    assert fill(t) is t
    assert t.device == device and t.dtype == np.float32
    tg.manual_seed(1)
    # the same seed gives the same numbers on every device (drawn on the host, then moved)
    np.testing.assert_array_equal(t.numpy(), fill(tg.zeros(6, 4)).numpy())
