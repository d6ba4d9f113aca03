"""Running an example script as a user would (a subprocess, tiny settings) and reading its results line."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(script, *args, tmp_path, timeout=300):
    """python examples/<script> --out <tmp> --quiet <args> -> (results dict, stdout)."""
    command = [sys.executable, str(ROOT / "examples" / script), "--out", str(tmp_path), "--quiet", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout[-4000:]
    _, name, payload = lines[0].split(" ", 2)
    assert name == Path(script).stem
    return json.loads(payload), done.stdout
