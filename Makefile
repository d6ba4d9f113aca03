# Two entry points (README quick start): `make demo` and `make test`.
# Both create .venv on first use and are safe to run again.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean system-packages docs

$(STAMP): setup.cfg pyproject.toml
	@echo "creating $(VENV) and installing tinygrad_rnn with numpy, the test tools (pytest, hypothesis, ruff),"
	@echo "torch 2.13 (CPU; the tests' reference), matplotlib, tqdm, scikit-learn and graphviz"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,oracle,examples,viz]'
	touch $(STAMP)

system-packages:
	@bash tools/system-packages.sh dot:graphviz chromium:chromium

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP) system-packages
	$(PY) -m ruff check tinygrad_rnn tests benchmarks examples
	$(PY) -m pytest -q

# the pictures in docs/viz.md and the README, regenerated (commit docs/img with the change that moved them)
docs: $(STAMP) system-packages
	$(PY) tools/make_viz_docs.py

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/rnn.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
