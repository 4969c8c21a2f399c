"""Every ```python block of README.md and docs/*.md runs against the simulator, so no example rots.

A page's blocks run in order in one namespace, as a reader goes through them: a later block may use what an
earlier one defined (``evo``, ``prompts``). They run in a temporary working directory holding the files they
name (``prompts.txt``, ``photo.jpg``, ``logo.png``), with ``EVOLINK_API_KEY`` and ``EVOLINK_BASE_URL`` pointing
at a ``FakeEvolink``, so ``evo.AsyncClient()`` without arguments reaches it. The simulator runs on an event loop
of its own in a worker thread: a sync ``Client`` in a block may block the main thread without stopping it.

A block with a top-level ``await`` is compiled as the asyncio REPL compiles it (``PyCF_ALLOW_TOP_LEVEL_AWAIT``)
and run on a fresh event loop; a block without one runs as plain code (so ``anyio.run(main)`` works).

A block that cannot run (an illustration fragment) is preceded by ``<!-- not-run: reason -->``: the reason is
required, and there are few of them (``MAX_NOT_RUN``).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import attrs
import pytest

from evolink_async import _default
from evolink_async.testing import FakeEvolink, directive_plan

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
OPEN_FENCE = re.compile(r"^\s*```\s*(?P<lang>[\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run\b:?\s*(?P<reason>.*?)\s*-->$")
PYTHON_ALIASES = {"py", "python3", "pycon", "ipython"}  # fences that would escape the test: written `python`
MAX_NOT_RUN = 3
# Tasks finish in 0.3 s unless a prompt's directive says otherwise: the blocks' own waits stay short.
QUICK_PLAN = functools.partial(directive_plan, default_duration=0.3)


@attrs.frozen
class Block:
    page: Path
    line: int  # the line of the block's first line of code in the page, 1-based
    source: str
    not_run: str | None  # the reason given by a `<!-- not-run: reason -->` line just before the fence

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks whose language is ``python``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = OPEN_FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == "```"), len(lines))
        if opening["lang"] == "python":
            before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
            marker = NOT_RUN.match(before)
            found.append(
                Block(page, index + 2, "\n".join(lines[index + 1 : end]), marker["reason"] if marker else None)
            )
        index = end + 1
    return found


def run_block(block: Block, namespace: dict[str, object]) -> None:
    # Blank lines before the code, and the page's own path, put the page's lines in tracebacks.
    source = "\n" * (block.line - 1) + block.source
    code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


def png(width: int = 8, height: int = 8) -> bytes:
    """A small grey PNG, written by hand (no imaging library in the test's dependencies)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# JPEG's start-of-image and JFIF header: what the SDK and the simulator read to tell the type; nothing decodes it.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture
def simulator() -> Iterator[FakeEvolink]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(FakeEvolink(plan=QUICK_PLAN)) as fake,
    ):
        yield fake


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulator: FakeEvolink) -> Path:
    """The working directory of a page's blocks, with the files they name and the simulator's address."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVOLINK_API_KEY", simulator.api_key)
    monkeypatch.setenv("EVOLINK_BASE_URL", simulator.base_url)
    monkeypatch.delenv("EVOLINK_FILES_BASE_URL", raising=False)
    (tmp_path / "prompts.txt").write_text("a lighthouse at dusk\na red fox in the snow\n\na paper boat\n")
    (tmp_path / "photo.jpg").write_bytes(JPEG)
    (tmp_path / "logo.png").write_bytes(png())
    return tmp_path


def _pages_with_python() -> list[Path]:
    return [page for page in PAGES if blocks(page)]


@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda page: str(page.relative_to(ROOT)))
def test_the_python_blocks_of_a_page_run_against_the_simulator(page: Path, workdir: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        for block in blocks(page):
            if block.not_run is not None:
                continue
            run_block(block, namespace)
    finally:
        _default._close()  # the one-liner's client belongs to this page's simulator, as at a script's exit


def test_every_skipped_block_says_why_and_they_are_few() -> None:
    skipped = [block for page in PAGES for block in blocks(page) if block.not_run is not None]
    assert [block.where for block in skipped if not block.not_run] == [], "a not-run marker must give its reason"
    assert len(skipped) <= MAX_NOT_RUN, [f"{block.where}: {block.not_run}" for block in skipped]


def test_python_blocks_are_fenced_as_python_so_they_run() -> None:
    escaping = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in PAGES
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if (fence := OPEN_FENCE.match(line)) and fence["lang"] in PYTHON_ALIASES
    ]
    assert escaping == []


def test_the_blocks_are_found() -> None:
    # README's quickstart and a few pages: a change of fence style that hid them from the test would show here.
    found = {str(page.relative_to(ROOT)): len(blocks(page)) for page in PAGES}
    assert found["README.md"] >= 5
    assert sum(found.values()) >= 20
