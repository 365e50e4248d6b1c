# Set-up is part of every target: a fresh clone needs only `make train` or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= conf/inverted_pendulum.yaml
# Real env steps for `make train` (the quickstart default is short); STEPS= (empty) keeps the config's own budget.
STEPS ?= 5000
TRAIN_ARGS := $(if $(STEPS),--loop.total_env_steps $(STEPS))

.PHONY: install train test test-slow lint bench-peer clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the local CPU build (an unpinned torch would pull a multi-GB CUDA build).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) -m mbpo_pl fit --config $(CONFIG) $(TRAIN_ARGS)

test: install
	$(PY) -m pytest -m "not slow" tests

test-slow: install
	$(PY) -m pytest -m slow tests

bench-peer: install
	$(PY) benchmarks/peer.py --json benchmarks/peer_cpu2.json

lint: install
	$(PY) -m ruff check mbpo_pl callbacks tests benchmarks

clean:
	rm -rf $(VENV) logs
