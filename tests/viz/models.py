"""Small models the viz tests draw, built the same way every time (seeded)."""
import tinygrad_rnn as tg
from tinygrad_rnn import nn


def named(**modules):
    """{"rnn.weight_hh_l0": tensor, ...} over several modules."""
    return {f"{prefix}.{name}": p for prefix, module in modules.items() for name, p in module.named_parameters()}


def rnn_cell_loop(steps=4, hidden=4, inputs=3, batch=2, seed=0, dtype="float32", fused=False):
    """A vanilla RNNCell in a Python loop with a loss term per step: (losses, total, params, cell, head, hs).
    Op by op unless fused: the pictures at op detail show every gate."""
    tg.manual_seed(seed)
    cell, head = nn.RNNCell(inputs, hidden).to(dtype), nn.Linear(hidden, 1).to(dtype)
    x = tg.randn(steps, batch, inputs, dtype=dtype)
    h, losses, hs = None, [], []
    for t in range(steps):
        with nn.fused(fused):
            h = cell(x[t], h)
        hs.append(h)
        losses.append((head(h) ** 2).mean())
    total = losses[0]
    for loss in losses[1:]:
        total = total + loss
    return losses, total, named(cell=cell, head=head), cell, head, hs


def sequence_layer(kind="LSTM", steps=3, hidden=4, inputs=3, batch=2, layers=1, bidirectional=False, seed=0,
                   fused=False):
    """nn.RNN/LSTM/GRU + Linear head, loss = mean of squares: (loss, output, params, module).
    Op by op unless fused: the pictures at op detail show every gate."""
    tg.manual_seed(seed)
    layer = getattr(nn, kind)(inputs, hidden, num_layers=layers, bidirectional=bidirectional)
    head = nn.Linear(hidden * (2 if bidirectional else 1), 1)
    x = tg.randn(steps, batch, inputs)
    with nn.fused(fused):
        output, _ = layer(x)
    loss = (head(output) ** 2).mean()
    return loss, output, named(**{kind.lower(): layer, "head": head}), layer


def mlp(batch_norm=False, seed=0):
    """Linear(3, 4) [-> BatchNorm1d(4)] -> ReLU -> Linear(4, 2), cross-entropy: (loss, params)."""
    tg.manual_seed(seed)
    layers = [nn.Linear(3, 4)] + ([nn.BatchNorm1d(4)] if batch_norm else []) + [nn.ReLU(), nn.Linear(4, 2)]
    model = nn.Sequential(*layers)
    loss = nn.functional.cross_entropy(model(tg.randn(5, 3)), tg.tensor([0, 1, 1, 0, 1]))
    return loss, dict(model.named_parameters())
