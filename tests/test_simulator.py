"""The simulator as a user meets it: standalone process, files it serves, its counters."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

import aiohttp
import anyio
import pytest

import evolink_async as evo
import evolink_async.testing as testing
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
