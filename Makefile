# Two commands: `make run` serves the node on http://127.0.0.1:8100 with embedded Redis and
# IPFS; `make test` runs ruff, mypy and the tests. Each does its own set-up; re-running skips
# every step whose inputs did not change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed

.PHONY: run test setup system-deps ipfs-daemon lint typecheck pytest clean

run: setup
	$(BIN)/artdag-node

test: setup lint typecheck pytest

setup: system-deps $(PY_STAMP) ipfs-daemon

system-deps:
	@scripts/system-deps.sh

$(PY_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Kubo: an `ipfs` on PATH of a supported version, else the version pinned in tools/kubo/go.mod
# built into .tools/bin with Go (skipped when already built); node/kubo.py decides.
ipfs-daemon: $(PY_STAMP)
	@$(BIN)/python -m node.kubo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
