# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= policies/examples

.PHONY: run place test lint typecheck bench schema lock clean

# Everything (every extra, the test and lint tools) at the versions and hashes of the lock;
# then the project itself, editable. A user's install picks extras: see the README's Install.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
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

# requirements.lock: every runtime extra (what the image installs); requirements-dev.lock: that
# and the test and lint tools (what make and CI install). Both pin versions with hashes.
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
lock:  # uses the venv's uv (make test installs it)
	$(LOCK) --extra all -o requirements.lock
	$(LOCK) --extra dev -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
