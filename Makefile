# The checks CI runs (.ci/run runs the README's test command, which is lint + typecheck + test).
# Everything uses the project venv: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lint format typecheck test-fast test

lint:  ## ruff lint and format check (configured in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck:  ## mypy over harness/ ([tool.mypy] in pyproject.toml)
	$(BIN)/mypy

test-fast:  ## every test that needs no engine build, model, vLLM, Docker or browser (under 2 minutes)
	$(BIN)/python -m pytest tests -m "not engine"

test:  ## the README's test command: venv, lint, typecheck, then the whole suite (builds llama.cpp on first use)
	python3 -m venv $(VENV) && $(BIN)/pip install -q -e '.[dev]' && $(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/python -m pytest tests
