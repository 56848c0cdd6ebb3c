# Two commands: `make run` serves the node on http://127.0.0.1:8100 with embedded Redis and
# IPFS; `make test` runs ruff, mypy and the tests. Each does its own set-up; re-running skips
# every step whose inputs did not change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
JS_DIR := ipfs-js
JS_STAMP := $(JS_DIR)/node_modules/.installed

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

# Kubo on PATH is used as it is; otherwise the bundled js-ipfs, pinned by its lock file.
# --ignore-scripts: what the daemon needs ships prebuilt (classic-level's prebuilds); the
# scripts left are optional WebRTC/electron downloads that cannot succeed offline.
ipfs-daemon:
	@if command -v ipfs >/dev/null 2>&1; then :; else $(MAKE) --no-print-directory $(JS_STAMP); fi

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache
