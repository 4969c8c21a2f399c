"""``generate_many`` / ``generate_all`` through the public client against the simulator over loopback.

One Outcome per input, as each completes; failures stay per input; a cap on tasks in flight; lazy input;
fields for every input; a credit budget; downloads. ``fake.stats`` is the server's view of what was sent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from conftest import until

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PRICE_2K = 1.6  # what the simulator (like EvoLink) reserves for a 2K gemini-3-pro-image-preview task


def quick(name: str, duration: float = 0.1) -> str:
    return f"{name} [duration:{duration}]"


async def collect(run: evo.BatchRun) -> list[evo.Outcome]:
    return [outcome async for outcome in run]


def by_index(outcomes: list[evo.Outcome]) -> dict[int, evo.Outcome]:
    table = {o.index: o for o in outcomes}
    assert len(table) == len(outcomes), f"an index came out twice: {[o.index for o in outcomes]}"
    return table


def all_names(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden `.part` files included."""
    return sorted(p.name for p in folder.iterdir())


# -- one outcome per input, as each completes ------------------------------------------------------------


async def test_each_input_gets_exactly_one_outcome_with_its_index_and_input(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    prompts = [quick(f"cat {i}") for i in range(5)]
    async with client.generate_many(prompts) as run:
        outcomes = await collect(run)
    table = by_index(outcomes)
    assert sorted(table) == [0, 1, 2, 3, 4]
    for index, outcome in table.items():
        assert outcome.input == prompts[index]
        assert outcome.ok, outcome.error
        assert outcome.task is not None
        assert fake.tasks[outcome.task.id].prompt == prompts[index]
    assert fake.stats.creates == 5
    assert run.stats.completed == 5
    assert run.stats.done == 5


async def test_outcomes_are_yielded_as_tasks_complete_so_a_short_task_after_a_long_one_comes_first(
    client: evo.AsyncClient,
) -> None:
    async with client.generate_many([quick("slow", 1.0), quick("fast", 0.1)]) as run:
        order = [outcome.index async for outcome in run]
    assert order == [1, 0]


async def test_mixed_inputs_str_image_request_and_mapping_are_all_sent_with_their_fields(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs: list[evo.ImageRequest | str | dict[str, Any]] = [
        quick("plain"),
        evo.ImageRequest(quick("request"), size="1:1", quality="1K"),
        {"prompt": quick("mapping"), "size": "3:2", "quality": "4K", "seed_hint": 7},
    ]
    outcomes = await client.generate_all(inputs)
    assert [o.ok for o in outcomes] == [True, True, True], [o.error for o in outcomes]
    bodies = [fake.tasks[o.task.id].request for o in outcomes if o.task is not None]
    assert bodies[0]["prompt"] == quick("plain")
    assert "size" not in bodies[0]
    assert (bodies[1]["size"], bodies[1]["quality"]) == ("1:1", "1K")
    assert (bodies[2]["size"], bodies[2]["quality"], bodies[2]["seed_hint"]) == ("3:2", "4K", 7)
    assert outcomes[1].request == inputs[1]
    assert fake.stats.creates == 3


async def test_invalid_inputs_become_their_own_validation_error_outcomes_and_nothing_is_sent_for_them(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs: list[Any] = [
        quick("good one"),
        "",  # empty prompt
        {"size": "1:1"},  # mapping without a prompt
        42,  # not a prompt at all
        {"prompt": quick("bad size"), "size": "7:3"},
        quick("good two"),
    ]
    outcomes = await client.generate_all(inputs)
    assert [o.index for o in outcomes] == list(range(6))
    for outcome in outcomes:
        assert outcome.input is inputs[outcome.index]
    assert [o.ok for o in outcomes] == [True, False, False, False, False, True]
    for outcome in outcomes[1:5]:
        assert isinstance(outcome.error, evo.ValidationError), outcome.error
        assert outcome.task is None
    bad_size = outcomes[4].error
    assert isinstance(bad_size, evo.ValidationError)
    assert bad_size.field == "size"
    assert fake.stats.create_requests == 2
    assert sorted(t.prompt for t in fake.tasks.values()) == [quick("good one"), quick("good two")]


async def test_failed_and_cancelled_tasks_become_outcomes_with_their_task_and_never_stop_the_rest(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs = [
        quick("[fail:content_policy_violation] blocked", 0.05),
        quick("[cancel] cancelled", 0.05),
        quick("fine", 0.6),
        quick("also fine", 0.6),
    ]
    outcomes = await client.generate_all(inputs)
    failed, cancelled, fine, also_fine = outcomes

    assert isinstance(failed.error, evo.TaskFailedError)
    assert not isinstance(failed.error, evo.TaskCancelledError)
    assert failed.error.code == "content_policy_violation"
    assert failed.task is not None
    assert failed.task.status is evo.TaskStatus.FAILED
    assert failed.task_id == failed.task.id == failed.error.task_id

    assert isinstance(cancelled.error, evo.TaskCancelledError)
    assert cancelled.task is not None
    assert cancelled.task.status is evo.TaskStatus.CANCELLED

    assert fine.ok
    assert also_fine.ok
    assert fake.stats.creates == 4
    assert fake.stats.create_requests == 4  # the failures were not resubmitted either


async def test_max_in_flight_caps_tasks_running_at_the_server_and_is_reached(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    prompts = [quick(f"capped {i}", 0.3) for i in range(8)]
    async with client.generate_many(prompts, max_in_flight=3) as run:
        outcomes = await collect(run)
    assert len(outcomes) == 8
    assert all(o.ok for o in outcomes)
    assert fake.stats.max_running <= 3
    assert fake.stats.max_running == 3
    assert fake.stats.creates == 8


async def test_invalid_batch_options_raise_validation_error_before_anything_is_sent(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.ValidationError):
        client.generate_many(["a"], max_in_flight=0)
    with pytest.raises(evo.ValidationError):
        client.generate_many(["a"], budget=-1)
    with pytest.raises(evo.ValidationError):
        client.generate_many("a single string is not a list of prompts")
    assert fake.stats.requests == 0


# -- lazy input ----------------------------------------------------------------------------------------


async def test_an_infinite_generator_is_consumed_lazily_and_breaking_out_cancels_the_rest_cleanly(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield quick(f"endless {i}", 0.05)

    seen = 0
    async with client.generate_many(endless(), max_in_flight=2) as run:
        async for outcome in run:
            assert outcome.ok, outcome.error
            seen += 1
            if seen == 5:
                break
    # 5 taken + 2 in flight + 2 buffered outcomes + 1 pulled while waiting for a slot.
    assert pulled <= 5 + 2 + 2 + 1, pulled
    assert fake.stats.creates <= pulled
    assert fake.stats.max_running <= 2
    assert client.in_flight == 0
    assert client.waiting == 0, "tasks left behind by the batch are still followed"
    creates = fake.stats.creates
    await anyio.sleep(0.3)
    assert fake.stats.creates == creates, "the batch went on submitting after the block was left"
    assert fake.stats.create_requests == creates


async def test_an_async_generator_input_works(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    async def prompts() -> AsyncIterator[str]:
        for i in range(4):
            await anyio.lowlevel.checkpoint()
            yield quick(f"async {i}")

    outcomes = await client.generate_all(prompts(), max_in_flight=2)
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.input for o in outcomes] == [quick(f"async {i}") for i in range(4)]
    assert all(o.ok for o in outcomes)
    assert fake.stats.creates == 4


async def test_generate_all_returns_outcomes_in_input_order_whatever_the_completion_order(
    client: evo.AsyncClient,
) -> None:
    prompts = [quick(f"ordered {i}", d) for i, d in enumerate([0.9, 0.1, 0.6, 0.05])]
    outcomes = await client.generate_all(prompts)
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.input for o in outcomes] == prompts
    assert all(o.ok for o in outcomes)


async def test_fields_apply_to_every_input(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    inputs: list[evo.ImageRequest | str | dict[str, Any]] = [
        quick("one"),
        evo.ImageRequest(quick("two")),
        {"prompt": quick("three")},
    ]
    outcomes = await client.generate_all(inputs, size="16:9", quality="1K")
    assert all(o.ok for o in outcomes)
    for outcome in outcomes:
        assert outcome.task is not None
        body = fake.tasks[outcome.task.id].request
        assert (body["size"], body["quality"]) == ("16:9", "1K")


async def test_a_mapping_inputs_own_field_wins_over_the_batch_field(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    outcomes = await client.generate_all([{"prompt": quick("own"), "size": "1:1"}, quick("shared")], size="16:9")
    sizes = [fake.tasks[o.task.id].request["size"] for o in outcomes if o.task is not None]
    assert sizes == ["1:1", "16:9"]


# -- the budget ----------------------------------------------------------------------------------------


async def test_budget_submits_only_what_fits_and_the_rest_get_budget_exceeded_outcomes_without_a_task(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    prompts = [quick(f"paid {i}", 0.3) for i in range(6)]
    async with client.generate_many(prompts, budget=5) as run:
        outcomes = await collect(run)
        assert run.stats.committed_credits <= 5
    assert fake.stats.creates == 3  # 3 x 1.6 = 4.8 <= 5 < 6.4
    assert fake.stats.create_requests == 3
    refused = [o for o in outcomes if not o.ok]
    assert len(refused) == 3
    for outcome in refused:
        assert isinstance(outcome.error, evo.BudgetExceededError)
        assert outcome.task is None
        assert outcome.task_id is None
        assert outcome.error.budget == 5
        assert outcome.error.committed + PRICE_2K > 5
    assert sum(o.ok for o in outcomes) == 3
    assert run.stats.not_submitted == 3
    assert run.stats.committed_credits == pytest.approx(3 * PRICE_2K)


async def test_budget_refunds_of_failed_tasks_let_later_inputs_in_and_commitments_never_exceed_it(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    budget = 2 * PRICE_2K + 0.1  # room for two tasks at a time
    prompts = [quick("[fail:service_error] first", 0.05), quick("[fail] second", 0.05), quick("third"), quick("fourth")]
    peak = 0.0
    async with client.generate_many(prompts, budget=budget, max_in_flight=2) as run:
        async for _ in run:
            peak = max(peak, run.stats.committed_credits)
    assert peak <= budget + 1e-9
    assert fake.stats.creates == 4, "the refunds of the failed tasks should have made room for the others"
    assert run.stats.failed == 2
    assert run.stats.completed == 2
    assert run.stats.not_submitted == 0
    assert run.stats.committed_credits == pytest.approx(2 * PRICE_2K)


async def test_budget_with_cost_per_task_given_needs_no_probe_and_submits_what_fits(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    outcomes = await client.generate_all([quick(f"priced {i}") for i in range(5)], budget=5, cost_per_task=2.0)
    assert fake.stats.creates == 2  # 2 x 2.0 <= 5 < 3 x 2.0
    assert sum(o.ok for o in outcomes) == 2
    assert sum(isinstance(o.error, evo.BudgetExceededError) for o in outcomes) == 3


async def test_budget_below_the_given_cost_per_task_submits_nothing(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    outcomes = await client.generate_all([quick("too dear")], budget=1.0, cost_per_task=PRICE_2K)
    assert fake.stats.create_requests == 0
    assert isinstance(outcomes[0].error, evo.BudgetExceededError)


async def test_budget_zero_submits_nothing(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    outcomes = await client.generate_all([quick(f"free {i}") for i in range(3)], budget=0)
    assert fake.stats.create_requests == 0
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome.error, evo.BudgetExceededError)
        assert outcome.task is None


async def test_budget_below_one_task_is_never_spent_when_cost_per_task_is_given(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    async with client.generate_many([quick("probe"), quick("second")], budget=1.0, cost_per_task=1.6) as run:
        outcomes = await collect(run)
    assert fake.stats.create_requests == 0
    assert all(isinstance(o.error, evo.BudgetExceededError) for o in outcomes)


async def test_without_cost_per_task_only_the_create_that_learns_the_price_can_exceed_the_budget(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    # Documented: with no price known, the first create is sent to learn it; nothing after it may overspend.
    async with client.generate_many([quick("probe"), quick("second"), quick("third")], budget=1.0) as run:
        outcomes = await collect(run)
    assert fake.stats.creates == 1
    not_sent = [o for o in outcomes if isinstance(o.error, evo.BudgetExceededError)]
    assert len(not_sent) == 2
    assert all(o.task is None for o in not_sent)


def charged(fake: FakeEvolink) -> float:
    """Credits the simulator reserved for every task it created (what the account pays)."""
    return sum(task.cost for task in fake.tasks.values())


@pytest.mark.parametrize("cost", [-1, -0.01, float("nan"), float("inf"), "1.6"])
async def test_budget_refuses_a_negative_non_finite_or_non_numeric_cost_per_task_before_any_create(
    fake: FakeEvolink, client: evo.AsyncClient, cost: Any
) -> None:
    with pytest.raises(evo.ValidationError, match="cost_per_task"):
        client.generate_many([quick("a")], budget=5, cost_per_task=cost)
    assert fake.stats.create_requests == 0


@pytest.mark.parametrize("cost", [0, 0.01, 1.0])
async def test_budget_is_exceeded_by_at_most_one_real_price_whatever_cost_per_task_says(
    fake: FakeEvolink, client: evo.AsyncClient, cost: float
) -> None:
    # Issue 19: 40 prompts, budget 5, cost_per_task 0 or 0.01 -> 16 creates (25.6 credits); 1.0 -> 8.0.
    prompts = [quick(f"cheap {i}", 0.3) for i in range(40)]
    async with client.generate_many(prompts, budget=5, cost_per_task=cost) as run:
        async for _ in run:
            assert run.stats.committed_credits <= 5 + PRICE_2K + 1e-9
    assert charged(fake) <= 5 + PRICE_2K + 1e-9, f"{fake.stats.creates} creates"
    assert fake.stats.creates >= 1
    assert run.stats.not_submitted == 40 - fake.stats.creates


async def test_a_rerun_of_a_budget_stopped_batch_uses_the_price_its_journal_learned_and_sends_no_probe(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "budget.sqlite"
    prompts = [quick(f"paid {i}") for i in range(6)]
    await client.generate_all(prompts, budget=5, journal=journal)
    assert fake.stats.creates == 3  # 4.8 committed: a fourth (1.6) would exceed 5
    outcomes = await client.generate_all(prompts, budget=5, journal=journal)
    assert fake.stats.creates == 3, "the rerun probed the price again (4.8 -> 6.4 credits on a budget of 5)"
    assert sum(isinstance(o.error, evo.BudgetExceededError) for o in outcomes) == 3


async def test_budget_sends_one_unpriced_create_at_a_time_whatever_its_price_class(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs = [{"prompt": quick(f"mixed {i}"), "quality": ("2K", "4K", "1K")[i % 3]} for i in range(9)]
    async with client.generate_many(inputs, budget=1.0) as run:
        await collect(run)
    assert fake.stats.creates == 1
    assert charged(fake) <= 1.0 + 3.2


# -- downloads -----------------------------------------------------------------------------------------


async def test_download_to_saves_one_file_per_result_named_after_the_task_id(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    prompts = [quick("single"), quick("[results:2] pair")]
    outcomes = await client.generate_all(prompts, download_to=out)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    expected = []
    for outcome in outcomes:
        assert outcome.task is not None
        names = [f"{outcome.task.id}-{n}.png" for n in range(len(outcome.task.results))]
        assert [p.name for p in outcome.files] == names
        for path in outcome.files:
            assert path.read_bytes().startswith(PNG_SIGNATURE)
        expected += names
    assert len(expected) == 3
    assert all_names(out) == sorted(expected)
    assert fake.stats.file_requests == 3


async def test_a_download_failure_keeps_the_completed_task_in_the_outcome_with_a_download_error(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    fake.inject(Fault(kind="status", route="files", status=404))
    outcomes = await client.generate_all([quick("gone")], download_to=tmp_path)
    (outcome,) = outcomes
    assert not outcome.ok
    assert isinstance(outcome.error, evo.DownloadError)
    assert outcome.task is not None
    assert outcome.task.status is evo.TaskStatus.COMPLETED
    assert outcome.error.task_id == outcome.task.id
    assert outcome.files == ()
    assert fake.stats.file_requests == 1  # a 404 is not retried
    assert all_names(tmp_path) == []


# -- leaving the block, errors in the body, per-task timeouts -------------------------------------------------


async def test_breaking_out_of_an_infinite_async_generator_input_exits_cleanly(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal pulled
        for i in itertools.count():
            await anyio.lowlevel.checkpoint()
            pulled += 1
            yield quick(f"async endless {i}", 0.05)

    seen = 0
    async with client.generate_many(endless(), max_in_flight=2) as run:
        async for _ in run:
            seen += 1
            if seen == 3:
                break
    assert pulled <= 3 + 2 + 2 + 1, pulled
    creates = fake.stats.creates
    await anyio.sleep(0.3)
    assert fake.stats.creates == creates
    assert client.in_flight == 0


async def test_an_exception_in_the_loop_body_propagates_unchanged_and_stops_submitting(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    class Stop(Exception):
        pass

    prompts = [quick(f"stopped {i}", 0.05) for i in range(20)]

    async def consume() -> None:
        async with client.generate_many(prompts, max_in_flight=2) as run:
            async for _ in run:
                raise Stop

    with pytest.raises(Stop):  # the caller's own exception, not an ExceptionGroup around it
        await consume()
    creates = fake.stats.creates
    assert creates < 20
    await anyio.sleep(0.3)
    assert fake.stats.creates == creates
    assert client.in_flight == 0


async def test_a_per_task_timeout_becomes_that_inputs_wait_timeout_outcome_with_the_task_id(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    # The first status read comes about 0.5 s after the create: the timeout leaves room for it.
    stuck, fine = await client.generate_all(["stuck [never]", quick("fine")], timeout=1.2)
    assert isinstance(stuck.error, evo.WaitTimeoutError)
    assert stuck.task is None
    assert stuck.task_id is not None
    assert stuck.task_id in fake.tasks
    assert fine.ok


async def test_iterating_a_batch_outside_its_async_with_raises_client_state_error(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    run = client.generate_many([quick("never started")])
    with pytest.raises(evo.ClientStateError):
        async for _ in run:
            pass
    assert fake.stats.requests == 0


async def test_a_batch_on_a_client_never_entered_raises_client_state_error_before_sending(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    c = make_client(fake)
    with pytest.raises(evo.ClientStateError):
        async with c.generate_many([quick("no poller")]) as run:
            await collect(run)
    await c.aclose()
    assert fake.stats.requests == 0


async def test_an_image_request_inputs_own_fields_win_over_batch_wide_fields(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    inputs = [evo.ImageRequest(quick("own size"), size="1:1"), evo.ImageRequest(quick("no size"))]
    outcomes = await client.generate_all(inputs, size="16:9")
    sizes = {o.index: fake.tasks[o.task_id].size for o in outcomes if o.task_id}
    assert sizes == {0: "1:1", 1: "16:9"}


async def test_a_failing_input_iterable_delivers_the_outcomes_in_progress_then_raises_its_error(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    def inputs() -> Iterator[str]:
        yield quick("first", 0.3)
        yield quick("second", 0.3)
        raise RuntimeError("prompt file unreadable")

    seen: list[evo.Outcome] = []

    async def consume() -> None:
        async with client.generate_many(inputs(), max_in_flight=4) as run:
            async for outcome in run:
                seen.append(outcome)

    with pytest.raises(RuntimeError, match="prompt file unreadable"):
        await consume()
    assert sorted(o.index for o in seen) == [0, 1]
    assert all(o.ok for o in seen)
    assert fake.stats.creates == 2


async def test_a_local_save_error_keeps_the_completed_task_in_the_outcome(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    (outcome,) = await client.generate_all([quick("saved nowhere")], download_to=not_a_folder)
    assert isinstance(outcome.error, evo.DownloadError)
    assert outcome.task is not None
    assert outcome.task_id == outcome.task.id
    assert outcome.task.status is evo.TaskStatus.COMPLETED


async def test_a_misspelled_batch_wide_field_fails_before_anything_is_sent(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.ValidationError, match="did you mean 'quality'"):
        client.generate_many([quick("x")], qualty="4K")
    assert fake.stats.requests == 0


async def test_tasks_in_flight_hold_no_coroutine_each(fake: FakeEvolink, make_client: Any) -> None:
    # 400 tasks in flight through one batch: a few submitters, finishers and readers run, not one coroutine
    # (or task) per task in flight, which is what let a batch of 20,000 stall the loop and hold 14 KB each.
    n = 400
    limits = evo.Limits(max_in_flight=n, requests_per_second=None)
    async with make_client(fake, limits=limits) as client:
        async with client.generate_many((f"[never] held {i}" for i in range(n)), max_in_flight=n) as run:
            await until(lambda: run.stats.submitted == n, 30.0)
            assert run.stats.in_flight == n
            assert client.waiting == n
            assert len(asyncio.all_tasks()) < 150
        # Left with all of them still running: nothing is followed any more, every slot is back.
        assert client.waiting == 0
        assert client.in_flight == 0


@pytest.mark.parametrize("refusal", ["wrong key", "no credits"])
async def test_an_account_refusal_stops_the_batch_from_submitting(
    fake: FakeEvolink, make_client: Any, refusal: str
) -> None:
    # Issue 9, defect 4: with a wrong key (401) or no credits (402) a batch sent every create, one by one.
    # Now at most max_in_flight creates go out after the first refusal; the rest are NotSubmittedError at once.
    n, cap = 100, 4
    if refusal == "wrong key":
        client = evo.AsyncClient(
            "sk-wrong-key-0123456789",
            base_url=fake.base_url,
            limits=evo.Limits(requests_per_second=None, max_in_flight=cap),
        )
        expected: type[evo.APIError] = evo.AuthenticationError
    else:
        fake.credits = 0.0
        client = make_client(fake, limits=evo.Limits(requests_per_second=None, max_in_flight=cap))
        expected = evo.InsufficientCreditsError
    async with client:
        with anyio.fail_after(20):
            outcomes = await client.generate_all([quick(f"refused {i}") for i in range(n)])
    assert len(outcomes) == n
    assert fake.stats.create_requests <= 1 + cap
    refused = [o for o in outcomes if isinstance(o.error, expected)]
    skipped = [o for o in outcomes if isinstance(o.error, evo.NotSubmittedError)]
    assert 1 <= len(refused) <= 1 + cap
    assert len(refused) + len(skipped) == n
    assert all(isinstance(o.error.refusal, expected) for o in skipped if isinstance(o.error, evo.NotSubmittedError))
    assert all("not submitted" in str(o.error) for o in skipped)
