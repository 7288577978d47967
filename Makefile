# The two commands: `make run` starts the service, `make test` runs every check.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: run test lint typecheck unit bench-backend clean

run: $(VENV)/.installed $(CONFIG)
	$(BIN)/majicbot serve --config $(CONFIG)

test: lint typecheck unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Two test workers (pytest-xdist): CI has two cores, and the suite is mostly waiting on I/O.
# loadgroup: the Ray tests (xdist_group "ray") share one worker and its one local Ray cluster.
unit: $(VENV)/.installed-dev
	$(BIN)/pytest -n 2 --dist loadgroup

bench-backend: $(VENV)/.installed-dev
	$(BIN)/python -m bench.backend

$(CONFIG):
	cp config.example.toml $(CONFIG)
	@echo "Created $(CONFIG) from config.example.toml: enable a bot and set its token there or in the environment."

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
