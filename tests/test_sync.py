"""The sync Client against the simulator over real HTTP: in plain (sync) code, in threads sharing one client,
inside a running event loop, and a batch as a plain iterator. The simulator runs on an event loop of its own
in another thread here, as a real server would: a sync call blocks its caller's thread."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink

QUICK = "[duration:0.05] [eta:0] a cat"
FAST = {"poll": evo.PollPolicy(min_interval=0.02), "limits": evo.Limits(requests_per_second=None)}


@pytest.fixture
def sim() -> Iterator[FakeEvolink]:
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as fake:
        yield fake


def _client(fake: FakeEvolink, **options: Any) -> evo.Client:
    return evo.Client(fake.api_key, base_url=fake.base_url, **{**FAST, **options})


def test_generate_submit_wait_get_task_credits_and_download_without_await(sim: FakeEvolink, tmp_path: Path) -> None:
    with _client(sim) as client:
        task = client.generate(QUICK, size="16:9")
        assert task.status is evo.TaskStatus.COMPLETED
        assert sim.tasks[task.id].request["size"] == "16:9"
        submitted = client.submit(prompt=QUICK)
        assert client.wait(submitted).status is evo.TaskStatus.COMPLETED
        assert client.get_task(submitted.id).id == submitted.id
        assert client.credits().remaining is not None
        (path,) = client.download(task, tmp_path)
        assert path.read_bytes().startswith(b"\x89PNG")


def test_errors_are_the_same_as_the_async_clients(sim: FakeEvolink) -> None:
    with _client(sim) as client:
        with pytest.raises(evo.TaskFailedError) as info:
            client.generate("[duration:0.05] [eta:0] [fail:content_policy_violation] x")
        assert info.value.task_id in sim.tasks
        with pytest.raises(evo.ValidationError, match="prompt"):
            client.generate(size="1:1")


def test_generate_many_is_a_plain_iterator_and_breaking_out_stops_the_batch(sim: FakeEvolink) -> None:
    with _client(sim) as client:
        outcomes = list(client.generate_many([f"{QUICK} {i}" for i in range(6)], max_in_flight=3))
        assert sorted(o.index for o in outcomes) == list(range(6))
        assert all(o.ok for o in outcomes)
        for outcome in client.generate_many(f"{QUICK} endless {i}" for i in range(10_000)):
            assert outcome.ok
            break
        creates = sim.stats.creates
        assert creates < 100
        all_of_them = client.generate_all([f"{QUICK} again {i}" for i in range(3)])
        assert [o.index for o in all_of_them] == [0, 1, 2]


def test_break_out_of_a_generate_many_iterator_held_in_a_variable_sends_no_create_after_it(sim: FakeEvolink) -> None:
    # Issue 19: `it = client.generate_many(...)`; `for o in it: break` -> creates went from 23 to 33 in 8 s.
    pulled = 0
    seen: list[Any] = []

    def inputs() -> Iterator[str]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield f"[duration:{0.05 * (1 + i % 4):.2f}] [eta:0] break {i}"  # finishing at different reads

    def all_seen_final() -> bool:
        submitted = [e for e in seen if isinstance(e, evo.events.TaskSubmitted)]
        started = [e for e in seen if isinstance(e, evo.events.CreateStarted)]
        finished = [e for e in seen if isinstance(e, evo.events.TaskFinished)]
        return len(started) == len(submitted) == len(finished)

    unsubscribe = evo.events.subscribe(seen.append)
    try:
        with _client(sim) as client:
            it = client.generate_many(inputs(), max_in_flight=4)
            for _ in it:
                break
            at_break = pulled
            # Every task created so far ends and is seen final by the client: a batch still running would pull
            # (and create) the next input as soon as the first of them frees its slot.
            deadline = time.monotonic() + 10
            while pulled == at_break and not all_seen_final():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert pulled == at_break, "the batch went on pulling inputs after the break"
            creates = sim.stats.create_requests
            assert next(it).ok  # advancing again resumes it
            it.close()
        assert creates <= at_break
        assert sim.stats.create_requests <= pulled
    finally:
        unsubscribe()


def test_one_client_is_shared_by_many_threads(sim: FakeEvolink) -> None:
    results: list[evo.Task] = []
    with _client(sim) as client:

        def work(i: int) -> None:
            results.append(client.generate(f"{QUICK} thread {i}"))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(results) == 8
    assert all(t.status is evo.TaskStatus.COMPLETED for t in results)


def test_it_works_inside_a_running_event_loop_like_a_jupyter_cell(sim: FakeEvolink) -> None:
    async def cell() -> evo.Task:
        with _client(sim) as client:  # sync code called from async code, without nest_asyncio
            return client.generate(QUICK)

    assert asyncio.run(cell()).status is evo.TaskStatus.COMPLETED


def test_a_closed_client_says_so(sim: FakeEvolink) -> None:
    client = _client(sim)
    client.generate(QUICK)  # started on first use, without `with`
    client.close()
    client.close()  # idempotent
    with pytest.raises(evo.ClientStateError):
        client.generate(QUICK)


def test_an_async_client_used_in_a_second_event_loop_raises_client_state_error(sim: FakeEvolink) -> None:
    # The habit the sync client replaces: asyncio.run() twice on one AsyncClient died with aiohttp's
    # "Event loop is closed" and an unclosed session.
    client = evo.AsyncClient(sim.api_key, base_url=sim.base_url, **FAST)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.submit(QUICK)).id in sim.tasks
        with pytest.raises(evo.ClientStateError, match="another event loop"):
            asyncio.run(client.submit(QUICK))
    finally:
        first.run_until_complete(client.aclose())  # in the loop its connections belong to
        first.close()


def test_ctrl_c_during_a_sync_wait_cancels_it_names_the_task_and_leaves_the_client_working(
    sim: FakeEvolink,
) -> None:
    with _client(sim) as client:
        task = client.submit("[never] [eta:0] waited on, then interrupted")
        timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt) as info:
                client.wait(task)
        finally:
            timer.cancel()
        assert task.id in " ".join(getattr(info.value, "__notes__", []))
        deadline = time.monotonic() + 5
        while client._async.waiting and time.monotonic() < deadline:  # the wait is cancelled on its loop
            time.sleep(0.01)
        assert client._async.waiting == 0
        assert client.get_task(task).id == task.id  # and the client goes on working


def test_ctrl_c_during_a_sync_generate_after_its_create_names_the_task(sim: FakeEvolink) -> None:
    def interrupt_once_created(event: Any) -> None:
        if isinstance(event, evo.events.TaskSubmitted):
            signal.raise_signal(signal.SIGINT)  # handled by the main thread, which waits in generate()

    with _client(sim) as client:
        unsubscribe = evo.events.subscribe(interrupt_once_created)
        try:
            with pytest.raises(KeyboardInterrupt) as info:
                client.generate("[never] [eta:0] generated, then interrupted")
        finally:
            unsubscribe()
        (task_id,) = sim.tasks
        assert f"evolink task_id={task_id}" in getattr(info.value, "__notes__", [])


def test_videos_songs_and_local_files_without_await(sim: FakeEvolink, tmp_path: Path) -> None:
    from evolink_async.testing._png import solid_png

    image = tmp_path / "ref.png"
    image.write_bytes(solid_png(8, 8, (9, 9, 9)))
    with _client(sim) as client:
        video = client.generate(evo.VideoRequest("[duration:0.05] [eta:0] a wave", model="veo3.1-fast"))
        song = client.generate(evo.AudioRequest("[duration:0.05] [eta:0] a song", model="suno-v5"))
        assert [p.suffix for p in client.download(video, tmp_path) + client.download(song, tmp_path)] == [
            ".mp4",
            ".mp3",
        ]
        uploaded = client.upload(image)
        edit = client.generate(QUICK, image_urls=[image])
        assert sim.tasks[edit.id].request["image_urls"] == [uploaded.url]
        assert client.files.quota().used_files == 1
        assert [f.id for f in client.files.list().files] == [uploaded.id]
        client.files.delete(uploaded)
        assert client.files.quota().used_files == 0
