#!/usr/bin/env bash
# `make test-deps`: the package's behaviour tests, extras included, at one end of its dependency ranges on one
# Python. Usage: tools/test-deps.sh UV PYTHON_VERSION lowest-direct|highest
#   lowest-direct: every range in pyproject.toml at its lower bound (the floor we declare must really work);
#   highest:       the newest releases on the index today (what a user installing now gets), and the package
#                  type-checked under them (mypy --strict and pyright), not only under the lock.
# The interpreter is one the machine already has (pyenv's, or pythonX.Y on PATH); uv never downloads one.
set -euo pipefail
uv=$1 version=$2 resolution=$3
export UV_PYTHON_DOWNLOADS=never
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
python=$(ls -d "$root"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
[ -n "$python" ] || python=$(command -v "python$version" || true)
if [ -z "$python" ]; then echo "test-deps: no Python $version on this machine"; exit 1; fi

env=.deps/$version-$resolution
rm -rf "$env"
"$uv" venv --quiet --python "$python" "$env"
groups=(--group test)
[ "$resolution" = highest ] && groups+=(--group check)
"$uv" pip install --quiet --python "$env/bin/python" --resolution "$resolution" -e '.[cli,redis,otel,ray]' "${groups[@]}"
echo "== Python $version, $resolution: $("$env/bin/python" -c 'import platform; print(platform.python_version())')"
"$uv" pip freeze --python "$env/bin/python" \
	| grep -iE '^(aiohttp|attrs|cattrs|anyio|rich|redis|opentelemetry-(api|instrumentation-aiohttp-client))==' \
	| tr '\n' ' '; echo
if [ "$resolution" = highest ]; then
	"$env/bin/mypy" --strict --python-version "$version" evolink_async
	"$env/bin/pyright" --pythonpath "$env/bin/python" --pythonversion "$version" evolink_async
fi
# The behaviour tests: all but the checks of the tree itself (typing, the release build), the browser and the
# live API. -p no:cacheprovider: the runs share the checkout.
"$env/bin/python" -m pytest -q -p no:cacheprovider \
	--ignore tests/test_typing.py --ignore tests/test_release.py --ignore tests/test_contact_sheet.py \
	--ignore tests/test_live.py ${PYTEST_ARGS:-}
