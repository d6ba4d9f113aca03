"""A training script written for torch, run through nothing but an import swap.

SCRIPT below is ordinary torch code (an LSTMCell sine-wave predictor in the style of the public
example, with a DataLoader, a ModuleList, LayerNorm, GELU, gradient clipping, a scheduler, a
checkpoint and greedy rollout). It runs under torch as written; `_swap` changes its import lines
only, and it must run under tinygrad_rnn too, and learn as well.
"""
import re

import numpy as np
import pytest
from oracle import needs_torch

SCRIPT = '''
import math
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
device = torch.device("cpu")


class Predictor(nn.Module):
    def __init__(self, hidden=32, layers=2):
        super().__init__()
        self.cells = nn.ModuleList([nn.LSTMCell(1 if i == 0 else hidden, hidden) for i in range(layers)])
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x, future=0):
        batch = x.size(0)
        states = [(x.new_zeros(batch, cell.hidden_size), x.new_zeros(batch, cell.hidden_size)) for cell in self.cells]
        outputs = []
        value = None
        for t in range(x.size(1) + future):
            value = x[:, t:t + 1] if t < x.size(1) else value
            h = value
            for i, cell in enumerate(self.cells):
                states[i] = cell(h, states[i])
                h = states[i][0]
            value = self.head(self.norm(h))
            outputs.append(value)
        return torch.cat(outputs, dim=1)


steps = torch.arange(0, 40, dtype=torch.float32)
phases = torch.rand(64, 1) * 2 * math.pi
waves = torch.sin(steps * 0.3 + phases)
inputs, targets = waves[:, :-1], waves[:, 1:]
loader = DataLoader(TensorDataset(inputs, targets), batch_size=16, shuffle=True)

model = Predictor().to(device)
optimizer = optim.Adam(model.parameters(), lr=0.01)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
losses = []
for epoch in range(EPOCHS):
    total = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += loss.item() * x.size(0)
    scheduler.step()
    losses.append(total / len(loader.dataset))

torch.save({"model": model.state_dict(), "epoch": EPOCHS}, CHECKPOINT)
restored = Predictor()
restored.load_state_dict(torch.load(CHECKPOINT)["model"])
restored.eval()
with torch.no_grad():
    rollout = restored(inputs[:4, :20], future=10)
'''


def _swap(script):
    """torch's import lines -> tinygrad_rnn's; nothing else in the script changes."""
    swaps = {
        r"^import torch$": "import tinygrad_rnn as torch",
        r"^import torch\.nn as nn$": "import tinygrad_rnn.nn as nn",
        r"^import torch\.nn\.functional as F$": "import tinygrad_rnn.nn.functional as F",
        r"^import torch\.optim as optim$": "import tinygrad_rnn.optim as optim",
        r"^from torch\.utils\.data import": "from tinygrad_rnn.data import",
    }
    for pattern, replacement in swaps.items():
        script, count = re.subn(pattern, replacement, script, flags=re.M)
        assert count <= 1, pattern
    left = re.findall(r"^\s*(?:import|from) torch\b.*$", script, flags=re.M)
    assert not left, f"import lines the swap does not know: {left}"
    return script


def _run(script, tmp_path, epochs):
    namespace = {"EPOCHS": epochs, "CHECKPOINT": str(tmp_path / "ckpt.pt")}
    exec(compile(script, "ported_script", "exec"), namespace)
    return namespace


@needs_torch
def test_the_script_runs_under_torch_as_written(tmp_path):
    result = _run(SCRIPT, tmp_path, epochs=12)
    assert result["losses"][-1] < result["losses"][0] / 3
    assert tuple(result["rollout"].shape) == (4, 30)


def test_the_script_runs_and_learns_through_an_import_swap(tmp_path):
    result = _run(_swap(SCRIPT), tmp_path, epochs=12)
    losses = result["losses"]
    assert losses[-1] < losses[0] / 3, losses
    rollout = result["rollout"]
    assert tuple(rollout.shape) == (4, 30) and np.isfinite(rollout.numpy()).all()


@pytest.mark.parametrize("line", ["import torch", "import torch.nn as nn"])
def test_the_swap_touches_import_lines_only(line):
    swapped = _swap(SCRIPT)
    assert line not in swapped.splitlines()
    assert swapped.count("\n") == SCRIPT.count("\n")
    assert [a for a in SCRIPT.splitlines() if "import" not in a] == [b for b in swapped.splitlines()
                                                                     if "import" not in b]
