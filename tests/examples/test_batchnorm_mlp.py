"""examples/batchnorm_mlp.py at tiny settings: after the same 100 SGD steps from the same plain init,
the batch-normalised MLP has learned the digits and the plain one has barely started."""
from .run import run_example


def test_batchnorm_learns_faster(tmp_path):
    results, _ = run_example("batchnorm_mlp.py", "--steps", 100, "--eval-every", 50, tmp_path=tmp_path)
    assert results["accuracy_bn"] >= results["chance"] + 0.7  # measured 0.95 (seeds 0-3: 0.95-0.97)
    assert results["accuracy_bn"] >= results["accuracy_no_bn"] + 0.4  # no BN measured 0.26 (0.10-0.26)
    assert results["steps_to_target_bn"] == 50
    for name in ("batchnorm_accuracy", "batchnorm_activations"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
