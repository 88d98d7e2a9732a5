# Every target creates and reuses .venv itself; run `make demo` or `make test` on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-fewshot bench-serve bench-factory lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare "torch" would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m modelfab.cli demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m modelfab.bench.suite

# Few labels: modelfab's adaptation against SetFit, students, active learning, label issues.
bench-fewshot: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,fewshot]"
	$(PY) -m modelfab.bench.fewshot

# `modelfab serve` under load from a second process on loopback; writes bench-results/serve.json.
bench-serve: $(STAMP)
	$(PY) -m modelfab.serve.bench

# The factory: 20+ scenarios from one recipe, marginal cost, SIGKILL-resume and Ray checks.
bench-factory: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,ray]"
	$(PY) -m modelfab.factory.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy src

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

clean:
	rm -rf $(VENV) .modelfab report.md report.html report-assets
