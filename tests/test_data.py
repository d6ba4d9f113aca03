"""tinygrad_rnn.data against torch.utils.data: the same batches, lengths and collation."""
import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.data import DataLoader, TensorDataset, default_collate, random_split

X = np.arange(30, dtype=np.float32).reshape(10, 3)
Y = np.arange(10)


@needs_torch
@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (3, False), (3, True), (10, False), (16, False)])
def test_ordered_batches_equal_torch(batch_size, drop_last):
    ours = DataLoader(TensorDataset(tg.tensor(X), tg.tensor(Y)), batch_size=batch_size, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(Y)),
                                         batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    batches = list(ours)
    assert len(batches) == len(theirs)
    for (xb, yb), (xt, yt) in zip(batches, theirs):
        np.testing.assert_array_equal(xb.numpy(), xt.numpy())
        np.testing.assert_array_equal(yb.numpy(), yt.numpy())


def test_shuffle_is_a_fresh_permutation_each_epoch_and_a_seed_repeats_it():
    data = TensorDataset(tg.tensor(Y))
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=7)
    first = np.concatenate([b[0].numpy() for b in loader])
    second = np.concatenate([b[0].numpy() for b in loader])
    assert sorted(first) == list(Y) and sorted(second) == list(Y)
    assert not np.array_equal(first, second)
    again = DataLoader(data, batch_size=4, shuffle=True, generator=7)
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in again]), first)
    tg.manual_seed(3)
    global_a = [b[0].tolist() for b in DataLoader(data, batch_size=4, shuffle=True)]
    tg.manual_seed(3)
    assert [b[0].tolist() for b in DataLoader(data, batch_size=4, shuffle=True)] == global_a


def test_collation_of_tuples_dicts_numbers_and_arrays():
    batch = default_collate([{"x": np.ones(2), "n": 1, "name": "a"}, {"x": np.zeros(2), "n": 2, "name": "b"}])
    assert batch["x"].shape == (2, 2) and batch["n"].tolist() == [1, 2] and batch["name"] == ["a", "b"]
    pairs = default_collate([(tg.ones(3), 0.5), (tg.zeros(3), 1.5)])
    assert pairs[0].shape == (2, 3) and pairs[1].tolist() == [0.5, 1.5]


def test_batches_keep_the_graph_to_the_dataset_tensors():
    x = tg.tensor(X, requires_grad=True)
    (xb,) = next(iter(DataLoader(TensorDataset(x), batch_size=4)))
    xb.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:4], 1.0)
    np.testing.assert_array_equal(x.grad.numpy()[4:], 0.0)


def test_random_split_lengths_and_fractions():
    data = TensorDataset(tg.tensor(Y))
    a, b = random_split(data, [7, 3], generator=0)
    assert len(a) == 7 and len(b) == 3
    seen = {int(s[0].item()) for part in (a, b) for s in (part[i] for i in range(len(part)))}
    assert seen == set(range(10))
    parts = random_split(data, [0.5, 0.3, 0.2], generator=0)
    assert [len(p) for p in parts] == [5, 3, 2]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(tg.ShapeError, match="first dim"):
        TensorDataset(tg.ones(3), tg.ones(4))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(tg.ones(3)), batch_size=0)
    with pytest.raises(tg.ShapeError, match="add up"):
        random_split(TensorDataset(tg.ones(3)), [1, 1])
