"""Module semantics a PyTorch user relies on: registration, state_dict order, dtypes, devices."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.errors import DeviceError, DTypeError
from oracle import needs_torch, torch


def test_assigning_a_plain_tensor_over_a_parameter_is_refused():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        layer.weight = tg.randn(2, 2)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = None  # allowed, as in torch
    assert list(layer.state_dict()) == ["weight"]


@needs_torch
def test_reassignment_keeps_torch_key_order():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.dec = nn.Linear(3, 5)
            self.dec.weight = self.emb.weight  # weight tying

    ours = Tied()
    ours.dec.weight = nn.Parameter(ours.dec.weight.detach())
    ours.dec.weight = ours.emb.weight
    reference = torch.nn.Module()
    reference.emb, reference.dec = torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5)
    reference.dec.weight = reference.emb.weight
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert len(list(ours.parameters())) == len(list(reference.parameters())) == 2


@needs_torch
def test_shared_submodule_is_listed_under_each_name_like_torch():
    shared = nn.Linear(2, 2)
    ours = nn.Sequential(shared, nn.ReLU(), shared)
    t_shared = torch.nn.Linear(2, 2)
    reference = torch.nn.Sequential(t_shared, torch.nn.ReLU(), t_shared)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())  # torch tensors, straight from torch
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    # float32 through two BLAS libraries: an output near zero differs by an ulp of the terms, not of itself
    np.testing.assert_allclose(ours(tg.tensor(x)).numpy(), reference(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-7)


@needs_torch
def test_load_state_dict_takes_named_parameters_that_require_grad():
    reference = torch.nn.Linear(3, 2)
    ours = nn.Linear(3, 2)
    ours.load_state_dict(dict(reference.named_parameters()))
    np.testing.assert_array_equal(ours.weight.numpy(), reference.weight.detach().numpy())


def test_non_persistent_buffer_is_not_saved():
    m = nn.Module()
    m.register_buffer("kept", tg.zeros(2))
    m.register_buffer("scratch", tg.ones(2), persistent=False)
    assert list(m.state_dict()) == ["kept"]
    assert len(list(m.buffers())) == 2
    m.scratch = tg.zeros(3)  # reassigning a buffer keeps it a buffer
    assert m.scratch.shape == (3,) and len(list(m.buffers())) == 2


def test_zero_grad_without_set_to_none_clears_nan():
    layer = nn.Linear(2, 1)
    layer.weight.grad = tg.tensor([[np.inf, np.nan]])
    layer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(layer.weight.grad.numpy(), [[0.0, 0.0]])


@pytest.mark.parametrize("build, run", [
    (lambda: nn.Linear(3, 2).double(), lambda m: m(tg.randn(4, 3))),
    (lambda: nn.Linear(3, 2), lambda m: m(tg.randn(4, 3, dtype=np.float64))),
    (lambda: nn.GRU(3, 4), lambda m: m(tg.randn(5, 2, 3), tg.zeros(1, 2, 4, dtype=np.float64))),
    (lambda: nn.LSTM(3, 4), lambda m: m(tg.randn(5, 2, 3), (tg.zeros(1, 2, 4, dtype=np.float64),
                                                             tg.zeros(1, 2, 4)))),
    (lambda: nn.BatchNorm1d(3), lambda m: m(tg.randn(4, 3, dtype=np.float64))),
])
def test_mixed_float_dtypes_are_refused_like_torch(build, run):
    with pytest.raises(DTypeError, match="float64|float32"):
        run(build())


@pytest.mark.parametrize("loss", [
    lambda x, t: nn.functional.cross_entropy(x, t),
    lambda x, t: nn.functional.nll_loss(x.log_softmax(-1), t),
    lambda x, t: nn.functional.binary_cross_entropy(x.sigmoid(), t.to(dtype=np.float32).reshape(4, 1).expand(4, 3)),
])
def test_losses_name_devices_when_target_is_elsewhere(loss):
    logits = tg.randn(4, 3, device="stub")
    target = tg.tensor([0, 1, 2, 0])  # cpu
    with pytest.raises(DeviceError, match="cpu.*stub:0|stub:0.*cpu"):
        loss(logits, target)


def test_where_names_devices():
    s = tg.randn(2, device="stub")
    with pytest.raises(DeviceError, match="cpu.*stub:0"):
        tg.where(tg.tensor([True, False]), s, s)


@needs_torch
def test_indexing_with_a_torch_tensor():
    x = tg.arange(5.0)
    assert x[torch.tensor([4, 0])].tolist() == [4.0, 0.0]


@needs_torch
def test_optimizer_loads_a_torch_adam_state_dict():
    reference = torch.nn.Linear(3, 2)
    t_opt = torch.optim.Adam(reference.parameters(), lr=0.01, foreach=False)
    ours = nn.Linear(3, 2)
    ours.load_state_dict(reference.state_dict())
    opt = tg.optim.Adam(ours.parameters(), lr=0.01)
    x = np.random.default_rng(0).standard_normal((5, 3))
    for step in range(4):
        if step == 2:  # hand torch's optimizer state over half way
            opt.load_state_dict(t_opt.state_dict())
            ours.load_state_dict(reference.state_dict())
        t_opt.zero_grad()
        reference(torch.tensor(x, dtype=torch.float32)).pow(2).sum().backward()
        t_opt.step()
        opt.zero_grad()
        ours_x = x if step >= 2 else 3 * x  # diverge first: only the handover can re-align them
        (ours(tg.tensor(ours_x, dtype=np.float32)) ** 2).sum().backward()
        opt.step()
    np.testing.assert_allclose(ours.weight.numpy(), reference.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_state_dict_prefix_and_keep_vars():
    layer = nn.Linear(2, 1)
    assert list(layer.state_dict(prefix="head.")) == ["head.weight", "head.bias"]
    kept = layer.state_dict(keep_vars=True)
    assert kept["weight"] is layer.weight
    copied = layer.state_dict()
    copied["weight"][...] = 7.0  # a copy: editing it leaves the module alone
    assert not np.any(layer.weight.numpy() == 7.0)
