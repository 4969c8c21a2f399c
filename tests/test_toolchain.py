"""The locked toolchain (docs/install.md): the extras and groups the docs list are pyproject.toml's, and a lock
out of date with pyproject.toml stops `make` with one line saying what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the tree's checks run on the lock's Python

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INSTALL_DOC = (ROOT / "docs" / "install.md").read_text()
UV = ROOT / ".tools" / "bin" / "uv"


def _rows(doc: str) -> dict[str, str]:
    """The rows of the doc's tables keyed by their first cell's `name`, lowercased."""
    return {m[1]: m[0].lower() for m in re.finditer(r"^\| `([\w-]+)` \|.*$", doc, re.MULTILINE)}


def _names(requirements: list[str | dict[str, str]]) -> list[str]:
    names = []
    for item in requirements:
        if isinstance(item, dict):
            names.append(f"`{item['include-group']}`")
        else:
            names.append(re.split(r"[\[<>=~!; ]", item, maxsplit=1)[0].lower())
    return names


@pytest.mark.parametrize(
    "table",
    [
        *(("extra", n, r) for n, r in PYPROJECT["project"]["optional-dependencies"].items()),
        *(("group", n, r) for n, r in PYPROJECT["dependency-groups"].items()),
    ],
    ids=lambda t: f"{t[0]}-{t[1]}",
)
def test_install_doc_lists_every_package_of_each_extra_and_group(table: tuple[str, str, list[str]]) -> None:
    _, name, requirements = table
    row = _rows(INSTALL_DOC).get(name)
    assert row is not None, f"docs/install.md has no row for `{name}`"
    assert [n for n in _names(requirements) if n not in row] == []


def test_install_doc_lists_no_extra_or_group_that_does_not_exist() -> None:
    declared = {*PYPROJECT["project"]["optional-dependencies"], *PYPROJECT["dependency-groups"]}
    assert set(_rows(INSTALL_DOC)) - declared == set()


@pytest.mark.skipif(not UV.exists(), reason="needs the Makefile's pinned uv (.tools/bin/uv): run `make test`")
def test_a_lock_out_of_date_with_pyproject_fails_make_with_one_line(tmp_path: Path) -> None:
    for name in ("Makefile", "uv.lock", "README.md", "evolink_async/_version.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".tools").symlink_to(ROOT / ".tools")
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('cli = ["rich>=13.3"]', 'cli = ["rich>=13.4"]'))

    stale = subprocess.run(["make", "-s", "lock-check"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert stale.returncode != 0
    assert stale.stdout.strip() == "uv.lock is out of date with pyproject.toml: run 'make lock'", stale.stdout

    (tmp_path / "pyproject.toml").write_text(pyproject)
    fresh = subprocess.run(["make", "-s", "lock-check"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert (fresh.returncode, fresh.stdout) == (0, ""), fresh.stdout + fresh.stderr
