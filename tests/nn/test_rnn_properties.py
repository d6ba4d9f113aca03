"""Properties of the sequence layers that need no oracle: a padded batch with `lengths` equals
each sequence run alone, and detach() between chunks cuts BPTT exactly at the chunk boundary."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn

LAYERS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(sorted(LAYERS)), bidirectional=st.booleans(), num_layers=st.integers(1, 2),
       lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_padded_batch_equals_each_sequence_alone(mode, bidirectional, num_layers, lengths, seed):
    tg.manual_seed(seed)
    layer = LAYERS[mode](3, 4, num_layers=num_layers, bidirectional=bidirectional).double()
    steps = max(lengths)
    x = np.random.default_rng(seed).standard_normal((steps, len(lengths), 3))
    output, state = layer(tg.tensor(x), lengths=lengths)
    h_n = state[0] if mode == "LSTM" else state
    for b, length in enumerate(lengths):
        alone_out, alone_state = layer(tg.tensor(x[:length, b:b + 1]))
        alone_h = alone_state[0] if mode == "LSTM" else alone_state
        np.testing.assert_allclose(output.numpy()[:length, b], alone_out.numpy()[:, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(output.numpy()[length:, b], 0.0)
        np.testing.assert_allclose(h_n.numpy()[:, b], alone_h.numpy()[:, 0], rtol=1e-12, atol=1e-12)


def test_truncated_bptt_gradient_stops_at_the_chunk_boundary():
    """Two chunks with the state detached between them: the weight gradient equals the sum of
    each chunk's gradient computed from its own (constant) initial state."""
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3).double()
    x = tg.randn(8, 2, 2, dtype=np.float64)
    state = None
    for chunk in (x[:4], x[4:]):
        out, state = lstm(chunk, state)
        out.sum().backward()
        state = tuple(s.detach() for s in state)
    tbptt = lstm.weight_hh_l0.grad.numpy().copy()

    lstm.zero_grad()
    _, first = lstm(x[:4])
    lstm(x[:4])[0].sum().backward()
    start = tuple(s.detach() for s in first)
    lstm(x[4:], start)[0].sum().backward()
    np.testing.assert_allclose(tbptt, lstm.weight_hh_l0.grad.numpy(), rtol=1e-12)

    lstm.zero_grad()
    lstm(x)[0].sum().backward()  # full BPTT differs: gradient flows across the boundary
    assert not np.allclose(tbptt, lstm.weight_hh_l0.grad.numpy())
