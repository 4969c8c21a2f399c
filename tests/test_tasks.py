"""client.tasks.list(): the account's tasks from GET /v1/tasks, paged lazily, against the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault


async def _submit(client: evo.AsyncClient, prompts: list[str]) -> list[evo.Task]:
    return [await client.submit(p) for p in prompts]


async def test_list_yields_every_task_newest_first_paging_lazily(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    created = await _submit(client, [f"p{i} [never]" for i in range(7)])
    listing = client.tasks.list(page_size=3)
    assert fake.stats.list_requests == 0  # nothing is sent before the loop asks
    first = await listing.__anext__()
    assert first.id == created[-1].id
    assert fake.stats.list_requests == 1
    rest = [item async for item in listing]
    assert [t.id for t in [first, *rest]] == [t.id for t in reversed(created)]
    assert listing.pages_read == 3  # 3 + 3 + 1: the short page is the last
    assert all(isinstance(t, evo.TaskSummary) and t.status is evo.TaskStatus.PENDING for t in rest)
    assert first.model == evo.DEFAULT_MODEL
    assert first.type == "image"
    assert first.created_at is not None


async def test_list_asks_no_empty_page_when_the_total_is_reached(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    await _submit(client, [f"p{i} [never]" for i in range(4)])
    items = [t async for t in client.tasks.list(page_size=2)]
    assert len(items) == 4
    assert fake.stats.list_requests == 2


async def test_list_filters_by_status_and_model_at_the_server(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    running = await _submit(client, ["a [never]", "b [never]"])
    done = await client.generate("c [duration:0]")
    processing_or_pending = {t.id async for t in client.tasks.list(status="pending")}
    completed = [t.id async for t in client.tasks.list(status=evo.TaskStatus.COMPLETED)]
    assert completed == [done.id]
    assert processing_or_pending <= {t.id for t in running}
    assert [t async for t in client.tasks.list(model="no-such-model")] == []
    assert len([t async for t in client.tasks.list()]) == 3


async def test_list_stops_at_since_and_at_limit(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    old = await _submit(client, ["old [never]"] * 3)
    new = await _submit(client, ["new [never]"] * 2)
    for task in old:
        fake.tasks[task.id].created -= 3600  # an hour older than the crash
    cutoff = datetime.fromtimestamp(int(time.time()) - 60, tz=UTC)
    assert [t.id async for t in client.tasks.list(since=cutoff, page_size=1)] == [t.id for t in reversed(new)]
    assert fake.stats.list_requests == 3  # the third page showed an older task: no fourth
    assert len([t async for t in client.tasks.list(limit=4, page_size=100)]) == 4


async def test_list_yields_a_task_once_when_new_tasks_shift_the_pages(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    first = await _submit(client, [f"p{i} [never]" for i in range(4)])
    listing = client.tasks.list(page_size=2)
    seen = [await listing.__anext__(), await listing.__anext__()]
    await _submit(client, ["late [never]"])  # pushes every older task one place down
    seen += [t async for t in listing]
    ids = [t.id for t in seen]
    assert len(ids) == len(set(ids))
    assert set(ids) >= {t.id for t in first}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"status": "complete"}, "status"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"limit": 0}, "limit"),
        ({"since": datetime(2026, 1, 1)}, "since"),  # naive: ambiguous
        ({"since": "yesterday"}, "since"),
        ({"model": ""}, "model"),
    ],
)
async def test_list_refuses_bad_arguments_before_any_request(
    fake: FakeEvolink, client: evo.AsyncClient, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(evo.ValidationError) as info:
        client.tasks.list(**options)
    assert info.value.field == field
    assert fake.stats.list_requests == 0


async def test_list_raises_the_servers_error_with_its_request_id(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    fake.inject(Fault(route="list", kind="status", status=403))
    with pytest.raises(evo.PermissionDeniedError) as info:
        [t async for t in client.tasks.list()]
    assert info.value.request_id


async def test_recovery_recipe_finds_and_awaits_what_a_dead_process_paid_for(
    fake: FakeEvolink, make_client: Callable[..., evo.AsyncClient], tmp_path: Path
) -> None:
    crashed = make_client(fake)
    async with crashed:
        paid = await _submit(crashed, ["one [duration:0.2]", "two [duration:0.2]", "three [duration:0]"])
    # A new process: no journal, only the key and roughly when the old one started.
    since = datetime.now(UTC).timestamp() - 600
    async with make_client(fake) as client:
        found: list[evo.Task] = []
        async for item in client.tasks.list(since=since):
            task = await client.wait(item.id, raise_on_failure=False)
            found.append(task)
            await client.download(task, tmp_path)
    assert sorted(t.id for t in found) == sorted(t.id for t in paid)
    assert all(t.status is evo.TaskStatus.COMPLETED for t in found)
    assert len(list(tmp_path.glob("*.png"))) == 3
    assert fake.stats.creates == 3  # nothing paid twice


def test_sync_client_lists_lazily(fake_thread: FakeEvolink) -> None:
    with evo.Client(fake_thread.api_key, base_url=fake_thread.base_url) as client:
        made = [client.submit(f"s{i} [never]") for i in range(3)]
        listing = client.tasks.list(page_size=2)
        assert fake_thread.stats.list_requests == 0
        first = next(listing)
        assert first.id == made[-1].id
        assert [t.id for t in listing] == [t.id for t in reversed(made[:-1])]
        assert fake_thread.stats.list_requests == 2
        with pytest.raises(evo.ValidationError):
            client.tasks.list(status="bogus")


@pytest.fixture
def fake_thread() -> Iterator[FakeEvolink]:
    """A simulator on its own loop in a thread, for the sync client."""
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as sim:
        yield sim
