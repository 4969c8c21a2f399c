"""The release check: the built distributions carry what the package needs, and the wheel works on its own.

`make test` (and `make release-check`) build an sdist and a wheel into a temporary directory, check them with
`twine check --strict`, and pass the directory here as ``EVOLINK_DIST``. The wheel is installed into a fresh
virtual environment (no editable install) and run from a temporary directory, so nothing of the source tree
is on ``sys.path``: a file missing from the wheel (``py.typed``, the simulator's media) shows here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import evolink_async
from evolink_async._cli import DEMO_PROMPTS

ROOT = Path(__file__).resolve().parent.parent
DIST = os.environ.get("EVOLINK_DIST")
# Files the package reads at run time or that its users' type checkers need, by their path in the wheel.
PACKAGE_DATA = (
    "evolink_async/py.typed",
    "evolink_async/testing/media/sample.mp4",
    "evolink_async/testing/media/sample.mp3",
)

pytestmark = pytest.mark.skipif(
    DIST is None, reason="needs built distributions: `make release-check` or `make test` builds them (EVOLINK_DIST)"
)


def _one(pattern: str) -> Path:
    assert DIST is not None
    found = sorted(Path(DIST).glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _one("*.whl")


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and its `cli` extra installed from the lock, nothing else of ours."""
    where = tmp_path_factory.mktemp("release") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # The wheel's dependencies at the versions uv.lock pins (the Makefile exports them beside the wheel).
    constraints = ["--constraint", str(wheel.parent / "constraints.txt")]
    subprocess.run([*pip, f"{wheel}[cli]", *constraints], check=True, cwd=where.parent, env=_clean_env())
    return where


def _clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "PYTHONHOME"}}


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wheel_carries_py_typed_and_the_simulators_media(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        metadata = archive.read(next(name for name in sizes if name.endswith(".dist-info/METADATA"))).decode()
    assert [name for name in PACKAGE_DATA if name not in sizes] == []
    for name in PACKAGE_DATA[1:]:
        assert sizes[name] == (ROOT / name).stat().st_size, name
    version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
    assert version is not None
    assert version[1] == evolink_async.__version__
    assert "Provides-Extra: cli" in metadata
    assert not any(name.startswith("tests/") for name in sizes)


def test_the_sdist_carries_the_package_data_and_the_changelog() -> None:
    sdist = _one("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert [name for name in (*PACKAGE_DATA, "CHANGELOG.md", "README.md", "pyproject.toml") if name not in names] == []


def test_the_installed_wheel_runs_the_demo_from_outside_the_source_tree(venv: Path, tmp_path: Path) -> None:
    where = _run(venv, "python", "-c", "import evolink_async; print(evolink_async.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the installed copy, not ROOT's

    demo = _run(venv, "evolink", "demo", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    images = list((tmp_path / "out").glob("*.png"))
    scripted_to_fail = [prompt for prompt in DEMO_PROMPTS if "[fail" in prompt or "[cancel" in prompt]
    assert len(images) == len(DEMO_PROMPTS) - len(scripted_to_fail)
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)


VIDEO_AND_SONG = """
import anyio
import evolink_async as evo
from evolink_async.testing import FakeEvolink

async def main() -> None:
    async with FakeEvolink() as fake, evo.AsyncClient(fake.api_key, base_url=fake.base_url) as client:
        video = await client.generate(evo.VideoRequest("a boat [duration:0.2]", model="veo3.1-fast"))
        song = await client.generate(evo.AudioRequest("a tune [duration:0.2]", model="suno-v4.5"))
        for path in await client.download(video, "media") + await client.download(song, "media"):
            print(path)

anyio.run(main)
"""


def test_the_installed_simulator_serves_its_video_and_song(venv: Path, tmp_path: Path) -> None:
    run = _run(venv, "python", "-c", VIDEO_AND_SONG, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    saved = {Path(line).suffix: (tmp_path / line).read_bytes() for line in run.stdout.split()}
    assert saved == {
        ".mp4": (ROOT / "evolink_async/testing/media/sample.mp4").read_bytes(),
        ".mp3": (ROOT / "evolink_async/testing/media/sample.mp3").read_bytes(),
    }
