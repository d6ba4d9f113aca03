"""The hand-written numpy floors in benchmarks/ must compute what tinygrad_rnn computes, or their
ratios mean nothing: same weights, same data, same loss, gradients, buffers and Adam update."""
import pathlib
import sys

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import mlp  # noqa: E402
import numpy_mlp  # noqa: E402


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_numpy_mlp_matches_tinygrad_step(dtype, rtol):
    tg.manual_seed(3)
    model = mlp.build(nn).to(dtype="float64" if dtype == np.float64 else "float32")
    x, targets = mlp.make_data(np.random.default_rng(3), dtype, batch=32)
    params, buffers = mlp.state_arrays(model)
    assert {k for k, _ in model.named_parameters()} == set(params)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = numpy_mlp.Adam(params, lr=1e-2)
    for _ in range(2):  # the second step runs on updated weights, moments and buffers
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(tg.tensor(x)), tg.tensor(targets))
        loss.backward()
        ref_loss, grads = numpy_mlp.loss_and_grads(params, buffers, x, targets)
        np.testing.assert_allclose(ref_loss, loss.item(), rtol=rtol)
        for name, p in model.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=rtol, atol=rtol * 1e-2, err_msg=name)
        for name, buf in buffers.items():
            np.testing.assert_allclose(buf, np.asarray(model.state_dict()[name]), rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=name)
        opt.step()
        # fed our gradients: a Linear bias before a BatchNorm gets a gradient of rounding noise only,
        # which Adam's normalisation turns into a full lr-sized step of either sign
        ref_opt.step({name: p.grad.numpy().copy() for name, p in model.named_parameters()})
        for name, p in model.named_parameters():
            np.testing.assert_allclose(params[name], p.detach().numpy(), rtol=rtol, atol=rtol * 1e-2, err_msg=name)
