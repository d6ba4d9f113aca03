"""Datasets and a loader, as in torch.utils.data: what every training script otherwise writes by hand.

    from tinygrad_rnn.data import DataLoader, TensorDataset
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=0)
    for xb, yb in loader: ...

Shuffling draws from the global generator (`tinygrad_rnn.manual_seed`) unless given its own
`generator` (a seed or a numpy Generator), so a seed fixes the order of every epoch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Number

import numpy as np

from . import backend
from .errors import ShapeError
from .tensor import Tensor, stack


class Dataset:
    """A dataset: anything with `__getitem__(index)` and `__len__()`; subclass it or duck-type it."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} has no __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} has no __len__")


class TensorDataset(Dataset):
    """A dataset of rows: `dataset[i]` is `tuple(t[i] for t in tensors)`.

    Args:
        *tensors: Tensors (or arrays) that share their first dim, the sample dim.

    Examples:
        >>> data = TensorDataset(tg.randn(10, 3), tg.arange(10))
        >>> len(data), data[2][0].shape
        (10, (3,))
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ShapeError("TensorDataset needs at least one tensor")
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ShapeError(f"TensorDataset: tensors differ in their first dim: "
                             f"{[tuple(t.shape) for t in tensors]}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order (what `random_split` returns).

    Args:
        dataset: the dataset to index.
        indices: a sequence of indices into it.
    """

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """Split a dataset into non-overlapping random subsets.

    Args:
        dataset: the dataset to split.
        lengths: the subsets' lengths, summing to `len(dataset)`; or fractions summing to 1
            (the remainder goes one each to the first subsets, as in torch).
        generator: a seed or a numpy Generator; None draws from the global generator.

    Returns:
        A list of `Subset`s.

    Examples:
        >>> train, test = random_split(TensorDataset(tg.arange(10)), [0.8, 0.2], generator=0)
        >>> len(train), len(test)
        (8, 2)
    """
    total = len(dataset)
    if all(isinstance(n, float) for n in lengths) and math.isclose(sum(lengths), 1.0):
        counts = [int(math.floor(total * f)) for f in lengths]
        for i in range(total - sum(counts)):  # the remainder, one each, round-robin (as torch)
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != total:
        raise ShapeError(f"random_split: lengths {list(lengths)} do not add up to the dataset's {total}")
    order = _rng(generator).permutation(total).tolist()
    subsets, start = [], 0
    for n in lengths:
        subsets.append(Subset(dataset, order[start:start + n]))
        start += n
    return subsets


def default_collate(samples):
    """Collate a list of samples into one batch, as torch's default_collate.

    Tensors and arrays are stacked on a new first dim, numbers become a tensor, tuples, lists
    and dicts are collated field by field; anything else comes back as the list.

    Args:
        samples: a list of samples of one structure.

    Returns:
        The batch, of the samples' structure.
    """
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(samples)
    if isinstance(first, np.ndarray):
        return Tensor(np.stack(samples))
    if isinstance(first, (Number, np.generic)) and not isinstance(first, bool):
        return Tensor(np.array(samples))
    if isinstance(first, Mapping):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, Sequence) and not isinstance(first, str):
        if any(len(s) != len(first) for s in samples):
            raise ShapeError("default_collate: samples have different numbers of fields")
        return type(first)(default_collate(list(field)) for field in zip(*samples)) \
            if isinstance(first, tuple) else [default_collate(list(field)) for field in zip(*samples)]
    return samples  # strings and anything else: the list as it is


class DataLoader:
    """Iterates over a dataset in batches, as torch.utils.data.DataLoader (single process).

    Args:
        dataset: a `Dataset` (anything with `__getitem__` and `__len__`).
        batch_size: samples per batch. Default 1.
        shuffle: a new random order every epoch (every `iter()`). Default False.
        drop_last: leave out a last batch smaller than batch_size. Default False.
        collate_fn: list of samples -> batch. Default `default_collate`.
        generator: a seed or a numpy Generator for the shuffling; None draws from the global
            generator (`tg.manual_seed`), so a seed fixes every epoch's order either way.

    Examples:
        >>> loader = DataLoader(TensorDataset(tg.randn(10, 3), tg.arange(10)), batch_size=4,
        ...                     shuffle=True, generator=0)
        >>> [(xb.shape, yb.shape) for xb, yb in loader]
        [((4, 3), (4,)), ((4, 3), (4,)), ((2, 3), (2,))]
        >>> len(DataLoader(range(10), batch_size=4, drop_last=True))
        2
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None, generator=None):
        if batch_size is None or int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn or default_collate
        self.generator = generator if generator is None else _rng(generator)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = _rng(self.generator).permutation(n) if self.shuffle else range(n)
        order = list(order)
        for start in range(0, n, self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield self.collate_fn([self.dataset[int(i)] for i in batch])


def _rng(generator):
    if generator is None:
        return backend.host_rng()
    if isinstance(generator, np.random.Generator):
        return generator
    return np.random.default_rng(generator)
