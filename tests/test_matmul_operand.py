"""backend.matmul_operand: the padded copy of a matrix that a loop multiplies by many times."""
import numpy as np
import pytest
import stub_backend

from tinygrad_rnn import backend


@pytest.mark.parametrize("shape", [(128, 512), (512, 2048), (7, 3), (64, 16), (1, 1), (33, 0)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_operand_is_a_padded_equal_copy(shape, transposed, dtype):
    source = np.random.default_rng(1).standard_normal(shape[::-1] if transposed else shape).astype(dtype)
    matrix = source.T if transposed else source
    out = backend.matmul_operand(matrix)
    np.testing.assert_array_equal(out, matrix)
    assert out.dtype == dtype and out.strides[1] == out.itemsize
    assert not np.shares_memory(out, source)
    lines, rest = divmod(out.strides[0], 64)
    assert rest == 0 and lines % 2 == 1 and out.strides[0] >= shape[1] * out.itemsize
    x = np.random.default_rng(2).standard_normal((5, shape[0])).astype(dtype)
    np.testing.assert_allclose(x @ out, x @ matrix, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_matmul_operand_on_another_backend_is_a_contiguous_copy():
    matrix = stub_backend.xp.arange(12.0).reshape(3, 4).T
    out = backend.matmul_operand(matrix)
    assert isinstance(out, stub_backend.StubArray) and out.shape == (4, 3)
    np.testing.assert_array_equal(out._a, np.arange(12.0).reshape(3, 4).T)
    assert out._a.flags.c_contiguous
