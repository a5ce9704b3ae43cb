# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv, installs the project, runs one full cycle on feeds.yaml
#   make test   creates .venv, installs the project with its test tools, runs
#               format check, lint, types and the tests (warnings are errors)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test check bench-poll clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/aggregator run --once

check: $(STAMP)
	$(VENV)/bin/ruff format --check aggregator tests bench scheduler.py
	$(VENV)/bin/ruff check aggregator tests bench scheduler.py
	$(VENV)/bin/mypy

test: check
	$(PY) -m pytest -q

bench-poll: $(STAMP)
	$(PY) bench/poll.py

clean:
	rm -rf $(VENV) data public newsletters/outbox newsletters/archive .pytest_cache .mypy_cache .ruff_cache
