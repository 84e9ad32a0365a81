# Feishu Bridge — the two set-up commands in README.md are `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

up: install  ## install, then run everything against the local Feishu sandbox
	$(BIN)/feishu-bridge up --sandbox

test: install  ## install system and Python test needs, then run lint and the whole suite
	bash scripts/ensure-system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo  # the one-way layers (docs/architecture.md)
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/cli.py

clean:
	rm -rf var .pytest_cache
