"""nn layers against torch.nn on identical weights: outputs, input and parameter gradients,
running buffers, state_dict keys, repr strings, init statistics and errors."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.errors import DTypeError, ShapeError
from oracle import needs_torch, torch

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = [np.float64, np.float32]


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def assert_close(ours, theirs, dtype):
    ours = ours if isinstance(ours, np.ndarray) else ours.numpy()
    theirs = theirs if isinstance(theirs, np.ndarray) else theirs.detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=TOL[dtype], atol=TOL[dtype])


def paired(ours, theirs, dtype, device="cpu"):
    """Both modules in dtype, ours holding torch's weights and buffers and moved to device."""
    theirs = theirs.to(_torch_dtype(dtype))
    ours.to(dtype).load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours.to(device), theirs


def assert_state_equal(ours, theirs, dtype):
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in theirs_state.items():
        assert ours_state[key].dtype == value.numpy().dtype, key
        assert_close(ours_state[key], value, dtype)


def step_both(ours, theirs, x, dtype, device="cpu"):
    """One forward/backward of both modules on x with the same random upstream gradient;
    checks the output, the input gradient and every parameter gradient."""
    x = x.astype(dtype)
    ours_x = tg.tensor(x, device=device, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    ours_out, theirs_out = ours(ours_x), theirs(theirs_x)
    upstream = np.random.standard_normal(tuple(theirs_out.shape)).astype(dtype)
    ours_out.backward(upstream)
    theirs_out.backward(torch.tensor(upstream))
    assert_close(ours_out, theirs_out, dtype)
    assert_close(ours_x.grad, theirs_x.grad, dtype)
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name, param in theirs_params.items():
        assert_close(ours_params[name].grad, param.grad, dtype)
    ours.zero_grad()
    theirs.zero_grad()


# ---- Linear ------------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
def test_linear_matches_torch(dtype, bias, shape, device):
    ours, theirs = paired(nn.Linear(3, 4, bias=bias), torch.nn.Linear(3, 4, bias=bias), dtype, device)
    step_both(ours, theirs, np.random.standard_normal(shape), dtype, device)
    assert ours.weight.device == device


def test_linear_parameters_and_default_init():
    layer = nn.Linear(400, 300)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.shape == (300, 400) and layer.bias.shape == (300,)
    assert layer.weight.dtype == np.float32 and layer.weight.requires_grad
    bound = 1 / math.sqrt(400)
    for param in (layer.weight, layer.bias):
        values = param.numpy()
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.95 * bound  # fills the range, not a narrower one
    # uniform(-b, b) has std b / sqrt(3)
    assert abs(layer.weight.numpy().std() - bound / math.sqrt(3)) < 0.01 * bound
    assert nn.Linear(3, 4, bias=False).bias is None
    assert list(nn.Linear(3, 4, bias=False).state_dict()) == ["weight"]


def test_linear_device_and_dtype_arguments(device):
    layer = nn.Linear(3, 2, device=device, dtype=np.float64)
    assert layer.weight.device == device and layer.weight.dtype == np.float64
    assert layer(tg.ones(4, 3, dtype=np.float64, device=device)).shape == (4, 2)


def test_linear_wrong_feature_size_names_expected_and_got():
    with pytest.raises(ShapeError, match=r"Linear: expected input with 3 features.*got 5.*\(2, 5\)"):
        nn.Linear(3, 4)(tg.randn(2, 5))


# ---- BatchNorm1d ------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_steps_then_eval_match_torch(dtype, shape, momentum, device):
    ours, theirs = paired(nn.BatchNorm1d(3, momentum=momentum), torch.nn.BatchNorm1d(3, momentum=momentum),
                          dtype, device)
    with torch.no_grad():  # non-trivial affine parameters
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for step in range(3):
        x = np.random.standard_normal(shape) * (step + 1) + step
        step_both(ours, theirs, x, dtype, device)
        assert_state_equal(ours, theirs, dtype)
    assert int(ours.num_batches_tracked.item()) == 3
    ours.eval()
    theirs.eval()
    step_both(ours, theirs, np.random.standard_normal(shape), dtype, device)
    assert_state_equal(ours, theirs, dtype)  # eval leaves the buffers alone
    assert int(ours.num_batches_tracked.item()) == 3


@needs_torch
@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(track_running_stats=False), dict(bias=False),
                                    dict(affine=False, track_running_stats=False, eps=1e-3)])
def test_batchnorm_options_match_torch(kwargs):
    ours, theirs = paired(nn.BatchNorm1d(4, **kwargs), torch.nn.BatchNorm1d(4, **kwargs), np.float64)
    assert_state_equal(ours, theirs, np.float64)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        step_both(ours, theirs, np.random.standard_normal((5, 4, 2)), np.float64)
        assert_state_equal(ours, theirs, np.float64)
    assert repr(ours) == repr(theirs)


def test_batchnorm_buffers_are_registered_like_torch():
    layer = nn.BatchNorm1d(3)
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert layer.num_batches_tracked.dtype == np.int64 and layer.num_batches_tracked.shape == ()
    assert not any(b.requires_grad for b in layer.buffers())
    layer.double()
    assert layer.running_mean.dtype == np.float64 and layer.num_batches_tracked.dtype == np.int64


def test_batchnorm_errors():
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ShapeError, match="expected 2D or 3D input"):
        layer(tg.randn(2, 3, 4, 5))
    with pytest.raises(ShapeError, match=r"expected input with 3 features \(num_features\), got 4"):
        layer(tg.randn(5, 4))
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        layer(tg.randn(1, 3))
    layer.eval()
    assert layer(tg.randn(1, 3)).shape == (1, 3)  # fine in eval: running statistics


# ---- Dropout ----------------------------------------------------------------------------

def test_dropout_statistics_scaling_and_eval(device):
    p = 0.3
    layer = nn.Dropout(p)
    x = tg.ones(200, 500, device=device, requires_grad=True)
    out = layer(x)
    values = out.numpy()
    zeroed = values == 0
    assert abs(zeroed.mean() - p) < 0.005  # 100k draws: std of the fraction is 0.0015
    np.testing.assert_allclose(values[~zeroed], 1 / (1 - p), rtol=1e-6)
    assert out.dtype == np.float32
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), values, rtol=1e-6)  # gradient is the same mask
    layer.eval()
    assert layer(x) is x
    assert (nn.Dropout(0.0)(x) is x) and np.all(nn.Dropout(1.0)(x).numpy() == 0)


def test_dropout_bad_probability():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ---- Embedding ---------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_torch_with_repeats_and_padding(dtype, padding_idx, device):
    ours, theirs = paired(nn.Embedding(10, 4, padding_idx=padding_idx),
                          torch.nn.Embedding(10, 4, padding_idx=padding_idx), dtype, device)
    assert ours.padding_idx == theirs.padding_idx
    index = np.array([[1, 0, 3, 3], [9, 3, 0, 1], [1, 1, 1, 9]])
    ours_out = ours(tg.tensor(index, device=device))
    theirs_out = theirs(torch.tensor(index))
    upstream = np.random.standard_normal(tuple(theirs_out.shape)).astype(dtype)
    ours_out.backward(upstream)
    theirs_out.backward(torch.tensor(upstream))
    assert_close(ours_out, theirs_out, dtype)
    assert_close(ours.weight.grad, theirs.weight.grad, dtype)
    if padding_idx is not None:
        assert np.all(ours.weight.grad.numpy()[padding_idx] == 0)


def test_embedding_init_and_padding_row():
    layer = nn.Embedding(1000, 100, padding_idx=2)
    weight = layer.weight.numpy()
    assert np.all(weight[2] == 0)
    assert abs(weight.mean()) < 0.01 and abs(weight.std() - 1) < 0.01
    assert layer(tg.tensor(2)).shape == (100,)
    assert layer(tg.tensor([[2, 5]], dtype=np.int32)).shape == (1, 2, 100)


def test_embedding_errors():
    layer = nn.Embedding(10, 3)
    with pytest.raises(DTypeError, match="integer"):
        layer(tg.tensor([1.0, 2.0]))
    with pytest.raises(IndexError, match=r"index 10 is out of range.*10 rows.*0\.\.9"):
        layer(tg.tensor([1, 10]))
    with pytest.raises(IndexError, match="index -1 is out of range"):
        layer(tg.tensor([-1, 2]))
    with pytest.raises(ShapeError, match="padding_idx"):
        nn.Embedding(10, 3, padding_idx=10)


# ---- Sequential and activations --------------------------------------------------------------

def _mlp(lib):
    return lib.Sequential(lib.Linear(3, 5), lib.Tanh(), lib.Linear(5, 4), lib.ReLU(), lib.Linear(4, 2),
                          lib.Sigmoid(), lib.Identity())


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_matches_torch(dtype, device):
    ours, theirs = paired(_mlp(nn), _mlp(torch.nn), dtype, device)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    step_both(ours, theirs, np.random.standard_normal((6, 3)), dtype, device)


@needs_torch
def test_sequential_container_protocol():
    ours, theirs = _mlp(nn), _mlp(torch.nn)
    assert len(ours) == len(theirs) == 7
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert isinstance(ours[0], nn.Linear) and isinstance(ours[-1], nn.Identity)
    assert list(ours[2:5].state_dict()) == list(theirs[2:5].state_dict()) == ["2.weight", "2.bias",
                                                                            "4.weight", "4.bias"]
    with pytest.raises(IndexError):
        ours[7]
    for model in (ours, theirs):
        del model[1]
        model.append(type(model[0])(2, 2))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    named = nn.Sequential(OrderedDict([("encoder", nn.Linear(2, 3)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["encoder.weight", "encoder.bias"] and named[1] is named.act


@needs_torch
def test_sequential_load_state_dict_strict_errors():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    good = {k: v.numpy() for k, v in torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict().items()}
    missing = {k: v for k, v in good.items() if k != "2.bias"}
    with pytest.raises(ShapeError, match=r"missing keys: \['2\.bias'\]"):
        model.load_state_dict(missing)
    with pytest.raises(ShapeError, match=r"unexpected keys: \['3\.weight'\]"):
        model.load_state_dict({**good, "3.weight": np.zeros(2)})
    with pytest.raises(ShapeError, match=r"0\.weight: checkpoint \(4, 2\) vs model \(4, 3\)"):
        model.load_state_dict({**good, "0.weight": np.zeros((4, 2))})
    before = model.state_dict()["0.weight"]
    with pytest.raises(ShapeError):
        model.load_state_dict({**good, "0.bias": np.zeros(5)})
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before)  # nothing half-loaded
    result = model.load_state_dict(missing, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == []
    np.testing.assert_array_equal(model.state_dict()["0.weight"], good["0.weight"])


@needs_torch
@pytest.mark.parametrize("make", [
    lambda lib: lib.Linear(3, 4),
    lambda lib: lib.Linear(3, 4, bias=False),
    lambda lib: lib.BatchNorm1d(3),
    lambda lib: lib.BatchNorm1d(7, eps=1e-3, momentum=None, affine=False, track_running_stats=False),
    lambda lib: lib.Dropout(0.25),
    lambda lib: lib.Embedding(10, 3, padding_idx=0),
    lambda lib: lib.Embedding(10, 3),
    lambda lib: lib.ReLU(),
    lambda lib: lib.ReLU(inplace=True),
    _mlp,
    lambda lib: lib.Sequential(lib.Linear(2, 3), lib.Sequential(lib.BatchNorm1d(3), lib.Dropout())),
])
def test_repr_matches_torch(make):
    assert repr(make(nn)) == repr(make(torch.nn))


@needs_torch
@pytest.mark.parametrize("name", ["ReLU", "Tanh", "Sigmoid", "Identity"])
def test_activation_modules_match_torch(name, device):
    ours, theirs = getattr(nn, name)(), getattr(torch.nn, name)()
    step_both(ours, theirs, np.random.standard_normal((4, 5)) * 3, np.float64, device)
