PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: system-deps test lint imports typecheck chaos pytest docs release-check demo bench bench-quick clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cli]'
	touch $(STAMP)

# Debian packages the tests start themselves (a real Redis for the coordinator, Chromium for the contact sheet):
# installed here when missing, so `make test` works on a fresh machine. apt-get needs root (CI runs as root);
# without it, say what to install.
DEBIAN_PACKAGES := redis-server:redis-server chromium:chromium chromium-driver:chromedriver
SYSTEM_STAMP := .system-deps.stamp

$(SYSTEM_STAMP): Makefile
	@missing=""; for pair in $(DEBIAN_PACKAGES); do \
		cmd=$${pair#*:}; pkg=$${pair%%:*}; \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
		elif sudo -n true 2>/dev/null; then \
			sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
		else echo "please install:$$missing (apt-get install$$missing)"; exit 1; fi; \
	fi
	touch $(SYSTEM_STAMP)

system-deps: $(SYSTEM_STAMP)

# The docs site's tools (the `docs` extra: MkDocs, Material, mkdocstrings) on top of the dev install.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,docs]'
	touch $(DOCS_STAMP)

# The release check: an sdist and a wheel built (the wheel from the sdist, as `python -m build` does) into a
# fresh temporary directory, removed on exit, and their metadata checked by twine. The pytest run that follows
# gets the directory as EVOLINK_DIST: tests/test_release.py installs that wheel into a fresh venv and runs
# `evolink demo` from it. Used as the start of a shell line: `$(BUILD_DIST) && ... "$$dist" ...`.
BUILD_DIST = dist=$$(mktemp -d) && trap 'rm -rf "$$dist"' EXIT && \
	$(BIN)/python -m build --quiet --outdir "$$dist" . && \
	$(BIN)/twine check --strict "$$dist"/*.whl "$$dist"/*.tar.gz

# The site is built with warnings as errors: a broken link, anchor or API reference fails it. Not --quiet:
# it hides the warnings from --strict too, and a broken link then passes.
MKDOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP) $(DOCS_STAMP) $(SYSTEM_STAMP)
	$(BIN)/ruff check evolink_async tests benchmarks examples tools
	$(BIN)/mypy --strict evolink_async
	$(BIN)/lint-imports
	$(MKDOCS)
	$(BUILD_DIST) && EVOLINK_DIST="$$dist" $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check evolink_async tests benchmarks examples tools
	$(BIN)/ruff format --check evolink_async tests benchmarks examples tools

imports: $(STAMP)
	$(BIN)/lint-imports

# Both type checkers users run, on the package and on the user code in tests/typing (make test runs these in
# tests/test_typing.py).
typecheck: $(STAMP)
	$(BIN)/mypy --strict evolink_async
	$(BIN)/mypy --strict --warn-unused-ignores tests/typing
	$(BIN)/pyright --pythonpath $(BIN)/python
	$(BIN)/pyright --pythonpath $(BIN)/python -p tests/typing/pyrightconfig.json

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The documentation site into site/ (open site/index.html).
docs: $(DOCS_STAMP)
	$(MKDOCS)

release-check: $(STAMP)
	$(BUILD_DIST) && EVOLINK_DIST="$$dist" $(BIN)/python -m pytest -p no:cacheprovider tests/test_release.py

demo: $(STAMP)
	$(BIN)/evolink demo

# The chaos suite at full size (make test runs a slice): 1,500 inputs with a fifth of all responses faulted,
# then a batch process killed with SIGKILL 20 times and rerun.
chaos: $(STAMP)
	CHAOS_INPUTS=1500 CHAOS_REPORT=docs/chaos-figures.md $(BIN)/python -m pytest -s -p no:cacheprovider tests/test_chaos.py
	EVOLINK_CRASH_KILLS=20 $(BIN)/python -m pytest -p no:cacheprovider tests/test_journal.py -k sigkill

# The benchmarks need the `bench` extra (openai-python, for batch.py's comparison).
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,bench]'
	touch $(BENCH_STAMP)

# Each benchmark exits 1 when it misses a target; run them all and fail at the end if any did.
# Results go to benchmarks/results/*.json; plot.py draws them into docs/img (the benchmarks page shows them).
bench: $(BENCH_STAMP) $(SYSTEM_STAMP)
	mkdir -p benchmarks/results; status=0; \
	$(BIN)/python benchmarks/polling.py --also-fixed 1,2,5,10 --json benchmarks/results/polling.json || status=1; \
	$(BIN)/python benchmarks/batch.py --json benchmarks/results/batch.json || status=1; \
	$(BIN)/python benchmarks/callbacks.py || status=1; \
	for b in pace scale coordinated ray_scale; do \
		$(BIN)/python benchmarks/$$b.py --json benchmarks/results/$$b.json || status=1; \
	done; \
	$(BIN)/python benchmarks/plot.py benchmarks/results docs/img || status=1; \
	exit $$status

# A smoke test of the new benchmarks (a tiny slice of each, about 30 s): figures only, exits 0 unless one breaks.
# It needs no `bench` extra: without openai-python, batch.py --quick leaves that client out.
bench-quick: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/python benchmarks/pace.py --quick
	$(BIN)/python benchmarks/batch.py --quick
	$(BIN)/python benchmarks/scale.py --quick
	$(BIN)/python benchmarks/coordinated.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
