"""The README's code runs as written, and the demo trains (its loss falls)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_snippets_run(tmp_path, monkeypatch):
    """Every python block of the README, each on its own, as a reader would paste it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # the first writes a checkpoint
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "ckpt.npz").exists()


def test_demo_loss_falls():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--steps", "50"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    losses = [float(m) for m in re.findall(r"mse ([0-9.]+)  grad", result.stdout)]
    assert len(losses) == 3 and losses[-1] < losses[0] / 5, result.stdout
