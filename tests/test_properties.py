"""Property-based tests: broadcasting gradients over random shapes (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinygrad_rnn as tg
from tinygrad_rnn.autograd import sum_to

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b, g: (g, g)),
    "sub": (lambda a, b: a - b, lambda a, b, g: (g, -g)),
    "mul": (lambda a, b: a * b, lambda a, b, g: (g * b, g * a)),
    "div": (lambda a, b: a / b, lambda a, b, g: (g / b, -g * a / b ** 2)),
}

shapes = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_broadcast_gradients_reduce_to_input_shapes(shapes, op, seed):
    """Against the closed-form derivative summed over the broadcast dims, computed in numpy."""
    (shape_a, shape_b), out_shape = shapes
    rng = np.random.default_rng(seed)
    a_np = rng.uniform(0.5, 2.0, shape_a)
    b_np = rng.uniform(0.5, 2.0, shape_b)
    g_np = rng.standard_normal(out_shape)
    forward, derivative = BINARY[op]
    a = tg.tensor(a_np, requires_grad=True)
    b = tg.tensor(b_np, requires_grad=True)
    out = forward(a, b)
    assert out.shape == out_shape
    out.backward(g_np)
    ga, gb = derivative(np.broadcast_to(a_np, out_shape), np.broadcast_to(b_np, out_shape), g_np)
    for x, expected, shape in ((a, ga, shape_a), (b, gb, shape_b)):
        assert x.grad.shape == shape
        lead = len(out_shape) - len(shape)
        reduced = expected.sum(axis=tuple(range(lead))) if lead else expected
        reduced = reduced.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True) \
            if reduced.ndim else reduced
        np.testing.assert_allclose(x.grad.numpy(), reduced.reshape(shape), rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(shapes=shapes, seed=st.integers(0, 2**16))
def test_broadcast_gradcheck(shapes, seed):
    (shape_a, shape_b), _ = shapes
    rng = np.random.default_rng(seed)
    a = tg.tensor(rng.standard_normal(shape_a), requires_grad=True)
    b = tg.tensor(rng.uniform(0.5, 2.0, shape_b), requires_grad=True)
    assert tg.gradcheck(lambda a, b: (a * b + a / b).maximum(b - a), [a, b], atol=1e-6, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, seed=st.integers(0, 2**16))
def test_sum_to_preserves_total(shapes, seed):
    (shape, _), out_shape = shapes
    g = np.random.default_rng(seed).standard_normal(out_shape)
    reduced = sum_to(g, tuple(shape))
    assert reduced.shape == tuple(shape)
    np.testing.assert_allclose(np.sum(reduced), np.sum(g), rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       data=st.data())
def test_reductions_gradcheck_over_random_axes(shape, seed, data):
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    keepdim = data.draw(st.booleans())
    x = tg.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    dim = tuple(axes) or None
    assert tg.gradcheck(lambda x: x.sum(dim, keepdim) + x.mean(dim, keepdim) * x.amax(dim, keepdim), [x],
                        atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bad", [((2, 3), (3, 2)), ((4,), (3,)), ((2, 1, 5), (3, 4))])
def test_non_broadcastable_shapes_raise(bad):
    a, b = (tg.ones(*s) for s in bad)
    with pytest.raises(tg.ShapeError, match=str(bad[0]).replace("(", r"\(").replace(")", r"\)")):
        a * b
