"""The host buffer cache (tinygrad_rnn/buffers.py): a buffer is reused only once nothing refers to
it, and training through it gives the numbers training without it gives."""
import threading

import numpy as np
import pytest
import stub_backend

import tinygrad_rnn as tg
from tinygrad_rnn import buffers, nn

BIG = (256, 1024)  # 1 MiB of float32: cached


@pytest.fixture(autouse=True)
def _fresh_cache():
    previous = buffers.set_limit(256 * 2**20)
    buffers.empty_cache()
    yield
    buffers.set_limit(previous)
    buffers.empty_cache()


def _owner(array):
    """id of the buffer behind array (an id, not the buffer: holding that would keep it in use)."""
    return id(array if array.base is None else array.base)


def test_a_freed_buffer_is_reused_and_a_held_one_is_not():
    a = buffers.empty(BIG, np.float32, np.empty(1))
    owner = _owner(a)
    b = buffers.empty(BIG, np.float32, np.empty(1))
    assert _owner(b) != owner
    del a
    c = buffers.empty(BIG, np.float32, np.empty(1))
    assert _owner(c) == owner
    assert (c.shape, c.dtype) == (BIG, np.float32) and c.flags.c_contiguous


@pytest.mark.parametrize("keep", [
    lambda a: a[3:10],               # a view
    lambda a: a[3:10][::2].T,         # a view of a view
    lambda a: memoryview(a),          # the buffer protocol
    lambda a: a.reshape(-1).view(np.int32),
])
def test_nothing_that_still_sees_a_buffer_lets_it_be_reused(keep):
    a = buffers.empty(BIG, np.float32, np.empty(1))
    a[...] = 7.0
    kept = keep(a)
    owner = _owner(a)
    del a
    for _ in range(3):
        other = buffers.empty(BIG, np.float32, np.empty(1))
        assert _owner(other) != owner
        other[...] = -1.0
    assert np.all(np.asarray(kept).view(np.float32) == 7.0) if isinstance(kept, memoryview) \
        else np.all(kept.view(np.float32) == 7.0)


def test_small_arrays_and_other_backends_are_not_cached():
    small = buffers.empty((8, 8), np.float32, np.empty(1))
    assert small.base is None
    stub = buffers.empty(BIG, np.float32, stub_backend.xp.zeros(1))
    assert isinstance(stub, stub_backend.StubArray) and stub.shape == BIG
    assert buffers.cached_bytes() == (0, 0)


def test_limit_empty_cache_and_cached_bytes():
    a = buffers.empty(BIG, np.float32, np.empty(1))
    total, free = buffers.cached_bytes()
    assert total >= a.nbytes and free == 0
    del a
    total, free = buffers.cached_bytes()
    assert free == total >= BIG[0] * BIG[1] * 4
    buffers.empty_cache()
    assert buffers.cached_bytes() == (0, 0)
    assert buffers.set_limit(0) == 256 * 2**20
    d = buffers.empty(BIG, np.float32, np.empty(1))
    assert d.base is None and buffers.cached_bytes() == (0, 0)  # limit 0: nothing cached at all


def test_a_buffer_held_when_the_cache_is_emptied_stays_valid():
    a = buffers.empty(BIG, np.float32, np.empty(1))
    a[...] = 3.0
    buffers.empty_cache()
    assert buffers.cached_bytes()[0] >= a.nbytes  # in use: not let go
    assert np.all(a == 3.0)


def test_free_buffers_beyond_the_limit_are_let_go():
    buffers.set_limit(3 * 2**20)
    arrays = [buffers.empty(BIG, np.float32, np.empty(1)) for _ in range(6)]
    del arrays
    buffers.empty(BIG, np.float64, np.empty(1))  # 2 MiB: the free ones are trimmed to make room
    assert buffers.cached_bytes()[1] <= 3 * 2**20


@pytest.mark.parametrize("nbytes", [256 * 1024, 256 * 1024 + 1, 300_001, 5 * 2**20 + 17, 2**30 - 3])
def test_size_classes_waste_under_an_eighth(nbytes):
    size = buffers._size_class(nbytes)
    assert nbytes <= size < nbytes * 1.125 + 4096 and size % 4096 == 0


def test_nearby_sizes_share_a_buffer():
    a = buffers.empty((1000, 300), np.float32, np.empty(1))
    owner = _owner(a)
    del a
    b = buffers.empty((1010, 300), np.float32, np.empty(1))
    assert _owner(b) == owner


def test_threads_never_share_a_live_buffer():
    seen, errors = [], []

    def work(k):
        try:
            for i in range(50):
                a = buffers.empty(BIG, np.float32, np.empty(1))
                a[...] = k * 1000 + i
                seen.append(_owner(a))
                if not np.all(a == k * 1000 + i):
                    errors.append((k, i))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _lm(mode, hidden=64):
    layer = getattr(nn, mode)(16, hidden, num_layers=2, bidirectional=True)
    head = nn.Linear(2 * hidden, 7)
    return nn.ModuleList([layer, head])


def _train(mode, limit, steps=3):
    buffers.set_limit(limit)
    buffers.empty_cache()
    tg.manual_seed(0)
    model = _lm(mode)
    opt = tg.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    outputs, losses = [], []
    for _ in range(steps):
        x = tg.tensor(rng.standard_normal((40, 32, 16)).astype(np.float32))
        target = tg.tensor(rng.integers(0, 7, (40 * 32,)))
        out, _ = model[0](x)
        outputs.append(out)  # kept by the user across steps: must not be overwritten
        loss = nn.functional.cross_entropy(model[1](out).reshape(-1, 7), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return [o.numpy().copy() for o in outputs], [o.numpy() for o in outputs], losses, model


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_training_through_the_cache_is_bit_identical_to_training_without(mode):
    plain_copies, _, plain_losses, plain = _train(mode, 0)
    copies, kept, losses, cached = _train(mode, 256 * 2**20)
    assert buffers.cached_bytes()[0] > 0  # the cache was used
    assert losses == plain_losses
    for copy, live, reference in zip(copies, kept, plain_copies):
        np.testing.assert_array_equal(live, copy)  # later steps did not write into a kept output
        np.testing.assert_array_equal(live, reference)
    for (name, p), q in zip(cached.named_parameters(), plain.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)

