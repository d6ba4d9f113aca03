"""examples/char_rnn.py at tiny settings: it learns, it samples, and --resume continues exactly."""
import math
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_rnn as tg
from tests.examples.run import ROOT, run_example

STEPS = 30
# LSTM 32 over 8 streams of 16 characters; a sample snippet (tg.multinomial) at steps 10, 20, 30,
# so the random generator is used on both sides of the checkpoint at step 15
TINY = ("--hidden", 32, "--bptt", 16, "--batch", 8, "--lr", 1e-2, "--log-every", 10, "--sample-length", 40,
        "--checkpoint-every", STEPS // 2)


def array(value):
    return value.numpy() if isinstance(value, tg.Tensor) else np.asarray(value)


def corpus_characters():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return set("\n".join(f.read_text(encoding="utf-8") for f in files))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    results, stdout = run_example("char_rnn.py", "--steps", STEPS, *TINY, tmp_path=out)
    return out, results, stdout


def test_learns_samples_and_writes_its_files(straight):
    out, results, _ = straight
    assert results["steps"] == STEPS
    # it starts at a uniform guess over the corpus's characters...
    assert abs(results["initial_loss"] - math.log(results["vocab_size"])) < 0.15
    # ...and 30 steps take it to about the characters' own frequencies (~3.5 nats from ~4.6)
    assert results["train_loss"] < results["initial_loss"] / 1.2
    assert results["heldout_loss"] < results["initial_loss"] / 1.15
    assert results["bits_per_char"] == pytest.approx(results["train_loss"] / math.log(2), abs=1e-5)

    characters = corpus_characters()
    assert set(results["samples"]) == {"greedy", "T=0.5", "T=1"}
    for name, text in results["samples"].items():
        assert isinstance(text, str) and len(text) == 40, name
        assert set(text) <= characters, name

    for name in ("char_rnn_loss.png", "char_rnn_grad_flow.png", "char_rnn_graph.dot", "char_rnn_graph.svg",
                 "char_rnn.ckpt", "char_rnn_samples.txt"):
        assert (out / name).stat().st_size > 0, name
    dot = (out / "char_rnn_graph.dot").read_text(encoding="utf-8")
    assert "rnn.weight_hh_l0" in dot and "bptt-path" in dot


def test_resume_continues_exactly(straight, tmp_path):
    """15 steps, stop, resume to 30 == 30 steps straight: every loss, weight, Adam moment, the
    carried state, the generator, and so the samples drawn after training."""
    out, results, _ = straight
    run_example("char_rnn.py", "--steps", STEPS // 2, *TINY, tmp_path=tmp_path)
    resumed, stdout = run_example("char_rnn.py", "--steps", STEPS, *TINY, "--resume", tmp_path=tmp_path)
    assert f"resuming at step {STEPS // 2}" in stdout
    assert resumed["train_loss"] == results["train_loss"]
    assert resumed["heldout_loss"] == results["heldout_loss"]
    assert resumed["samples"] == results["samples"]

    a, b = tg.load(out / "char_rnn.ckpt"), tg.load(tmp_path / "char_rnn.ckpt")
    assert a["step"] == b["step"] == STEPS
    assert a["losses"] == b["losses"] and len(a["losses"]) == STEPS
    assert a["heldout"] == b["heldout"] and a["rng"] == b["rng"]
    for key in a["model"]:
        np.testing.assert_array_equal(array(a["model"][key]), array(b["model"][key]), err_msg=key)
    for h_a, h_b in zip(a["state"], b["state"]):  # the LSTM's (h, c), carried into the next chunk
        np.testing.assert_array_equal(array(h_a), array(h_b))
    assert a["optim"]["param_groups"] == b["optim"]["param_groups"]
    for index, moments in a["optim"]["state"].items():
        for name, value in moments.items():
            np.testing.assert_array_equal(array(value), array(b["optim"]["state"][index][name]))


def test_numba_kernels_train_the_same_model(straight, tmp_path):
    """--kernels numba (the JIT gate math and Adam): the same run to float32 rounding."""
    pytest.importorskip("numba", reason="numba (the jit extra) is not installed")
    _, results, _ = straight
    jit, stdout = run_example("char_rnn.py", "--steps", STEPS, *TINY, "--kernels", "numba", tmp_path=tmp_path)
    assert "kernels: numba" in stdout
    for key in ("initial_loss", "train_loss", "heldout_loss"):
        assert jit[key] == pytest.approx(results[key], rel=1e-4), key


@pytest.mark.parametrize("flag", ["--hidden", "--bptt", "--graph-steps", "--steps"])
def test_sizes_below_one_are_refused_by_name(flag, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "char_rnn.py"), flag, "0", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and f"argument {flag}: must be at least 1, got 0" in out.stderr
