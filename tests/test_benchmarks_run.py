"""Every script under benchmarks/ runs to the end at tiny sizes and prints what docs/performance.md
reads off it: a change to the API they use breaks here, not in the next measuring session. (What
they measure is not checked here: timings are for the benchmarks themselves, never for tests.)"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script, *args):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^machine: .*BLAS threads", done.stdout, re.M), done.stdout[:500]  # machine, threads, versions
    return done.stdout


def test_rnn_benchmark_checks_its_floors_and_prints_ratios_for_every_cell():
    out = run("rnn.py", "--hidden", "16", "--steps", "1", "--warmup", "0", "--threads", "1")
    agreements = re.findall(r"(LSTM|GRU|RNN) hidden 16 \(first-step losses agree to ([0-9.e+-]+)\)", out)
    assert [cell for cell, _ in agreements] == ["LSTM", "GRU", "RNN"], out
    assert all(float(spread) < 1e-4 for _, spread in agreements), agreements
    assert out.count("x numpy manual") >= 3 * 3, out  # numpy, ours and op-by-op per cell at least


def test_mlp_lm_and_overhead_benchmarks_print_their_ratios():
    assert re.search(r"tinygrad_rnn .* ([0-9.]+)x numpy manual", run("mlp.py", "--steps", "1", "--warmup", "0"))
    lm = run("lm.py", "--steps", "1", "--warmup", "0", "--vocab", "300")
    assert "vocabulary 300 (700 tokens x 300 classes of logits)" in lm and "tinygrad_rnn" in lm, lm
    overhead = run("overhead.py", "--repeat", "1", "--number", "5")
    assert re.search(r"ratio tinygrad_rnn / numpy floor +[0-9.]+x", overhead), overhead
    assert len(re.findall(r"\d+ nodes +\d+ ns/node", overhead)) == 3, overhead


@pytest.mark.parametrize("seqs", [("8", "16")])
def test_memory_benchmark_reports_a_ratio_per_sequence_length(seqs):
    out = run("memory.py", "--hidden", "32", "--seq", *seqs)
    rows = re.findall(r"^\s+(\d+)\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)x\s+[0-9.]+ MiB", out, re.M)
    assert [seq for seq, _ in rows] == list(seqs), out
