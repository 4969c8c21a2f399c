"""evolink_async.ray on a real local Ray cluster (one for the session) against the simulator in this process.

The simulator serves on loopback from the test's event loop while Ray runs in a worker thread; its own counters
(creates, replays, the peak of tasks running, the time of every request) are the evidence.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink, TaskPlan

from conftest import FAST_POLL, FAST_RETRY

ray = pytest.importorskip("ray")
evo_ray = pytest.importorskip("evolink_async.ray")

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray cluster for every test of the session, on this machine's 2 cores, offline."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray must not try to reach the internet
    temp = tmp_path_factory.mktemp("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(temp),
        log_to_driver=False,
        configure_logging=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


def _plan(duration: float) -> Callable[[dict[str, Any]], TaskPlan]:
    return lambda body: TaskPlan(duration=duration)


def _generate(fake: FakeEvolink, ds: Any, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "compute": ray.data.ActorPoolStrategy(size=2),
        "num_cpus": 0.25,
        "batch_size": 25,
    }
    settings.update(options)
    return evo_ray.generate(ds, **settings)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Ray's blocking calls in a thread: the simulator keeps serving on this loop meanwhile."""
    return await anyio.to_thread.run_sync(fn)


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_200_rows_on_two_actors_hold_the_shared_cap_and_pace_and_a_rerun_creates_nothing(
    ray_cluster: None, tmp_path: Path
) -> None:
    rows = [{"custom_id": f"row-{i}", "prompt": f"a cat number {i}"} for i in range(200)]
    rate, burst = 150.0, 10
    limits = evo.Limits(max_in_flight=8, requests_per_second=rate, burst=burst)
    async with FakeEvolink(plan=_plan(0.3)) as fake:
        out = tmp_path / "outcomes"

        def run() -> None:
            ds = ray.data.from_items(rows, override_num_blocks=8)
            _generate(fake, ds, job="cap-and-pace", limits=limits).write_parquet(str(out))

        await _in_thread(run)
        table = pq.read_table(out)
        assert table.num_rows == 200
        assert sorted(table.column("custom_id").to_pylist()) == sorted(r["custom_id"] for r in rows)
        assert all(table.column("ok").to_pylist()), table.column("error_message").to_pylist()
        assert fake.stats.creates == 200
        # The simulator's own peak of tasks running: 8 across both actors (each alone would allow 8).
        assert fake.stats.max_running <= 8
        times = [r.time for r in fake.stats.requests_seen if r.path.startswith("/v1/")]
        assert _max_in_window(times, 1.0) <= rate * 1.0 + burst
        ids = dict(zip(table.column("custom_id").to_pylist(), table.column("task_id").to_pylist(), strict=True))

        # The same job again: every input is awaited by its task id or replayed by its key; nothing is created.
        rerun = await _in_thread(lambda: _generate(fake, ray.data.from_items(rows), job="cap-and-pace").take_all())
        assert fake.stats.creates == 200
        assert {r["custom_id"]: r["task_id"] for r in rerun} == ids
        assert all(r["ok"] for r in rerun)
