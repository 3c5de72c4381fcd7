# The two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-accel lint format clean notebooks docs

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ebm_jax demo

test: $(STAMP)
	$(PY) -m ruff check ebm_jax tests benchmarks notebooks
	$(PY) -m ruff format --check ebm_jax tests benchmarks notebooks
	$(PY) -m mypy
	$(PY) -m pytest -n auto --maxschedchunk 1 --doctest-modules ebm_jax tests

bench: $(STAMP)
	$(PY) benchmarks/samplers.py
	$(PY) benchmarks/recompiles.py
	$(PY) benchmarks/posteriors.py
	$(PY) benchmarks/score_matching.py
	$(PY) benchmarks/toy_likelihoods.py
	$(PY) benchmarks/toy_contrastive.py
	$(PY) benchmarks/contrastive_speed.py
	$(PY) benchmarks/rbm_digits.py
	$(PY) benchmarks/diffusion_speed.py
	$(PY) benchmarks/diffusion_quality.py
	$(PY) benchmarks/diffusion_guidance.py
	$(PY) benchmarks/diffusion_ema.py

# One command for accelerators (and CPU): writes benchmarks/results/<device>/accelerator.*
bench-accel: $(STAMP)
	$(PY) benchmarks/accelerator.py

# Rebuilds notebooks/*.ipynb from notebooks/build_*.py and executes them in full mode.
notebooks: $(STAMP)
	$(PY) notebooks/_execute.py

# The documentation site, warnings as errors (fresh each time, so none hides): docs/_build/html
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -E -b html docs docs/_build/html

lint: $(STAMP)
	$(PY) -m ruff check ebm_jax tests benchmarks notebooks
	$(PY) -m ruff format --check ebm_jax tests benchmarks notebooks
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format ebm_jax tests benchmarks notebooks
	$(PY) -m ruff check --fix ebm_jax tests benchmarks notebooks

clean:
	rm -rf $(VENV) out .pytest_cache docs/_build docs/notebooks
