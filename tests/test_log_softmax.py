"""log_softmax, one op (ops.LogSoftmax) that runs in cache-sized blocks of rows on the host: equal to
torch on arrays large enough to be split into blocks, with infinities and nan in some rows, over the
last axis and others, contiguous or not, forward and backward."""
import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn import ops


def _logits(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape) * 4
    rows = x.reshape(-1, shape[-1])
    rows[1, 3] = -np.inf           # one class impossible
    rows[2, :] = -np.inf           # every class impossible: nan, as torch
    rows[3, 5] = np.inf            # nan at the inf, -inf elsewhere
    rows[4, 7] = np.nan
    rows[5, :] = 1e30              # the shift keeps it finite
    return x


@needs_torch
@pytest.mark.parametrize("shape, dim", [((300, 1000), -1), ((4, 50, 2000), -1), ((4, 50, 2000), 1),
                                         ((40, 5000), 0), ((7, 9), -1)])
@pytest.mark.parametrize("transposed", [False, True])
def test_equals_torch_forward_and_backward(shape, dim, transposed):
    x = _logits(shape)
    if transposed:
        x = np.swapaxes(x, 0, -1)
    g = np.random.default_rng(1).standard_normal(x.shape)
    ours = tg.tensor(x, requires_grad=True)
    out = ours.log_softmax(dim)
    out.backward(tg.tensor(g))  # (not (out * g).sum(): -inf * g sums to nan with a warning)
    theirs = torch.tensor(x, requires_grad=True)
    expected = torch.log_softmax(theirs, dim)
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_blocks_cover_every_row_once():
    a = np.zeros((1000, 300), np.float32)
    blocks = list(ops._row_blocks(a, (1,), a))
    assert len(blocks) > 1 and all(axis == 1 for axis, _ in blocks)
    assert sum(b.shape[0] for _, b in blocks) == 1000
    assert list(ops._row_blocks(a, (0,), a)) == [((0,), a)]  # another axis: whole


def test_blocked_equals_the_formula_in_float32():
    x = np.random.default_rng(2).standard_normal((500, 700)).astype(np.float32)
    t = tg.tensor(x, requires_grad=True)
    out = t.log_softmax(-1)
    out[:, 3].sum().backward()
    shifted = x - x.max(-1, keepdims=True)
    formula = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), formula, rtol=1e-5, atol=1e-6)
    onehot = np.zeros_like(x)
    onehot[:, 3] = 1
    np.testing.assert_allclose(t.grad.numpy(), onehot - np.exp(formula), rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32 and t.grad.dtype == np.float32
