PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cli]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check evolink_async tests benchmarks examples
	$(BIN)/mypy --strict evolink_async
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check evolink_async tests benchmarks examples
	$(BIN)/ruff format --check evolink_async tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict evolink_async

pytest: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/evolink demo

bench: $(STAMP)
	$(BIN)/python benchmarks/polling.py
	$(BIN)/python benchmarks/batch.py
	$(BIN)/python benchmarks/callbacks.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
