"""evolink_async.ray on a real local Ray cluster (one for the session) against the simulator in this process.

The simulator serves on loopback from the test's event loop while Ray runs in a worker thread; its own counters
(creates, replays, the peak of tasks running, the time of every request) are the evidence.
"""

from __future__ import annotations

import functools
import gc
import os
import pickle
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import FAST_POLL, FAST_RETRY

import evolink_async as evo
from evolink_async._ray_rows import block_inputs
from evolink_async._ray_state import SharedState
from evolink_async._requests import check_idempotency_key
from evolink_async.testing import FakeEvolink, TaskPlan, directive_plan
from evolink_async.testing._validation import price_of

ray = pytest.importorskip("ray")
evo_ray = pytest.importorskip("evolink_async.ray")

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray cluster for every test of the session, on this machine's 2 cores, offline."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray must not try to reach the internet
    # Ray starts its workers at nice 15: on a machine busy with other work they would wait behind it, and the
    # test's timings with them. Test workers run at the same priority as the test.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 - Ray reads this exact (lowercase) name
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
        # Ray's shutdown terminates the processes it started and waits a while for each; on a loaded machine it
        # may give up waiting and drop a Popen of a process still exiting, whose __del__ then warns. Raised inside
        # Ray, not ours to fix: ignored here only, around the shutdown and the collection that follows it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"subprocess \d+ is still running", category=ResourceWarning)
            ray.shutdown()
            gc.collect()


def _plan(duration: float) -> Callable[[dict[str, Any]], TaskPlan]:
    return lambda body: TaskPlan(duration=duration)


def _generate(fake: FakeEvolink, ds: Any, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "compute": evo_ray.default_compute(),
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


async def test_200_rows_on_two_actors_never_exceed_the_shared_in_flight_cap_and_a_rerun_creates_nothing(
    ray_cluster: None, tmp_path: Path
) -> None:
    rows = [{"custom_id": f"row-{i}", "prompt": f"a cat number {i}"} for i in range(200)]
    rows[7]["prompt"] = "a cat that fails [fail:content_policy_violation]"
    rows[9]["prompt"] = None  # not a prompt: an outcome of its own, nothing sent
    limits = evo.Limits(max_in_flight=8, requests_per_second=None)
    async with FakeEvolink(plan=functools.partial(directive_plan, default_duration=0.1)) as fake:
        out = tmp_path / "outcomes"

        def run() -> None:
            ds = ray.data.from_items(rows, override_num_blocks=8)
            _generate(fake, ds, job="cap", limits=limits).write_parquet(str(out))

        await _in_thread(run)
        table = {r["custom_id"]: r for r in pq.read_table(out).to_pylist()}
        assert sorted(table) == sorted(r["custom_id"] for r in rows)  # one row per input
        assert fake.stats.creates == 199
        # The simulator's own peak of tasks running: 8 across both actors (each alone would allow 8).
        assert fake.stats.max_running <= 8
        failed, refused = table.pop("row-7"), table.pop("row-9")
        assert (failed["status"], failed["error_class"], failed["error_code"]) == (
            "failed",
            "TaskFailedError",
            "content_policy_violation",
        )
        assert failed["task_id"]
        assert (refused["status"], refused["error_class"], refused["task_id"]) == (
            "not_submitted",
            "ValidationError",
            None,
        )
        assert all(r["ok"] and r["status"] == "completed" and r["result_urls"] for r in table.values())
        ids = {custom_id: r["task_id"] for custom_id, r in table.items()}

        # The same job again: every input is awaited by its task id; nothing is created.
        rerun = await _in_thread(
            lambda: _generate(fake, ray.data.from_items(rows), job="cap", limits=limits).take_all()
        )
        assert fake.stats.creates == 199
        assert {r["custom_id"]: r["task_id"] for r in rerun if r["ok"]} == ids


async def test_two_actors_share_one_pace_and_one_budget(ray_cluster: None) -> None:
    rows = [{"custom_id": f"row-{i}", "prompt": f"a dog number {i}"} for i in range(200)]
    rate, burst = 100.0, 10
    limits = evo.Limits(max_in_flight=64, requests_per_second=rate, burst=burst)
    async with FakeEvolink(plan=_plan(0.05)) as fake:
        price = price_of({"prompt": "x", "model": evo.ImageRequest("x").model})
        budget = 120 * price

        def run() -> list[dict[str, Any]]:
            ds = ray.data.from_items(rows, override_num_blocks=8)
            return list(_generate(fake, ds, job="pace", limits=limits, budget=budget).take_all())

        out = await _in_thread(run)
        assert len(out) == 200
        # One budget for both actors: 120 tasks (each actor alone would have spent it all).
        assert fake.stats.creates == 120
        assert sum(r["ok"] for r in out) == 120
        assert {r["error_class"] for r in out if not r["ok"]} == {"BudgetExceededError"}
        # One pace for both actors, in every one-second window of the simulator's own clock.
        times = sorted(r.time for r in fake.stats.requests_seen if r.path.startswith("/v1/"))
        assert _max_in_window(times, 1.0) <= rate * 1.0 + burst
        assert times[-1] - times[0] >= (len(times) - burst) / rate * 0.9


async def test_an_actor_killed_mid_block_is_retried_by_ray_creates_each_row_once_and_saves_its_files(
    ray_cluster: None, tmp_path: Path
) -> None:
    rows = [{"custom_id": f"row-{i}", "prompt": f"a bird number {i}"} for i in range(100)]
    rows[30]["prompt"] = "a bird that kills its actor"
    flag = str(tmp_path / "killed")

    def request(row: dict[str, Any]) -> str:
        # Once in the whole run (the flag file says whether it happened): die 0.5 s into this block, while its
        # tasks run; Ray restarts the actor and runs the block again.
        if "kills" in row["prompt"] and not os.path.exists(flag):
            with open(flag, "w") as f:
                f.write(str(os.getpid()))
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return str(row["prompt"])

    async with FakeEvolink(plan=_plan(1.0)) as fake:

        def run() -> list[dict[str, Any]]:
            ds = ray.data.from_items(rows, override_num_blocks=4)
            # The files go to a path of a pyarrow file system (object storage in production).
            saved = _generate(
                fake, ds, job="kill", requests=request, download_to=str(files), filesystem=pafs.LocalFileSystem()
            )
            return list(saved.take_all())

        files = tmp_path / "files"
        out = await _in_thread(run)
        assert os.path.exists(flag)
        assert len(out) == 100
        assert all(r["ok"] for r in out), [r["error_message"] for r in out if not r["ok"]]
        assert fake.stats.creates == 100  # exactly one per row, although one block ran twice
        assert len({r["task_id"] for r in out}) == 100
        # Named from the custom_id: one file per row, in the directory given.
        assert sorted(p.name for p in files.iterdir()) == sorted(f"row-{i}-0.png" for i in range(100))
        assert all(r["files"] == [f"{files}/{r['custom_id']}-0.png"] for r in out)


# -- without a cluster: keys, the shared state, settings ------------------------------------------------------


def _keys(rows: list[dict[str, Any]], job: str = "job", **options: Any) -> list[str]:
    block = block_inputs(job, rows, "prompt", {}, names_files=options.get("names_files", False))
    return block.keys


def test_two_identical_rows_without_custom_id_are_two_keys_and_the_same_block_gives_the_same_keys() -> None:
    rows = [{"prompt": "a cat"}, {"prompt": "a cat"}, {"prompt": "a dog"}]
    keys = _keys(rows)
    assert len(set(keys)) == 3
    assert _keys([dict(r) for r in rows]) == keys  # Ray runs the block again: the same keys
    assert all(check_idempotency_key(k) == k for k in keys)
    assert set(_keys(rows, job="other")).isdisjoint(keys)


def test_a_custom_id_key_follows_the_row_wherever_it_is_and_changes_when_the_row_is_edited() -> None:
    rows = [{"custom_id": "a", "prompt": "a cat"}, {"custom_id": "b", "prompt": "a cat"}]
    first = dict(zip("ab", _keys(rows), strict=True))
    moved = [{"custom_id": "z", "prompt": "another"}, rows[1], rows[0]]
    assert _keys(moved)[1:] == [first["b"], first["a"]]  # another block, another place: the same key
    edited = _keys([{"custom_id": "a", "prompt": "a cat, edited"}])
    assert edited[0] != first["a"]  # a new task, not an idempotency_conflict


def test_bad_rows_are_outcomes_of_their_own_naming_the_field() -> None:
    rows = [
        {"custom_id": "a", "prompt": "x"},
        {"custom_id": "a", "prompt": "y"},
        {"custom_id": "../etc", "prompt": "z"},
        {"custom_id": 1.5, "prompt": "w"},
        {"prompt": 3},
    ]
    block = block_inputs("job", rows, "prompt", {}, names_files=True)
    assert block.errors[0] is None
    assert [getattr(e, "field", None) for e in block.errors[1:]] == ["custom_id", "custom_id", "custom_id", "prompt"]
    assert block.inputs[1:] == [None] * 4


async def test_the_shared_state_grants_the_cap_takes_back_expired_leases_and_keeps_one_budget_per_job() -> None:
    state = SharedState()
    leases = [await state.acquire_slot(2, 60.0, wait=0.01) for _ in range(3)]
    assert leases[0]
    assert leases[1]
    assert leases[2] is None
    await state.release([leases[0]])
    assert await state.acquire_slot(2, 0.01, wait=0.01)  # a lease its holder stops renewing...
    await anyio.sleep(0.02)
    assert await state.acquire_slot(2, 60.0, wait=0.01)  # ...comes back when it expires
    assert [await state.reserve("j", 4.0, 10.0) for _ in range(3)] == [True, True, False]
    assert await state.reserve("other job", 4.0, 10.0)
    assert [await state.take_token(10.0, 2, 1.0) for _ in range(2)] == [0.0, 0.0]
    assert await state.take_token(10.0, 2, 1.0) > 0


def test_settings_name_the_bad_field_and_never_show_the_key() -> None:
    for options, field in (({"job": ""}, "job"), ({"budget": -1}, "budget"), ({"fields": {"sise": "1:1"}}, "sise")):
        with pytest.raises(evo.ValidationError) as info:
            evo_ray.RaySettings(**{"job": "j", **options})
        assert info.value.field == field
    settings = evo_ray.RaySettings(job="j", api_key="sk-evo-secret-key-1234")
    assert "sk-evo-secret" not in repr(settings)
    assert pickle.loads(pickle.dumps(settings)).api_key.value == "sk-evo-secret-key-1234"


def test_the_dataset_is_checked_before_any_work(ray_cluster: None) -> None:
    ds = ray.data.from_items([{"text": "a cat"}])
    with pytest.raises(evo.ValidationError, match="no column 'prompt'"):
        evo_ray.generate(ds, job="j", api_key="sk-evo-x")
    with pytest.raises(evo.ValidationError) as info:
        evo_ray.generate(ray.data.from_items([{"prompt": "a", "status": "x"}]), job="j", api_key="sk-evo-x")
    assert info.value.field == "status"
    with pytest.warns(RuntimeWarning, match="no 'custom_id' column"):
        evo_ray.generate(ds, job="j", api_key="sk-evo-x", requests="text")
