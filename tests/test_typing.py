"""Typing from the user's side (issue 10, part 3), checked by both type checkers users run.

- ``tests/typing/*.py`` is user code — results, errors, outcomes, options, typed keywords, videos and songs,
  uploads, the sync client — under ``mypy --strict --warn-unused-ignores`` and under pyright in strict mode
  (``tests/typing/pyrightconfig.json``);
- the package itself under pyright (``[tool.pyright]`` in pyproject.toml; ``make test`` runs mypy on it).

A line of user code that a checker must reject ends with both ``# type: ignore[code]`` (mypy) and
``# pyright: ignore[rule]`` (pyright, which reads only its own markers there: ``enableTypeIgnoreComments`` is
off). Both checkers fail on a marker that is not needed (``--warn-unused-ignores``,
``reportUnnecessaryTypeIgnoreComment``), so a must-reject line that becomes accepted fails the check: the last
test shows it on a line that is wrongly marked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_CODE = ROOT / "tests" / "typing"
PYRIGHT_CONFIG = USER_CODE / "pyrightconfig.json"
MYPY_MARK = re.compile(r"# type: ignore\[[a-z-, ]+\]")
PYRIGHT_MARK = re.compile(r"# pyright: ignore\[[A-Za-z, ]+\]")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def _mypy(target: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return _run("mypy", "--strict", "--warn-unused-ignores", "--cache-dir", str(cache), str(target))


def _pyright(*args: str) -> subprocess.CompletedProcess[str]:
    # --pythonpath: the interpreter running the tests, whose site-packages hold the SDK and its dependencies.
    return _run("pyright", "--pythonpath", sys.executable, *args)


def test_user_code_type_checks_under_mypy_strict_and_each_marked_line_is_rejected(tmp_path: Path) -> None:
    proc = _mypy(USER_CODE, tmp_path / "mypy-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"no issues found in {len(list(USER_CODE.glob('*.py')))} source files" in proc.stdout


def test_user_code_type_checks_under_pyright_strict_and_each_marked_line_is_rejected() -> None:
    proc = _pyright("-p", str(PYRIGHT_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors" in proc.stdout


def test_the_package_type_checks_under_pyright() -> None:
    proc = _pyright("--project", str(ROOT / "pyproject.toml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_line_one_checker_must_reject_is_marked_for_the_other_too() -> None:
    unpaired = []
    for path in sorted(USER_CODE.glob("*.py")):
        with path.open("rb") as source:
            comments = [t for t in tokenize.tokenize(source.readline) if t.type == tokenize.COMMENT]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            comment = " ".join(t.string for t in comments if t.start[0] == number)  # comments, not docstrings
            if bool(MYPY_MARK.search(comment)) != bool(PYRIGHT_MARK.search(comment)):
                unpaired.append(f"{path.name}:{number}: {line.strip()}")
    assert unpaired == []


def test_a_marked_line_that_both_checkers_accept_fails_both_checks(tmp_path: Path) -> None:
    # Marked as if it were wrong, yet fine: were the SDK's types to loosen, its real lines would look like this.
    (tmp_path / "accepted.py").write_text(
        "import evolink_async as evo\n\n"
        'request = evo.ImageRequest("x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]\n',
        encoding="utf-8",
    )
    shutil.copy(PYRIGHT_CONFIG, tmp_path / "pyrightconfig.json")
    mypy = _mypy(tmp_path / "accepted.py", tmp_path / "mypy-cache")
    assert mypy.returncode == 1
    assert 'Unused "type: ignore" comment' in mypy.stdout
    pyright = _pyright("-p", str(tmp_path / "pyrightconfig.json"))
    assert pyright.returncode == 1
    assert "Unnecessary" in pyright.stdout
    assert "reportCallIssue" in pyright.stdout


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_an_unmarked_wrong_line_fails_the_check(tmp_path: Path, checker: str) -> None:
    (tmp_path / "wrong.py").write_text("import evolink_async as evo\n\nevo.Limits(max_in_fligth=5)\n", encoding="utf-8")
    shutil.copy(PYRIGHT_CONFIG, tmp_path / "pyrightconfig.json")
    if checker == "mypy":
        proc = _mypy(tmp_path / "wrong.py", tmp_path / "mypy-cache")
    else:
        proc = _pyright("-p", str(tmp_path / "pyrightconfig.json"))
    assert proc.returncode == 1
    assert "max_in_fligth" in proc.stdout
