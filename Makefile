# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= policies/examples

.PHONY: run place test lint typecheck bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	# tritonserver for the serving tests: only the binary the wheel bundles is used, so its
	# Python dependencies (which pin numpy<2) are not installed.
	$(BIN)/pip install --quiet --no-deps 'nvidia-pytriton==0.7.0'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/placement serve --config $(CONFIG) --demo-token

place: $(STAMP)
	$(BIN)/placement place $(CONFIG)/workloads --config $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check placement api infra tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check placement api infra tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/engine.py --json

schema: $(STAMP)
	$(BIN)/placement schema --out policies/schema
	$(BIN)/placement crds --out helm/placement/crds

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
