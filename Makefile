PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test-ray system-deps install-test install-demo install-docs install-bench lock lock-check test test-deps lint imports \
	typecheck chaos pytest docs release-check demo bench bench-quick clean

# The toolchain is locked: uv.lock pins every package the Makefile installs (tests, demo, docs, bench, release
# check), and uv installs exactly those versions. uv itself comes from PyPI at this pinned version into .tools/
# (its own small venv), unless that copy is already there. `make lock` refreshes the lock on purpose; no other
# target changes it.
UV_VERSION := 0.13.9
UV := .tools/bin/uv
# Interpreters come from the machine, never downloaded (there may be no internet but the package index).
export UV_PYTHON_DOWNLOADS := never
UV_SYNC = $(UV) sync --locked --inexact --python $(PYTHON)

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# A lock out of date with pyproject.toml fails here, with one line saying what to do.
lock-check: $(UV)
	@out=$$($(UV) lock --check --python $(PYTHON) 2>&1) || { \
		case "$$out" in *"needs to be updated"*) echo "uv.lock is out of date with pyproject.toml: run 'make lock'";; \
		*) echo "$$out";; esac; exit 1; }

lock: $(UV)
	$(UV) lock --python $(PYTHON)

# Each target syncs only what it needs into the one .venv, --inexact so that none removes what another installed
# (`make demo` after `make test` keeps the test tools; `make test` after `make demo` keeps the CLI).
install-test: lock-check
	$(UV_SYNC) --all-extras --group dev --group docs

install-demo: lock-check
	$(UV_SYNC) --extra cli

install-docs: lock-check
	$(UV_SYNC) --all-extras --group docs

install-bench: lock-check
	$(UV_SYNC) --all-extras --group dev --group bench

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

# The release check: an sdist and a wheel built (the wheel from the sdist, as `python -m build` does, with the
# locked hatchling of .venv rather than a fresh download: --no-isolation) into a fresh temporary directory, removed
# on exit, and their metadata checked by twine. The pytest run that follows gets the directory as EVOLINK_DIST:
# tests/test_release.py installs that wheel into a fresh venv, its dependencies pinned by the lock (constraints.txt,
# exported from uv.lock beside it), and runs `evolink demo` from it.
# Used as the start of a shell line: `$(BUILD_DIST) && ... "$$dist" ...`.
BUILD_DIST = dist=$$(mktemp -d) && trap 'rm -rf "$$dist"' EXIT && \
	$(BIN)/python -m build --quiet --no-isolation --outdir "$$dist" . && \
	$(BIN)/twine check --strict "$$dist"/*.whl "$$dist"/*.tar.gz && \
	$(UV) export --quiet --locked --no-emit-project --extra cli --no-default-groups --no-hashes \
		--format requirements.txt --output-file "$$dist/constraints.txt"

# The site is built with warnings as errors: a broken link, anchor or API reference fails it. Not --quiet:
# it hides the warnings from --strict too, and a broken link then passes.
MKDOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: install-test $(SYSTEM_STAMP)
	$(BIN)/ruff check evolink_async tests benchmarks examples tools
	$(BIN)/mypy --strict evolink_async
	$(BIN)/lint-imports
	$(MKDOCS)
	$(BUILD_DIST) && EVOLINK_DIST="$$dist" $(BIN)/python -m pytest -m "not ray"

# The Ray Data tests (tests/test_ray.py, marker `ray`) on a local Ray cluster: out of `make test` for now, since
# starting Ray's actors on 2 shared cores took minutes and their jobs timed out in the fresh-clone run.
test-ray: install-test
	$(BIN)/python -m pytest -m ray tests/test_ray.py

# The dependency ranges, at both ends (not part of `make test`; see docs/install.md): the behaviour tests, extras
# included, with the lowest versions pyproject.toml allows and with the newest on the index today, on every Python
# the package supports (requires-python: 3.11 up) that the machine has (pyenv's or pythonX.Y on PATH). Each run gets its own venv under .deps/.
DEPS_PYTHONS ?= 3.11 3.12 3.13

test-deps: $(UV) $(SYSTEM_STAMP)
	@status=0; for py in $(DEPS_PYTHONS); do for end in lowest-direct highest; do \
		tools/test-deps.sh $(UV) $$py $$end || { status=1; echo "== FAILED: Python $$py, $$end"; }; \
	done; done; exit $$status

lint: install-test
	$(BIN)/ruff check evolink_async tests benchmarks examples tools
	$(BIN)/ruff format --check evolink_async tests benchmarks examples tools

imports: install-test
	$(BIN)/lint-imports

# Both type checkers users run, on the package and on the user code in tests/typing (make test runs these in
# tests/test_typing.py).
typecheck: install-test
	$(BIN)/mypy --strict evolink_async
	$(BIN)/mypy --strict --warn-unused-ignores tests/typing
	$(BIN)/pyright --pythonpath $(BIN)/python
	$(BIN)/pyright --pythonpath $(BIN)/python -p tests/typing/pyrightconfig.json

pytest: install-test
	$(BIN)/python -m pytest

# The documentation site into site/ (open site/index.html).
docs: install-docs
	$(MKDOCS)

release-check: install-test
	$(BUILD_DIST) && EVOLINK_DIST="$$dist" $(BIN)/python -m pytest -p no:cacheprovider tests/test_release.py

demo: install-demo
	$(BIN)/evolink demo

# The chaos suite at full size (make test runs a slice): 1,500 inputs with a fifth of all responses faulted,
# then a batch process killed with SIGKILL 20 times and rerun.
chaos: install-test
	CHAOS_INPUTS=1500 CHAOS_REPORT=docs/chaos-figures.md $(BIN)/python -m pytest -s -p no:cacheprovider tests/test_chaos.py
	EVOLINK_CRASH_KILLS=20 $(BIN)/python -m pytest -p no:cacheprovider tests/test_journal.py -k sigkill

# The benchmarks need the `bench` group (openai-python for batch.py's comparison, matplotlib for plot.py).
# Each benchmark exits 1 when it misses a target; run them all and fail at the end if any did.
# Results go to benchmarks/results/*.json; plot.py draws them into docs/img (the benchmarks page shows them).
bench: install-bench $(SYSTEM_STAMP)
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
bench-quick: install-test $(SYSTEM_STAMP)
	$(BIN)/python benchmarks/pace.py --quick
	$(BIN)/python benchmarks/batch.py --quick
	$(BIN)/python benchmarks/scale.py --quick
	$(BIN)/python benchmarks/coordinated.py --quick

clean:
	rm -rf $(VENV) .tools .deps .mypy_cache .pytest_cache .ruff_cache site
