"""get_rng_state / set_rng_state: a checkpointed generator draws the same numbers after a restore."""
import numpy as np
import pytest

import tinygrad_rnn as tg


def test_restored_state_repeats_the_draws(tmp_path):
    tg.manual_seed(3)
    tg.randn(4)
    state = tg.get_rng_state()
    first = [tg.randn(3).numpy(), tg.multinomial(tg.ones(5), 2).numpy(), tg.rand(2).numpy()]
    tg.save({"rng": state}, tmp_path / "rng.npz")
    tg.manual_seed(99)
    tg.set_rng_state(tg.load(tmp_path / "rng.npz")["rng"])
    again = [tg.randn(3).numpy(), tg.multinomial(tg.ones(5), 2).numpy(), tg.rand(2).numpy()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_the_returned_state_is_a_copy():
    tg.manual_seed(0)
    state = tg.get_rng_state()
    tg.randn(10)
    assert tg.get_rng_state() != state
    tg.set_rng_state(state)
    assert tg.get_rng_state() == state


def test_bad_state_is_refused():
    with pytest.raises(TypeError, match="get_rng_state"):
        tg.set_rng_state([1, 2, 3])
