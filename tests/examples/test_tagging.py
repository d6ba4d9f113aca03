"""examples/tagging.py at tiny settings: 100 Adam steps per model on 500 sentences. Whether a word is
a name is decided by the word after it, so only the bidirectional tagger can find every name."""
from .run import run_example


def test_the_backward_direction_finds_the_names(tmp_path):
    results, stdout = run_example("tagging.py", "--steps", 100, "--eval-every", 50, "--train-size", 500,
                                  "--test-size", 200, tmp_path=tmp_path)
    # measured (seeds 0-3): bi 1.0 on names and overall; uni 0.28-0.41 on names; majority 0.88-0.89
    assert results["name_accuracy_bi"] >= 0.9
    assert results["name_accuracy_bi"] >= results["name_accuracy_uni"] + 0.4
    assert results["accuracy_bi"] >= results["majority_accuracy"] + 0.08
    assert "bi:" in stdout and "uni:" in stdout  # the tagged example sentences
    assert (tmp_path / "tagging_accuracy.png").stat().st_size > 0
