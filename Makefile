# Two entry points (README quick start): `make demo` and `make test`.
# Both create .venv on first use and are safe to run again.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint bench clean system-packages docs

$(PY):
	@echo "creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# the demo installs only what it needs; the tests install everything (a superset)
$(DEMO_STAMP): setup.cfg pyproject.toml | $(PY)
	@echo "installing tinygrad_rnn into $(VENV) with what the demo needs: numpy, matplotlib, tqdm, graphviz, threadpoolctl"
	$(PY) -m pip install -q -e '.[demo]'
	touch $(DEMO_STAMP)

$(STAMP): setup.cfg pyproject.toml | $(PY)
	@echo "installing tinygrad_rnn into $(VENV) with numpy, the test tools (pytest, hypothesis, ruff), torch 2.13"
	@echo "(CPU; the tests' reference), numba (the optional JIT kernels), matplotlib, tqdm, scikit-learn, graphviz"
	@echo "and mkdocs (the docs site)"
	$(PY) -m pip install -q -e '.[test,oracle,examples,viz,docs,jit]'
	touch $(STAMP)

system-packages:
	@bash tools/system-packages.sh dot:graphviz chromium:chromium

demo: $(DEMO_STAMP)
	@bash tools/system-packages.sh dot:graphviz
	$(PY) examples/char_rnn.py

test: $(STAMP) system-packages
	$(PY) -m ruff check tinygrad_rnn tests benchmarks examples tools
	$(PY) -m pytest -q

# every figure regenerated (the graph pictures, then each example run as its page shows, its results
# line written into the page), then the site built strictly into site/; commit docs/ with the change
# that moved them. A .venv stamped before the docs extra existed gets it here.
docs: $(STAMP) system-packages
	$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || $(PY) -m pip install -q -e '.[docs]'
	$(PY) tools/make_viz_docs.py
	$(PY) tools/make_example_figures.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/rnn.py
	$(PY) benchmarks/mlp.py
	$(PY) benchmarks/lm.py
	$(PY) benchmarks/memory.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache site
