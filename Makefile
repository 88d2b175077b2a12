# Two entry points (see README): `make demo` sets everything up and runs the main job;
# `make test` runs the whole test suite. Both create .venv from this repository's own files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline and predictable everywhere: no hub look-ups, no price-map fetch, no spinning threads.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: the reflect-retry loop over the demo tasks, then the log's statistics.
# Until the embedded model lands it runs on a scripted model (canned replies).
demo: $(STAMP)
	$(BIN)/rrr run --tasks examples/demo_tasks.jsonl --script examples/demo_script.json --concurrency 1
	$(BIN)/rrr logs stats

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/runtime_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
