"""Regenerate the examples' figures and measured results in the docs: for every page
docs/examples/<name>.md, run the command its "Run it" block shows (the first line of a bash block
that starts with `python examples/<name>.py`), exactly, plus `--out` into a scratch folder; copy the
PNGs it wrote to docs/img/examples/<name>/, and write into the page the figures (between
`<!-- figures -->` and `<!-- /figures -->`) and its `RESULT <name> {json}` line (between
`<!-- result -->` and `<!-- /result -->`). `make docs` runs this.

    .venv/bin/python tools/make_example_figures.py [NAME ...] [--list]

The page is the one source of the command, so what a reader runs is what made the pictures.
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "examples"
IMG = ROOT / "docs" / "img" / "examples"
TIMEOUT_S = 1200  # the examples' defaults aim at 3 minutes on 2 cores; a slow machine gets slack


def pages():
    """{example name: page path} for every example page (index.md is the gallery, not an example)."""
    return {p.stem: p for p in sorted(PAGES.glob("*.md")) if p.stem != "index"}


def command_of(name, text):
    """The page's command for examples/<name>.py, as argv (python -> this interpreter)."""
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(f"python examples/{name}.py"):
                return line, [sys.executable, *shlex.split(line)[1:]]
    raise SystemExit(f"{name}: no `python examples/{name}.py ...` line in a bash block of its page")


def replace_between(text, marker, body, where):
    """The text with what lies between <!-- marker --> and <!-- /marker --> replaced by body."""
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where}: no <!-- {marker} --> ... <!-- /{marker} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def figures_markdown(name, pngs):
    return "".join(f"![{png.stem.replace('_', ' ')}](../img/examples/{name}/{png.name})\n\n" for png in pngs)


def result_markdown(line, command, seconds):
    _, _, payload = line.split(" ", 2)
    # nested values (char_rnn's samples) stay in the raw line above: in a table cell their | and `
    # would split the row or open code spans
    rows = "".join(f"| `{key}` | {json.dumps(value)} |\n" for key, value in json.loads(payload).items()
                   if not isinstance(value, dict))
    return (f"`{command}` printed, in {seconds:.0f} s on the machine that built these docs:\n\n"
            f"```text\n{line}\n```\n\n| measured | value |\n|---|---|\n{rows}\n")


def run(name, page):
    text = page.read_text(encoding="utf-8")
    shown, argv = command_of(name, text)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.monotonic()
        done = subprocess.run([*argv, "--out", scratch, "--quiet"], cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT_S, env={**os.environ, "MPLBACKEND": "Agg"})
        seconds = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"{name}: `{shown}` failed:\n{done.stderr[-4000:]}")
        results = [line for line in done.stdout.splitlines() if line.startswith(f"RESULT {name} ")]
        if len(results) != 1:
            raise SystemExit(f"{name}: expected one `RESULT {name} {{json}}` line, got {len(results)}")
        pngs = sorted(pathlib.Path(scratch).glob("*.png"))
        target = IMG / name
        shutil.rmtree(target, ignore_errors=True)  # a figure the script stopped drawing must not linger
        target.mkdir(parents=True)
        for png in pngs:
            shutil.copyfile(png, target / png.name)
    text = replace_between(text, "figures", figures_markdown(name, pngs), page)
    text = replace_between(text, "result", result_markdown(results[0], shown, seconds), page)
    page.write_text(text, encoding="utf-8")
    return seconds, len(pngs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="examples to run (default: every page under docs/examples/)")
    p.add_argument("--list", action="store_true", help="print each page's command and exit")
    args = p.parse_args(argv)
    found = pages()
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        p.error(f"no page docs/examples/<name>.md for {unknown}; pages: {sorted(found)}")
    for name in args.names or found:
        if args.list:
            print(f"{name}: {command_of(name, found[name].read_text(encoding='utf-8'))[0]}")
            continue
        seconds, count = run(name, found[name])
        print(f"{name}: {count} figures, {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
