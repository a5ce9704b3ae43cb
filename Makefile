# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv, installs the project, runs one full cycle on feeds.yaml
#   make test   creates .venv, installs the project with its test tools and the
#               embeddings extra, runs format check, lint, types and the tests
#               (warnings are errors)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUM    := $(shell cksum pyproject.toml | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(SUM)
# The tests also cover the optional embeddings extra (torch, about 1 GB): installed for
# `make test` only, so `make run` stays light.
TEST_STAMP := $(VENV)/.installed-tests-$(SUM)

.PHONY: run test check bench-poll clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,embeddings]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/aggregator run --once

check: $(TEST_STAMP)
	$(VENV)/bin/ruff format --check aggregator tests bench scheduler.py
	$(VENV)/bin/ruff check aggregator tests bench scheduler.py
	$(VENV)/bin/mypy

test: check
	$(PY) -m pytest -q

bench-poll: $(STAMP)
	$(PY) bench/poll.py

clean:
	rm -rf $(VENV) data public newsletters/outbox newsletters/archive .pytest_cache .mypy_cache .ruff_cache
