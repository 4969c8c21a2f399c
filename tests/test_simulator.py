"""The simulator as a user meets it: standalone process, files it serves, its counters."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib

import aiohttp
import anyio
import pytest

import evolink_async as evo
import evolink_async.testing as testing
import evolink_async.testing._png
from evolink_async.testing import FakeEvolink, Fault, TaskPlan


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(("size", "wide"), [("16:9", True), ("9:16", False), ("1:1", None)])
async def test_result_png_has_requested_aspect_ratio(
    fake: FakeEvolink, client: evo.AsyncClient, size: str, wide: bool | None
) -> None:
    task = await client.generate("a lighthouse [duration:0.1]", size=size)
    async with aiohttp.ClientSession() as session, session.get(task.results[0]) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        width, height = png_size(await resp.read())
    if wide is None:
        assert width == height
    else:
        assert (width > height) is wide
    a, b = (int(x) for x in size.split(":"))
    assert abs(width / height - a / b) < 0.1


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Width, height, pixel rows and palette size of a PNG the simulator wrote (filter 0, 8-bit), CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    stride = width * (3 if colour_type == 2 else 1)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (stride + 1)
    rows = [raw[y * (stride + 1) : (y + 1) * (stride + 1)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, [row[1:] for row in rows], len(chunks.get(b"PLTE", b"")) // 3


async def test_result_png_is_a_512_pixel_picture_drawn_from_the_prompt(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    tasks = [await client.generate(f"{prompt} [duration:0.05]", size="16:9") for prompt in ("a fox", "a fox", "an owl")]
    async with aiohttp.ClientSession() as session:
        bodies = []
        for task in tasks:
            async with session.get(task.results[0]) as resp:
                bodies.append(await resp.read())
    width, height, rows, colours = decode_png(bodies[0])
    assert (width, height) == (512, 288)
    assert colours > 50  # a gradient with shapes and text, not one flat colour
    assert len(set(rows)) > 100  # rows differ: something is drawn, top to bottom
    assert bodies[0] == bodies[1]  # the same prompt and size: the same picture
    assert bodies[0] != bodies[2]


@pytest.mark.parametrize("size", ["1:1", "9:16", "21:9", "1:100", "auto", None])
def test_pictures_of_every_shape_decode_with_512_pixels_on_the_long_side(size: str | None) -> None:
    long_prompt = "a very long prompt " * 40 + "[fail:x] é ✓ 😀"
    width, height, rows, colours = decode_png(testing._png.picture_png(long_prompt, size))
    assert max(width, height) == 512
    assert len(rows) == height
    assert all(len(row) == width for row in rows)
    assert max(max(row) for row in rows) < colours  # every index is in the palette


async def test_credits_are_reserved_charged_and_refunded(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    before = (await client.credits()).remaining
    assert before == 1000.0
    await client.generate("ok [duration:0.1]", quality="2K")
    with pytest.raises(evo.TaskFailedError):
        await client.generate("bad [fail:service_error] [duration:0.1]")
    after = (await client.credits()).remaining
    assert after is not None
    # The completed task is charged; the failed one refunded.
    assert after == pytest.approx(before - 1.6)


async def test_counters_see_each_request_kind(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    fake.inject(Fault(route="credits", kind="status", status=503))
    await client.credits()
    task = await client.submit("x [duration:0.1]")
    await client.get_task(task.id)
    assert fake.stats.create_requests == 1
    assert fake.stats.creates == 1
    assert fake.stats.credits_requests == 2
    assert fake.stats.read_requests == 1
    assert fake.stats.reads[task.id] == 1
    assert fake.stats.faults_applied == 1


async def test_plan_callable_decides_fate(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    fake.plan = lambda body: TaskPlan(duration=0.1, outcome="failed", error_code="resource_exhausted")
    with pytest.raises(evo.TaskFailedError) as info:
        await client.generate("anything")
    assert info.value.code == "resource_exhausted"
    assert info.value.retryable


def test_public_names_of_the_testing_package_exist() -> None:
    for name in testing.__all__:
        assert getattr(testing, name) is not None


async def test_standalone_simulator_serves_a_client() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; reads happen in a worker thread
        [sys.executable, "-m", "evolink_async.testing", "--port", "0", "--duration", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        key_line = await anyio.to_thread.run_sync(proc.stdout.readline)
        key = key_line.split(":", 1)[1].strip()
        async with evo.AsyncClient(key, base_url=match.group(1)) as client:
            task = await client.generate("standalone")
        assert task.status is evo.TaskStatus.COMPLETED
        assert task.results
    finally:
        proc.terminate()
        _out, err = await anyio.to_thread.run_sync(proc.communicate)
    assert "Traceback" not in err
