"""examples/jordan.py at tiny settings: the custom cell learns (its loss falls, and its fed-back output
beats both copying the input and the same cell without feedback), and the renderer draws it as a
recurrent cell: one cluster per time step, a "jordan" lane in each, the path to W_y in red."""
import re
import shutil
from pathlib import Path

from .run import run_example

STEPS = 4


def step_lanes(dot_text):
    """{step cluster label: [labels of the clusters directly inside it]} from viz.to_dot's text."""
    found, stack = {}, []
    for line in dot_text.splitlines():
        line = line.strip()
        if line.startswith("subgraph"):
            stack.append(None)
        elif stack and stack[-1] is None and (m := re.fullmatch(r'label="(.*)";', line)):
            stack[-1] = m.group(1)
            if re.fullmatch(r"t\d+", m.group(1)):
                found[m.group(1)] = []
            elif len(stack) > 1 and stack[-2] in found:
                found[stack[-2]].append(m.group(1))
        elif line == "}" and stack:
            stack.pop()
    return found


def test_jordan_trains_and_draws_like_a_built_in_cell(tmp_path):
    results, _ = run_example("jordan.py", "--steps", 120, "--length", 20, "--graph-steps", STEPS, tmp_path=tmp_path)

    # seeds 0-3: the loss falls 34-46x (0.51 -> 0.015 at seed 0); held out, the Jordan net's MSE is
    # 0.70x persistence's, and the cell with W_y = 0 does no better than persistence (0.99-1.01x)
    assert results["final_loss"] < results["first_loss"] / 10, results
    assert results["held_out_mse"] < 0.85 * results["persistence_mse"], results
    assert results["held_out_mse"] < 0.85 * results["no_feedback_mse"], results

    for detail in ("op", "cell"):
        text = (tmp_path / f"jordan-{detail}.dot").read_text(encoding="utf-8")
        assert step_lanes(text) == {f"t{t}": ["jordan"] for t in range(STEPS)}, detail
        assert re.search(r'label="weight_y \(16, 1\)\\nΣ over 4 steps".*class="bptt-path"', text), detail
        assert "initial state\\njordan = 0" in text, detail
        assert (tmp_path / f"jordan-{detail}.svg").is_file() == bool(shutil.which("dot"))
    assert results["dot"] == ["jordan-op.dot", "jordan-cell.dot"]
    for name in ("jordan-loss", "jordan-flow"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_docs_page_shows_the_cell_as_written_and_its_pictures_exist():
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "jordan.md").read_text(encoding="utf-8")
    (shown,) = [block for block in re.findall(r"```python\n(.*?)```", page, re.S) if "class Jordan" in block]
    assert shown in (root / "examples" / "jordan.py").read_text(encoding="utf-8")
    pictures = re.findall(r"\]\((img/[\w./-]+)\)", page)
    assert {Path(p).name for p in pictures} == {"jordan-loss.png", "jordan-op.svg", "jordan-cell.svg",
                                                "jordan-flow.png"}
    assert [p for p in pictures if not (root / "docs" / p).is_file()] == []
    assert "python examples/jordan.py --docs" in page
