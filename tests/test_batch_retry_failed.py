"""generate_many(retry_failed=n): an input whose task failed with a retryable code gets a new, paid task after a
delay, within the budget; never for a content-policy refusal. Against the simulator."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_POLL, FAST_RETRY, UNPACED
from test_cli import run_cli

import evolink_async as evo
from evolink_async._journal import Journal
from evolink_async.testing import FakeEvolink, TaskPlan

FAST = 0.1


def flaky(failures: dict[str, int], code: str = "service_error") -> Callable[[dict[str, Any]], TaskPlan]:
    """A plan that fails a prompt's first ``failures[prompt]`` tasks with ``code``, then completes it."""
    seen: Counter[str] = Counter()

    def plan(body: dict[str, Any]) -> TaskPlan:
        prompt = body["prompt"]
        seen[prompt] += 1
        if seen[prompt] <= failures.get(prompt, 0):
            return TaskPlan(duration=FAST, outcome="failed", error_code=code, error_message="upstream trouble")
        return TaskPlan(duration=FAST)

    return plan


@pytest.fixture
async def sim() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink(plan=flaky({"once": 1, "twice": 2, "always": 99})) as fake:
        yield fake


def _client(fake: FakeEvolink) -> evo.AsyncClient:
    return evo.AsyncClient(fake.api_key, base_url=fake.base_url, retry=FAST_RETRY, poll=FAST_POLL, limits=UNPACED)


async def test_a_retryable_failure_gets_a_new_task_and_the_earlier_one_is_kept(sim: FakeEvolink) -> None:
    async with (
        _client(sim) as client,
        client.generate_many(["once", "fine"], retry_failed=1, retry_delay=0) as run,
    ):
        outcomes = {o.input: o async for o in run}
    once = outcomes["once"]
    assert once.ok
    assert len(once.earlier) == 1
    (failed,) = once.earlier
    assert failed.status is evo.TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "service_error"
    assert failed.id != once.task_id  # a new task, not the old one read again
    assert outcomes["fine"].earlier == ()
    assert run.stats.retried == 1
    assert run.stats.completed == 2
    assert run.stats.failed == 0
    assert sim.stats.creates == 3  # one more paid create, on purpose


async def test_without_retry_failed_a_failure_is_reported_and_never_resubmitted(sim: FakeEvolink) -> None:
    async with _client(sim) as client:
        (outcome,) = await client.generate_all(["once"])
    assert isinstance(outcome.error, evo.TaskFailedError)
    assert sim.stats.creates == 1


async def test_retries_stop_after_n_and_the_last_failure_is_the_outcome(sim: FakeEvolink) -> None:
    async with (
        _client(sim) as client,
        client.generate_many(["always", "twice"], retry_failed=2, retry_delay=0) as run,
    ):
        outcomes = {o.input: o async for o in run}
    always = outcomes["always"]
    assert isinstance(always.error, evo.TaskFailedError)
    assert always.task is not None
    assert len(always.earlier) == 2
    assert len({always.task_id, *(t.id for t in always.earlier)}) == 3
    assert outcomes["twice"].ok
    assert run.stats.retried == 4
    assert sim.stats.creates == 6


async def test_a_content_policy_refusal_is_never_resubmitted(make_client: Callable[..., evo.AsyncClient]) -> None:
    async with (
        FakeEvolink(plan=flaky({"bad": 1}, code="content_policy_violation")) as fake,
        make_client(fake) as client,
    ):
        (outcome,) = await client.generate_all(["bad"], retry_failed=3, retry_delay=0)
    assert isinstance(outcome.error, evo.TaskFailedError)
    assert outcome.error.code == "content_policy_violation"
    assert fake.stats.creates == 1


async def test_a_resubmission_counts_against_the_budget(sim: FakeEvolink) -> None:
    async with _client(sim) as client:
        price = (await client.submit("price probe")).usage.credits_reserved  # type: ignore[union-attr]
        assert price
        # Room for two tasks at a time. "once" fails and is refunded; while it waits to be resubmitted, "later"
        # takes the room, so the new try of "once" does not fit: its failure is its outcome, nothing more paid.
        async with client.generate_many(
            ["once", "fine", "later"],
            retry_failed=1,
            retry_delay=0.5,
            budget=2 * price,
            cost_per_task=price,
            max_in_flight=2,
        ) as run:
            outcomes = {o.input: o async for o in run}
    once = outcomes["once"]
    assert isinstance(once.error, evo.TaskFailedError)
    assert once.error.code == "service_error"
    assert once.earlier == ()
    assert outcomes["fine"].ok
    assert outcomes["later"].ok
    assert run.stats.retried == 0
    assert run.stats.committed_credits <= 2 * price + 1e-9
    assert sim.stats.creates == 1 + 3  # the probe, and one task per input


async def test_the_journal_records_the_new_tries_key_before_its_create(sim: FakeEvolink, tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite"
    async with _client(sim) as client:
        (outcome,) = await client.generate_all(["once"], journal=journal, retry_failed=1, retry_delay=0)
        assert outcome.ok
        again = await client.generate_all(["once"], journal=journal, retry_failed=1, retry_delay=0)
    assert again[0].resumed
    assert again[0].task_id == outcome.task_id
    store = Journal(journal)
    await store.open()
    try:
        entry = await store.get(0)
    finally:
        await store.close()
    assert entry is not None
    assert entry.task_id == outcome.task_id
    assert entry.state == "completed"
    assert sim.stats.creates == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"retry_failed": -1}, "retry_failed"),
        ({"retry_failed": True}, "retry_failed"),
        ({"retry_delay": -1}, "retry_delay"),
    ],
)
async def test_bad_retry_options_are_refused_before_anything_is_sent(
    sim: FakeEvolink, options: dict[str, Any], field: str
) -> None:
    async with _client(sim) as client:
        with pytest.raises(evo.ValidationError) as info:
            client.generate_many(["once"], **options)
    assert info.value.field == field
    assert sim.stats.create_requests == 0


async def test_cli_batch_retry_failed(sim: FakeEvolink, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    batch = tmp_path / "in.txt"
    batch.write_text("once\nfine\n")
    results = tmp_path / "out.jsonl"
    code, out, _ = await run_cli(
        ["batch", str(batch), "--retry-failed", "1", "--retry-delay", "0", "--results", str(results)],
        fake=sim,
        capsys=capsys,
    )
    assert code == 0
    assert "failed tasks resubmitted (new tasks)" in out
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == ["completed", "completed"]
