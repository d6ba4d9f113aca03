"""The built-in models the command line draws (`python -m tinygrad_rnn.viz MODEL`): small, seeded,
each with a loss per time step where it has time, so the picture shows the L<t> terms feeding the
total. `build(name, ...)` -> (model, make_loss, params); make_loss() -> (total loss, [L<t>]).

    mlp      Linear -> ReLU -> Linear, cross-entropy
    bn-mlp   Linear -> BatchNorm1d -> ReLU -> Linear, cross-entropy
    rnn, lstm, gru   nn.RNN / nn.LSTM / nn.GRU -> Linear head, squared error per step
    jordan   a Jordan network: a custom cell whose state is its previous *output*
"""
from __future__ import annotations

import numpy as np

from .. import autograd
from ..autograd import scope
from ..creation import manual_seed, tensor, zeros
from ..nn import GRU, LSTM, RNN, BatchNorm1d, Linear, Module, ReLU, cells, functional

INPUTS, BATCH, CLASSES = 3, 2, 2
SEQUENCE_LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
RECURRENT = (*SEQUENCE_LAYERS, "jordan")
MODELS = ("mlp", "bn-mlp", *RECURRENT)


class MLP(Module):
    """(N, 3) -> (N, 2) logits; named layers so the picture's parameters read fc1.weight, bn.bias."""

    def __init__(self, hidden, batch_norm=False):
        super().__init__()
        self.fc1 = Linear(INPUTS, hidden)
        self.bn = BatchNorm1d(hidden) if batch_norm else None
        self.relu = ReLU()
        self.fc2 = Linear(hidden, CLASSES)

    def forward(self, x):
        x = self.fc1(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.fc2(self.relu(x))


class Sequence(Module):
    """nn.RNN/LSTM/GRU -> Linear: (T, B, 3) -> [(B, 1) per step]. The head is applied per step,
    so each step's head and loss sit in that step's column of the picture."""

    def __init__(self, kind, hidden, layers, bidirectional):
        super().__init__()
        self.kind = kind
        setattr(self, kind, SEQUENCE_LAYERS[kind](INPUTS, hidden, num_layers=layers, bidirectional=bidirectional))
        self.head = Linear(hidden * (2 if bidirectional else 1), 1)

    def forward(self, x):
        output, _ = getattr(self, self.kind)(x)
        return [self.head(output[t]) for t in range(x.shape[0])]


class Jordan(Module):
    """A Jordan network (Jordan 1986): what a step hands on is its output, not a hidden layer:
    a<t> = tanh(W_x x<t> + W_y y<t-1> + b), y<t> = W_o a<t> + b_o, y<-1> = 0.
    (T, B, 3) -> [(B, 1) per step]."""

    def __init__(self, hidden):
        super().__init__()
        self.input = Linear(INPUTS, hidden)
        self.feedback = Linear(1, hidden, bias=False)
        self.output = Linear(hidden, 1)

    def forward(self, x):
        y, outputs = zeros(x.shape[1], 1), []
        for t in range(x.shape[0]):
            # one scope entry per step and the carried state marked "h": the renderer then sees a
            # recurrent cell (a lane with one step each), as it does for nn.RNNCell in a loop
            with scope("jordan"):
                y = self.output((self.input(x[t]) + self.feedback(y)).tanh())
                autograd.mark(y, "h", "zero" if t == 0 else None)
            outputs.append(y)
        return outputs


def _check(name, layers, bidirectional, steps, hidden):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    if name not in SEQUENCE_LAYERS and (layers != 1 or bidirectional):
        raise ValueError(f"{name} has no layers or directions to set: layers and bidirectional are for "
                         f"{', '.join(SEQUENCE_LAYERS)}")
    for what, value in (("steps", steps), ("layers", layers), ("hidden", hidden)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive int, got {value!r}")


def build(name, steps=4, layers=1, bidirectional=False, hidden=4, seed=0, fused=True):
    """The built-in model `name` (one of MODELS) with weights from `seed` -> (model, make_loss,
    params). make_loss() runs the model on an input drawn from `seed` (the same every call) and
    returns (total loss, [L<t> per step]; [] for the MLPs, which have no time). params is
    dict(model.named_parameters()). `steps` is ignored by the MLPs. fused=False runs the recurrent
    cells op by op (tg.nn.fused), so that op detail shows every gate."""
    _check(name, layers, bidirectional, steps, hidden)
    manual_seed(seed)
    if name in ("mlp", "bn-mlp"):
        model = MLP(hidden, batch_norm=name == "bn-mlp")
    elif name == "jordan":
        model = Jordan(hidden)
    else:
        model = Sequence(name, hidden, layers, bidirectional)

    def make_loss():
        with cells.fused(fused):
            return _loss()

    def _loss():
        # the input from numpy's own generator: drawing it leaves tg's global generator alone
        rng = np.random.default_rng(seed)
        if name in ("mlp", "bn-mlp"):
            x = tensor(rng.standard_normal((5, INPUTS)).astype(np.float32))
            targets = tensor(rng.integers(0, CLASSES, size=5))
            return functional.cross_entropy(model(x), targets), []
        x = tensor(rng.standard_normal((steps, BATCH, INPUTS)).astype(np.float32))
        targets = rng.standard_normal((steps, BATCH, 1)).astype(np.float32)
        losses = [((y - tensor(target)) ** 2).mean() for y, target in zip(model(x), targets)]
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total, losses

    return model, make_loss, dict(model.named_parameters())


def load_checkpoint(model, path):
    """Load a state_dict saved with tg.save(model.state_dict(), path) into `model`, with an error
    that names the keys that do not fit (a checkpoint of another model, or other --layers)."""
    from ..serialization import load

    state = load(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), found {type(state).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model: missing keys {missing}, unexpected keys {unexpected}")
    model.load_state_dict(state)
