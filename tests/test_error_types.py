"""The package's errors are catchable as torch's are: where torch raises RuntimeError, so do we (as
well as the Python-convention base each error type has), and the message names what was wrong."""
import math

import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.errors import DTypeError, InvalidValueError, ShapeError, TinyGradRNNError

MULTINOMIAL_CASES = {  # name: (values, dtype, num_samples, replacement, words of our message)
    "3-d input": (np.ones((2, 2, 2)), "float32", 1, False, "1 or 2 dim"),
    "0-d input": (np.array(1.0), "float32", 1, False, "1 or 2 dim"),
    "zero samples": (np.ones(3), "float32", 0, True, "n_sample <= 0"),
    "more samples than categories": (np.ones(3), "float32", 4, False, "without replacement"),
    "no categories": (np.ones(0), "float32", 1, False, "without replacement"),
    "negative weight": (np.array([1.0, -1.0]), "float32", 1, True, "element < 0"),
    "nan weight": (np.array([1.0, math.nan]), "float64", 1, True, "`nan`"),
    "inf weight": (np.array([1.0, math.inf]), "float32", 1, False, "`inf`"),
    "all-zero row": (np.array([[1.0, 2.0], [0.0, 0.0]]), "float32", 1, True, "sum of probabilities <= 0"),
    "integer weights": (np.ones(3), "int64", 1, False, "floating point"),
}


@needs_torch
@pytest.mark.parametrize("case", MULTINOMIAL_CASES, ids=str)
def test_multinomial_bad_input_is_a_runtime_error_as_torch(case):
    values, dtype, num_samples, replacement, words = MULTINOMIAL_CASES[case]
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.tensor(values, dtype=getattr(torch, dtype)), num_samples, replacement)
    with pytest.raises(RuntimeError, match=words) as caught:
        tg.tensor(values, dtype=dtype).multinomial(num_samples, replacement=replacement)
    assert isinstance(caught.value, TinyGradRNNError)


@pytest.mark.parametrize("error, python_base", [(ShapeError, ValueError), (DTypeError, TypeError),
                                                (InvalidValueError, ValueError)])
def test_error_types_keep_their_python_base_and_are_runtime_errors(error, python_base):
    assert issubclass(error, python_base) and issubclass(error, RuntimeError)


@needs_torch
def test_a_shape_mismatch_is_caught_by_torch_style_code():
    """Ported code that catches torch's RuntimeError around a bad matmul keeps working."""
    for lib in (tg, torch):
        with pytest.raises(RuntimeError):
            lib.ones(2, 3) @ lib.ones(2, 3)
