"""The batch journal through the public API: a rerun resumes instead of resubmitting.

Reruns, interrupted runs, creates whose answer never came, a journal of another batch, deleted files —
and a batch process killed with SIGKILL at a random moment. The simulator lives in this process, so its
counters (``fake.stats``, ``fake.tasks``) see every run, including the killed ones.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault, TaskPlan

WORKER = Path(__file__).with_name("batch_worker.py")
REPO = Path(__file__).resolve().parent.parent


def prompts(n: int, tag: str = "journal", durations: tuple[float, ...] = (0.1,)) -> list[str]:
    return [f"{tag} {i} [duration:{durations[i % len(durations)]}]" for i in range(n)]


async def run_batch(client: evo.AsyncClient, inputs: list[Any], **options: Any) -> list[evo.Outcome]:
    return await client.generate_all(inputs, **options)


def tasks_per_prompt(fake: FakeEvolink) -> Counter[str]:
    return Counter(task.prompt for task in fake.tasks.values())


def final_files(folder: Path) -> list[str]:
    """Files under their final names (hidden ``.part`` leftovers of a killed download do not count)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and not p.name.endswith(".part"))


# -- reruns ------------------------------------------------------------------------------------------------


async def test_rerun_with_the_same_journal_sends_nothing_and_resumes_the_same_tasks(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(4)
    first = await run_batch(client, inputs, journal=journal)
    assert all(o.ok for o in first)
    assert not any(o.resumed for o in first)
    assert fake.stats.creates == 4
    requests = fake.stats.requests

    second = await run_batch(client, inputs, journal=journal)
    assert fake.stats.create_requests == 4
    assert fake.stats.requests == requests, "a finished input should be resumed from the journal alone"
    assert all(o.ok and o.resumed for o in second)
    assert [o.task_id for o in second] == [o.task_id for o in first]
    assert [o.input for o in second] == inputs


async def test_rerun_keeps_downloaded_files_and_does_not_fetch_them_again(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal, out = tmp_path / "batch.sqlite", tmp_path / "out"
    inputs = prompts(3)
    first = await run_batch(client, inputs, journal=journal, download_to=out)
    assert fake.stats.file_requests == 3
    second = await run_batch(client, inputs, journal=journal, download_to=out)
    assert fake.stats.file_requests == 3
    assert fake.stats.create_requests == 3
    assert [o.files for o in second] == [o.files for o in first]
    assert all(o.ok and o.resumed for o in second)


async def test_files_deleted_between_runs_are_downloaded_again_without_a_new_create(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal, out = tmp_path / "batch.sqlite", tmp_path / "out"
    inputs = prompts(3)
    first = await run_batch(client, inputs, journal=journal, download_to=out)
    names = final_files(out)
    assert len(names) == 3
    for path in out.iterdir():
        path.unlink()

    second = await run_batch(client, inputs, journal=journal, download_to=out)
    assert final_files(out) == names
    assert fake.stats.file_requests == 6
    assert fake.stats.create_requests == 3
    assert [o.task_id for o in second] == [o.task_id for o in first]
    assert all(o.ok for o in second), [o.error for o in second]
    assert all(p.is_file() for o in second for p in o.files)


async def test_a_failed_input_is_resumed_as_failed_not_resubmitted(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = ["refused [fail:content_policy_violation] [duration:0.05]", "fine [duration:0.1]"]
    await run_batch(client, inputs, journal=journal)
    failed, fine = await run_batch(client, inputs, journal=journal)
    assert fake.stats.create_requests == 2
    assert isinstance(failed.error, evo.TaskFailedError)
    assert failed.error.code == "content_policy_violation"
    assert failed.resumed
    assert fine.ok
    assert fine.resumed


# -- interrupted runs --------------------------------------------------------------------------------------


async def test_a_batch_left_midway_and_rerun_creates_exactly_one_task_per_input(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(12, durations=(0.1, 0.5, 0.3, 0.8))
    seen = 0
    async with client.generate_many(inputs, journal=journal, max_in_flight=4) as run:
        async for _ in run:
            seen += 1
            if seen == 3:
                break
    interrupted = fake.stats.creates
    assert 3 <= interrupted < 12

    outcomes = await run_batch(client, inputs, journal=journal, max_in_flight=4)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert fake.stats.creates == 12
    assert tasks_per_prompt(fake) == Counter(inputs)
    assert sum(o.resumed for o in outcomes) >= 3
    by_task = {o.task_id for o in outcomes}
    assert by_task == set(fake.tasks)


async def test_a_batch_cancelled_by_a_timeout_and_rerun_creates_exactly_one_task_per_input(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal, out = tmp_path / "batch.sqlite", tmp_path / "out"
    inputs = prompts(8, durations=(0.2, 0.6))
    with anyio.move_on_after(0.7) as scope:
        await run_batch(client, inputs, journal=journal, download_to=out, max_in_flight=3)
    assert scope.cancelled_caught
    assert fake.stats.creates < 8

    outcomes = await run_batch(client, inputs, journal=journal, download_to=out, max_in_flight=3)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert fake.stats.creates == 8
    assert tasks_per_prompt(fake) == Counter(inputs)
    assert final_files(out) == sorted(f"{task_id}-0.png" for task_id in fake.tasks)


async def test_a_create_cancelled_before_its_answer_is_replayed_by_key_on_rerun(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(1)
    # The server creates the task at once but answers late; the batch is cancelled in between.
    fake.inject(Fault(kind="slow", route="create", delay=0.8))
    with anyio.move_on_after(0.3):
        await run_batch(client, inputs, journal=journal)
    assert fake.stats.creates == 1
    (created,) = fake.tasks

    (outcome,) = await run_batch(client, inputs, journal=journal)
    assert outcome.ok, outcome.error
    assert outcome.task_id == created
    assert fake.stats.replays == 1
    assert fake.stats.creates == 1
    assert fake.stats.create_requests == 2


async def test_a_create_whose_outcome_stayed_unknown_is_resumed_by_key_on_rerun(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(1)
    attempts = client.retry.max_attempts
    fake.inject(Fault(kind="drop_after_create", route="create", times=attempts))
    (lost,) = await run_batch(client, inputs, journal=journal)
    assert isinstance(lost.error, evo.SubmissionUnknownError)
    assert fake.stats.creates == 1

    (outcome,) = await run_batch(client, inputs, journal=journal)
    assert outcome.ok, outcome.error
    assert outcome.task_id in fake.tasks
    assert fake.stats.creates == 1
    assert fake.stats.replays == attempts  # attempts - 1 retries in the first run, one in the rerun
    assert fake.stats.create_requests == attempts + 1


async def test_a_rerun_under_a_spent_budget_still_reports_a_task_whose_create_was_already_sent(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    # The first run's create reached the server (the task exists and is charged) but its answer never
    # came back. The rerun's budget allows nothing new; that task must not be reported "not submitted".
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(1)
    fake.inject(Fault(kind="slow", route="create", delay=0.8))
    with anyio.move_on_after(0.3):
        await run_batch(client, inputs, journal=journal)
    (created,) = fake.tasks

    (outcome,) = await run_batch(client, inputs, journal=journal, budget=0)
    assert outcome.task_id == created, f"outcome lost the task that exists at the server: {outcome.error!r}"


# -- a journal that is not this batch's ----------------------------------------------------------------------


async def test_rerun_with_different_inputs_on_the_same_journal_raises_journal_error_and_sends_nothing(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    await run_batch(client, prompts(3, tag="first batch"), journal=journal)
    requests = fake.stats.requests
    with pytest.raises(evo.JournalError, match="another batch"):
        await run_batch(client, prompts(3, tag="second batch"), journal=journal)
    assert fake.stats.requests == requests
    assert fake.stats.creates == 3


async def test_rerun_with_the_same_prompts_but_other_fields_raises_journal_error(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = prompts(2)
    await run_batch(client, inputs, journal=journal)
    with pytest.raises(evo.JournalError):
        await run_batch(client, inputs, journal=journal, size="16:9")
    assert fake.stats.create_requests == 2


async def test_a_file_that_is_not_a_journal_raises_journal_error_before_anything_is_sent(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "not-a-journal.sqlite"
    journal.write_bytes(b"this is not an SQLite database\n" * 64)
    with pytest.raises(evo.JournalError):
        await run_batch(client, prompts(2), journal=journal)
    assert fake.stats.requests == 0


# -- the crash test ----------------------------------------------------------------------------------------


async def run_worker(args: list[str], log: Path, kill_after: float | None) -> int:
    """Run batch_worker.py; SIGKILL it after ``kill_after`` seconds (None: let it finish). Its return code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        async with await anyio.open_process(
            [sys.executable, str(WORKER), *args], stdout=out, stderr=out, cwd=log.parent, env=env
        ) as proc:
            if kill_after is not None:
                await anyio.sleep(kill_after)
                if proc.returncode is None:
                    os.kill(proc.pid, signal.SIGKILL)
            with anyio.fail_after(30):
                return await proc.wait()


async def test_a_batch_process_killed_with_sigkill_and_rerun_creates_one_task_and_one_file_per_input(
    fake: FakeEvolink, tmp_path: Path
) -> None:
    seed = int(os.environ.get("EVOLINK_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    durations = tuple(round(rng.uniform(0.2, 0.8), 2) for _ in range(40))
    inputs = [f"crash {i} [duration:{d}]" for i, d in enumerate(durations)]
    prompts_file, journal, out = tmp_path / "prompts.txt", tmp_path / "batch.sqlite", tmp_path / "out"
    prompts_file.write_text("\n".join(inputs) + "\n", encoding="utf-8")
    args = [fake.base_url, fake.api_key, str(prompts_file), str(journal), str(out)]
    # Every create is done at once but answered late, so a kill often lands between the two: the window
    # in which only the journal's saved Idempotency-Key can find the task again.
    fake.inject(Fault(kind="slow", route="create", delay=0.25, times=1000))
    # Slow downloads too, so that kills also land mid-file (issue 9: half files must not survive).
    fake.inject(Fault(kind="slow", route="files", delay=0.15, times=100_000))
    # `make chaos` kills it 20 times (EVOLINK_CRASH_KILLS=20); `make test` once or twice.
    count = int(os.environ.get("EVOLINK_CRASH_KILLS", 0)) or rng.choice((1, 2))
    kills = [round(rng.uniform(0.2, 1.5), 3) for _ in range(count)]
    context = f"seed={seed} kills={kills} (rerun with EVOLINK_CRASH_SEED={seed})"

    for n, delay in enumerate(kills):
        code = await run_worker(args, tmp_path / f"killed-{n}.log", delay)
        assert code in (-signal.SIGKILL, 0), f"{context}: killed run {n} exited {code}"

    final_log = tmp_path / "final.log"
    code = await run_worker(args, final_log, None)
    output = final_log.read_text(encoding="utf-8")
    assert code == 0, f"{context}: the final run failed:\n{output}"

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert sorted(line["index"] for line in lines) == list(range(40)), f"{context}\n{output}"
    assert all(line["ok"] for line in lines), f"{context}: not all ok:\n{output}"

    # The server's view: exactly one task per input, every create with its key.
    assert fake.stats.creates == 40, f"{context}: {fake.stats.creates} tasks created for 40 inputs"
    assert tasks_per_prompt(fake) == Counter(inputs), context
    assert fake.stats.creates_without_key == 0, context
    assert {line["task_id"] for line in lines} == set(fake.tasks), context

    # One file per input task, under its final name, and nothing else (no partial file of a killed run).
    assert final_files(out) == sorted(f"{task_id}-0.png" for task_id in fake.tasks), context
    assert sorted(p.name for p in out.iterdir()) == final_files(out), context
    assert all(Path(f).is_file() for line in lines for f in line["files"]), context
    assert all((out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for name in final_files(out)), context


async def test_a_rerun_counts_tasks_still_running_from_the_earlier_run_against_the_budget(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = [f"long {i} [never]" for i in range(12)]
    options: dict[str, Any] = {"journal": journal, "budget": 5 * 1.6, "cost_per_task": 1.6}
    for _ in range(2):  # two runs, each cut short while its tasks still run at the server
        with anyio.move_on_after(1.0):
            await run_batch(client, inputs, **options)
    assert fake.stats.creates == 5  # the second run spent nothing more: the first run's 5 still count


@pytest.mark.parametrize("depth", [600, 900])
async def test_an_unknown_field_nested_deep_never_costs_the_task_or_its_id(
    make_client: Any, tmp_path: Path, depth: int
) -> None:
    # Issue 9, defect 3: a completed task whose body carries an unknown field ~600 levels deep (valid JSON)
    # came out of generate_many(journal=...) as a bare RecursionError without the task id, on every rerun.
    deep: Any = "leaf"
    for _ in range(depth):
        deep = {"k": deep}

    def plan(body: dict[str, Any]) -> TaskPlan:
        return TaskPlan(duration=0.05, estimated_time=0, extra={"weird": deep})

    journal = tmp_path / "deep.sqlite"
    async with FakeEvolink(plan=plan) as fake, make_client(fake) as client:
        for _ in range(2):  # the first run, then a rerun from the journal
            (outcome,) = await client.generate_all(["a deep cat"], journal=journal)
            assert outcome.ok, outcome.error
            assert outcome.task is not None
            assert outcome.task.id in fake.tasks
        assert fake.stats.creates == 1


async def test_a_journal_of_fewer_other_inputs_is_refused_before_any_create_of_a_longer_batch(
    fake: FakeEvolink, client: evo.AsyncClient, tmp_path: Path
) -> None:
    # Issue 9, defect 5: the inputs beyond the journal's end had no entry to mismatch, so they went out
    # (14 of 300) before input 0 was found to differ.
    journal = tmp_path / "batch.sqlite"
    await run_batch(client, prompts(3, tag="first batch"), journal=journal)
    with pytest.raises(evo.JournalError, match="another batch"):
        await run_batch(client, prompts(60, tag="second batch"), journal=journal)
    assert fake.stats.create_requests == 3
