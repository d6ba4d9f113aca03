"""Composite expressions against PyTorch (the test-only oracle): values and gradients to 1e-10 in float64."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from oracle import needs_torch, torch

pytestmark = needs_torch  # every test here compares with torch


def _pair(rng, shape, positive=False):
    data = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)


EXPRESSIONS = {
    "lstm-gates": (
        [(4, 3), (3, 8), (2,)],
        lambda x, w, c: _gates(x @ w, c, tg.cat, lambda t: t.sigmoid(), lambda t: t.tanh(), 1),
        lambda x, w, c: _gates(x @ w, c, torch.cat, torch.sigmoid, torch.tanh, 1),
    ),
    "cross-entropy-by-hand": (
        [(5, 7)],
        lambda z: -z.log_softmax(-1)[list(range(5)), [1, 0, 6, 6, 2]].mean(),
        lambda z: -z.log_softmax(-1)[list(range(5)), [1, 0, 6, 6, 2]].mean(),
    ),
    "variance-std-softmax": (
        [(3, 4, 5)],
        lambda x: (x.var(1, keepdim=True) * x.softmax(2)).std() + x.var(correction=0),
        lambda x: (x.var(1, keepdim=True) * x.softmax(2)).std() + x.var(correction=0),
    ),
    "broadcast-matmul-chain": (
        [(2, 1, 3, 4), (5, 4, 2), (2,)],
        lambda a, b, c: ((a @ b).relu() * c - (a @ b).abs().sqrt()).logsumexp(-1).sum(),
        lambda a, b, c: ((a @ b).relu() * c - (a @ b).abs().sqrt()).logsumexp(-1).sum(),
    ),
    "indexing-gather-stack": (
        [(4, 5)],
        lambda x: tg.stack([x[1:3].exp(), x[[0, 0, 3]][:2] ** 2], 1).sum(0) +
        x.gather(1, [[0, 4], [1, 1], [2, 0], [4, 4]]).sum(),
        lambda x: torch.stack([x[1:3].exp(), x[[0, 0, 3]][:2] ** 2], 1).sum(0) +
        x.gather(1, torch.tensor([[0, 4], [1, 1], [2, 0], [4, 4]])).sum(),
    ),
    "clamp-max-min-where": (
        [(3, 4), (4,)],
        lambda a, b: tg.where(a > b, a.clamp(-0.5, 0.5), a.maximum(b) * a.minimum(b)) / (1 + a * a),
        lambda a, b: torch.where(a > b, a.clamp(-0.5, 0.5), torch.maximum(a, b) * torch.minimum(a, b)) / (1 + a * a),
    ),
    "split-chunk-permute": (
        [(2, 6, 3)],
        lambda x: x.chunk(3, 1)[1].permute(2, 0, 1) * x.split([1, 5], 1)[0].transpose(0, 2).reshape(3, 2, 1),
        lambda x: x.chunk(3, 1)[1].permute(2, 0, 1) * x.split([1, 5], 1)[0].transpose(0, 2).reshape(3, 2, 1),
    ),
}


def _gates(z, c, cat, sigmoid, tanh, dim):
    i, f, g, o = z[:, 0:2], z[:, 2:4], z[:, 4:6], z[:, 6:8]
    c_next = sigmoid(f) * c + sigmoid(i) * tanh(g)
    return cat([sigmoid(o) * tanh(c_next), c_next], dim)


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_composite_matches_torch(name):
    shapes, ours, theirs = EXPRESSIONS[name]
    rng = np.random.default_rng(0)
    pairs = [_pair(rng, s) for s in shapes]
    out, ref = ours(*[p[0] for p in pairs]), theirs(*[p[1] for p in pairs])
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    seed = rng.standard_normal(ref.shape)
    out.backward(seed)
    ref.backward(torch.tensor(seed))
    for ours_t, torch_t in pairs:
        np.testing.assert_allclose(ours_t.grad.numpy(), torch_t.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_max_ties_share_gradient_like_torch_amax():
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x, xt = tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    x.amax(1).sum().backward()
    xt.amax(1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy())
    y, yt = tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    y.maximum(tg.tensor(2.0, dtype=np.float64)).sum().backward()
    torch.maximum(yt, torch.tensor(2.0, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), yt.grad.numpy())
