"""Regressions a review of the batch followers, the journal gate and the sync client found.

Each test failed before its fix."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread

import evolink_async as evo
from evolink_async.testing import FakeEvolink


def quick(name: str, duration: float = 0.1) -> str:
    return f"{name} [duration:{duration}]"


async def test_an_account_refusal_with_a_budget_sends_no_create_for_the_submitters_waiting_on_the_price(
    fake: FakeEvolink, make_client: Any
) -> None:
    # With a budget the first create is the price probe; the other submitters wait on _price_known.
    # A 402 ends the probe (_not_created -> _end_probe): each waiter wakes, becomes the next probe in turn
    # and sends its create, since _refusal is checked only before _plan (_batch.py:468), never after it.
    fake.credits = 0.0
    client = make_client(fake, limits=evo.Limits(requests_per_second=None, max_in_flight=64))
    async with client:
        with anyio.fail_after(30):
            outcomes = await client.generate_all([quick(f"refused {i}") for i in range(100)], budget=1000.0)
    assert len(outcomes) == 100
    # "once seen, nothing more is sent": one create. Observed: one per submitter, sent one after another.
    assert fake.stats.create_requests == 1, fake.stats.create_requests


async def test_the_journal_gate_opens_when_the_checked_input_fails_otherwise(
    fake: FakeEvolink, make_client: Any, tmp_path: Path
) -> None:
    # _launch sets _checked only after _plan returns (_batch.py:470). If _plan raises anything but a
    # JournalError for the input at _check_at (here: a stored task the converter cannot read), the event is
    # never set: every new input beyond it waits at _checked.wait() holding a batch slot, and the batch hangs
    # (the only other setter is a submitter that finds the inputs exhausted, which never comes).
    journal = tmp_path / "j.sqlite"
    inputs = [quick(f"gate {i}") for i in range(3)]
    client = make_client(fake)
    async with client:
        first = await client.generate_all(inputs, journal=journal)
        assert all(o.ok for o in first)
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE items SET task_json = ? WHERE idx = 0", ('{"unexpected": 1}',))
    more = inputs + [quick(f"gate new {i}") for i in range(20)]
    client = make_client(fake)
    async with client:
        with anyio.fail_after(10):  # hangs: TimeoutError
            second = await client.generate_all(more, journal=journal, max_in_flight=2)
    assert len(second) == len(more)


def test_sync_close_does_not_hang_while_a_generate_many_iterator_is_alive(tmp_path: Path) -> None:
    # Client.generate_many keeps `with portal.wrap_async_context_manager(run)` open inside a suspended
    # generator. close() exits the portal with cancel_remaining=False, which waits for that context manager's
    # task: it waits for the generator to be resumed or closed, which the closing thread never does.
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as sim:
        client = evo.Client(
            sim.api_key,
            base_url=sim.base_url,
            poll=evo.PollPolicy(min_interval=0.02),
            limits=evo.Limits(requests_per_second=None),
        )
        it = client.generate_many([f"[duration:0.05] [eta:0] x {i}" for i in range(5)])
        first = next(it)
        assert first.ok
        closer = threading.Thread(target=client.close, daemon=True)
        closer.start()
        closer.join(10)
        hung = closer.is_alive()
        if hung:
            # Unblock it so the test process can end: resuming the generator lets the portal finish.
            with contextlib.suppress(RuntimeError):  # the generator's exit cannot reach a stopping portal
                it.close()
            closer.join(10)
        assert not hung, "Client.close() hung while a generate_many iterator was alive"
