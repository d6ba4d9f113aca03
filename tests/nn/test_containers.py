"""ModuleList and ModuleDict against torch: registration, state_dict keys, list and dict protocols."""
import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn import nn


def _stacked_cells(lib):
    class Stack(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.cells = lib.nn.ModuleList([lib.nn.LSTMCell(3, 4), lib.nn.LSTMCell(4, 4)])
            self.heads = lib.nn.ModuleDict({"tag": lib.nn.Linear(4, 2), "score": lib.nn.Linear(4, 1)})

        def forward(self, x):
            h = x
            for cell in self.cells:
                h, _ = cell(h)
            return self.heads["tag"](h), self.heads["score"](h)
    return Stack()


@needs_torch
def test_parameters_register_and_state_dicts_move_between_frameworks():
    ours, theirs = _stacked_cells(tg), _stacked_cells(torch).double()
    ours.double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 12
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3))
    for a, b in zip(ours(tg.tensor(x)), theirs(torch.tensor(x))):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
def test_list_protocol_matches_torch():
    def ops(lib):
        layers = lib.nn.ModuleList([lib.nn.Linear(1, 1) for _ in range(3)])
        layers.append(lib.nn.Tanh())
        layers.insert(1, lib.nn.ReLU())
        layers += [lib.nn.Sigmoid()]
        del layers[0]
        names = [type(m).__name__ for m in layers]
        return names, len(layers), len(layers[1:3]), type(layers[-1]).__name__, list(dict(layers.named_children()))

    assert ops(tg) == ops(torch)


@needs_torch
def test_dict_protocol_matches_torch():
    def ops(lib):
        heads = lib.nn.ModuleDict({"b": lib.nn.Tanh(), "a": lib.nn.ReLU()})
        heads["c"] = lib.nn.Sigmoid()
        heads.update([("d", lib.nn.Identity())])
        popped = type(heads.pop("a")).__name__
        return list(heads), list(heads.keys()), popped, "b" in heads, len(heads)

    assert ops(tg) == ops(torch)


def test_index_errors():
    layers = nn.ModuleList([nn.Tanh()])
    with pytest.raises(IndexError, match="out of range"):
        layers[3]
    with pytest.raises(KeyError):
        nn.ModuleDict()["missing"]
