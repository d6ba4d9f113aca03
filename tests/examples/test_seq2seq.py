"""examples/seq2seq.py at tiny settings: 100 Adam steps (lr 1e-2) on 1 to 3 digits. Greedy decoding of
held-out digit strings already spells most of them right."""
from .run import run_example


def test_the_encoder_decoder_learns_to_spell_digits(tmp_path):
    results, stdout = run_example("seq2seq.py", "--steps", 100, "--lr", 1e-2, "--max-digits", 3,
                                  "--test-size", 200, "--eval-every", 50, "--show", 3, tmp_path=tmp_path)
    # measured (seeds 0-3): characters 0.76-0.83 (guessing one of the 19 symbols: 0.05), exact
    # match 0.62-0.73, loss 2.9 -> 0.13-0.20
    assert results["char_accuracy"] >= 0.6
    assert results["sequence_accuracy"] >= 0.4
    assert results["final_loss"] <= results["first_loss"] / 10
    assert stdout.count(" -> ") == 3  # the printed translations
    assert (tmp_path / "seq2seq_training.png").stat().st_size > 0
