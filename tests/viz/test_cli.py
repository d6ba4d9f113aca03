"""The command line (`python -m tinygrad_rnn.viz`, `tinygrad-rnn-viz`): every built-in model, the
options reaching the picture, every output format, argparse errors, and checkpoints. In-process
through cli.main for speed; one real run of each entry point."""
import pathlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import viz
from tinygrad_rnn.viz import cli, models

from .test_structure import edges_of, lane_of_step, marked_nodes, nodes_of, step_clusters

ROOT = pathlib.Path(__file__).resolve().parents[2]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz `dot` binary is not installed "
                               "(apt-get install graphviz); CI installs it")


def run(tmp_path, *argv, suffix="dot"):
    """main([...]) writing to tmp_path -> the output path (the test reads what it needs)."""
    out = tmp_path / f"out.{suffix}"
    assert cli.main([*argv, "-o", str(out)]) == 0
    return out


def dot_of(tmp_path, *argv):
    return run(tmp_path, *argv).read_text(encoding="utf-8")


def params_of(name, **kwargs):
    return models.build(name, **kwargs)[2]


@pytest.mark.parametrize("name", models.MODELS)
def test_every_built_in_model_draws_its_parameters_and_its_steps(name, tmp_path, capsys):
    text = dot_of(tmp_path, name)
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'out.dot'} ({name}")
    labels = nodes_of(text)
    for param in params_of(name):  # each parameter exactly once, by its name
        assert sum(1 for label in labels.values() if label.split(" ")[0].rstrip("ᵀ") == param) == 1, param
    if name in models.RECURRENT:
        assert sorted(step_clusters(text)) == ["t0", "t1", "t2", "t3"]
        assert any("Σ over 4 steps" in label for label in labels.values())
    else:
        assert not step_clusters(text)


def test_jordan_is_drawn_as_a_recurrent_cell_fed_by_its_output(tmp_path):
    text = dot_of(tmp_path, "jordan", "--steps", "3")
    assert {lane for _, lane in lane_of_step(text).values()} == {"jordan", None}
    labels = nodes_of(text)
    assert [t for t in range(3) if any(label.startswith(f"L⟨{t}⟩") for label in labels.values())] == [0, 1, 2]
    assert any(label.startswith("initial state") for label in labels.values())  # y<-1> = 0 drawn as a cut
    feedback = next(n for n, label in labels.items() if label.startswith("feedback.weight"))
    assert len({b for a, b, _ in edges_of(text) if a == feedback}) == 3


def test_detail_rolled_layers_and_directions_reach_the_picture(tmp_path):
    cells = [label for label in nodes_of(dot_of(tmp_path, "lstm", "--detail", "cell")).values()
             if label.startswith("LSTM cell")]
    assert len(cells) == 4
    rolled = dot_of(tmp_path, "gru", "--rolled", "--steps", "5")
    assert [attrs for a, b, attrs in edges_of(rolled) if a == b and 'label="×5"' in attrs]
    assert not step_clusters(rolled)
    stacked = dot_of(tmp_path, "rnn", "--layers", "2", "--bidirectional", "--steps", "3")
    lanes = {lane for _, lane in lane_of_step(stacked).values()}
    assert {"rnn/l0", "rnn/l0_reverse", "rnn/l1", "rnn/l1_reverse"} <= lanes


def test_highlight_from_one_loss_step_marks_only_the_steps_it_reaches(tmp_path):
    text = dot_of(tmp_path, "rnn", "--steps", "6", "--loss-step", "2", "--highlight", "weight_hh_l0")
    where = lane_of_step(text)
    assert {where[n][0] for n in marked_nodes(text) if n in where} == {"t0", "t1", "t2"}
    assert "from L⟨2⟩" in text
    total = dot_of(tmp_path, "rnn", "--steps", "6", "--highlight", "weight_hh_l0")
    assert {lane_of_step(total)[n][0] for n in marked_nodes(total) if n in lane_of_step(total)} == {
        f"t{t}" for t in range(6)}


def test_grad_norms_window_max_nodes_and_the_plot(tmp_path):
    text = dot_of(tmp_path, "lstm", "--grad-norms", "--detail", "cell")
    assert "cluster_legend" in text and "‖∇‖" in text
    assert len(re.findall(r'label="×[0-9.]+"', text)) == 3  # a ratio on each recurrent edge h<t-1> -> h<t>
    windowed = dot_of(tmp_path, "rnn", "--steps", "8", "--window", "3", "5", "--detail", "cell")
    assert set(step_clusters(windowed)) == {"t3", "t4", "t5"}
    assert any(label.startswith("… 3 steps …") for label in nodes_of(windowed).values())
    collapsed = dot_of(tmp_path, "lstm", "--max-nodes", "40")
    assert "collapsed to" in collapsed and len(nodes_of(collapsed)) <= 41
    plot = tmp_path / "flow.png"
    dot_of(tmp_path, "gru", "--bidirectional", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["cnn"], "invalid choice: 'cnn'"),
    (["rnn", "-o", "out.jpg"], "the suffix picks the format"),
    (["rnn", "--animate", "-o", "out.svg"], "--animate writes an HTML page"),
    (["mlp", "--steps", "3"], "mlp has no time steps: --steps"),
    (["bn-mlp", "--rolled"], "bn-mlp has no time steps: --rolled"),
    (["jordan", "--bidirectional"], "jordan has no layers or directions"),
    (["lstm", "--loss-step", "4"], "the loss terms are L<0>..L<3>"),
    (["lstm", "--window", "3", "1"], "needs 0 <= T0 <= T1"),
    (["lstm", "--layers", "0"], "must be a positive integer"),
    (["lstm", "--detail", "gate"], "invalid choice: 'gate'"),
    (["lstm", "--plot", "flow.svg"], "give a .png name"),
    (["lstm", "--highlight", "weight_hh"], "known: lstm.weight_ih_l0, lstm.weight_hh_l0"),
    (["gru", "--checkpoint", "no/such/dir/checkpoint.npz"], "--checkpoint: "),
])
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, *([] if "-o" in argv else ["-o", str(tmp_path / "x.dot")])])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tinygrad-rnn-viz") and message in err, err
    assert not (tmp_path / "x.dot").exists()


def grad_norm_labels(text):
    return sorted(re.findall(r"‖∇‖ ([0-9.e+-]+)", text))


def test_checkpoint_round_trip_changes_what_depends_on_the_weights(tmp_path):
    model, _, _ = models.build("lstm")
    checkpoint = tmp_path / "same.npz"
    tg.save(model.state_dict(), checkpoint)
    default = dot_of(tmp_path, "lstm", "--grad-norms")
    same = dot_of(tmp_path, "lstm", "--grad-norms", "--checkpoint", str(checkpoint))
    assert grad_norm_labels(same) == grad_norm_labels(default)
    assert "weights from same.npz" in same
    with tg.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    tg.save(model.state_dict(), tmp_path / "trained.npz")
    trained = dot_of(tmp_path, "lstm", "--grad-norms", "--checkpoint", str(tmp_path / "trained.npz"))
    assert grad_norm_labels(trained) != grad_norm_labels(default)
    assert nodes_of(trained).keys() == nodes_of(default).keys()  # the same graph, other numbers


def test_a_checkpoint_of_another_model_names_the_keys_that_do_not_fit(tmp_path, capsys):
    model, _, _ = models.build("lstm", layers=2)
    tg.save(model.state_dict(), tmp_path / "two_layers.npz")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["lstm", "--checkpoint", str(tmp_path / "two_layers.npz"), "-o", str(tmp_path / "x.dot")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "missing keys []" in err and "unexpected keys ['lstm.weight_ih_l1'" in err
    assert cli.main(["lstm", "--layers", "2", "--checkpoint", str(tmp_path / "two_layers.npz"),
                     "-o", str(tmp_path / "x.dot")]) == 0


@needs_dot
def test_svg_through_the_dot_binary_holds_the_labels_and_the_path(tmp_path):
    out = run(tmp_path, "lstm", "--loss-step", "3", "--highlight", "weight_hh_l0", "--detail", "cell", suffix="svg")
    root = ET.parse(out).getroot()
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]
    assert {"t0", "t1", "t2", "t3"} <= set(texts)
    assert any(t.startswith("lstm.weight_hh_l0") for t in texts)
    assert any(t.startswith("LSTM cell lstm/l0") for t in texts)
    classes = [g.get("class", "") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert sum("bptt-path" in c for c in classes) >= 8  # four cells, their states and the edges between


@needs_dot
@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")])
def test_png_and_pdf_through_the_dot_binary(suffix, magic, tmp_path):
    out = run(tmp_path, "bn-mlp", suffix=suffix)
    assert out.read_bytes().startswith(magic) and out.stat().st_size > 1000


def test_a_missing_dot_binary_exits_1_naming_the_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["mlp", "-o", str(tmp_path / "x.svg")])
    assert exit_.value.code == 1
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert cli.main(["mlp", "-o", str(tmp_path / "x.dot")]) == 0  # DOT needs no binary


@pytest.mark.skipif(not hasattr(viz, "animate"), reason="viz.animate (the HTML player) is not in this tree yet")
def test_animate_writes_a_self_contained_page(tmp_path):
    page = run(tmp_path, "rnn", "--animate", suffix="html").read_text(encoding="utf-8")
    assert "<svg" in page and "<script" in page and "http://" not in page.replace("http://www.w3.org", "")
    assert run(tmp_path, "gru", suffix="html").read_text(encoding="utf-8").count("<svg") >= 1  # the suffix alone


def test_python_dash_m_runs_in_a_real_process(tmp_path):
    out = tmp_path / "gru.dot"
    result = subprocess.run([sys.executable, "-m", "tinygrad_rnn.viz", "gru", "--steps", "3", "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out} (gru, 3 steps, total loss, op detail)"
    assert out.read_text(encoding="utf-8") == dot_of(tmp_path, "gru", "--steps", "3")


def test_the_console_script_runs_when_installed(tmp_path):
    script = pathlib.Path(sys.executable).parent / "tinygrad-rnn-viz"
    if not script.exists():
        pytest.skip(f"{script} is not installed yet (pip install -e . writes it; make test reinstalls)")
    result = subprocess.run([str(script), "mlp", "-o", str(tmp_path / "mlp.dot")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fc1.weight" in (tmp_path / "mlp.dot").read_text(encoding="utf-8")
    bad = subprocess.run([str(script), "mlp", "--steps", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "mlp has no time steps" in bad.stderr
