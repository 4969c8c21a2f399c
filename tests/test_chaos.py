"""Chaos: a batch with downloads against a simulator that faults a fifth of *all* responses (issue 9).

Creates, status reads, batch reads and result downloads are answered, at random, with 429 (Retry-After in
seconds, as an HTTP-date, or none), 500/503 JSON, a proxy's 502 HTML page, a dropped connection, a reply slower
than the client's timeout (after the work is done: a create creates), truncated JSON, or (creates) a connection
dropped after the task was created. What must hold whatever happens: every input gets exactly one outcome; the
server created exactly one task per input (no duplicate, none without a key); every ok outcome has its whole
file; every error carries a task id or an idempotency key; nothing is logged at WARNING or above and no
exception escapes; slots and watches are back to 0; the client still works afterwards.

``make test`` runs 300 inputs; ``make chaos`` runs ``CHAOS_INPUTS=1500`` and prints the figures.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink

INPUTS = int(os.environ.get("CHAOS_INPUTS", "300"))
_OURS = {"evolink_async", "asyncio"}


def _report(figures: dict[str, Any]) -> None:
    """``make chaos`` (CHAOS_REPORT=docs/chaos-figures.md) keeps the last run's figures as a Markdown table."""
    path = os.environ.get("CHAOS_REPORT")
    if not path:
        return
    rows = "\n".join(f"| {key} | {value} |" for key, value in figures.items())
    Path(path).write_text(
        "# Chaos: the last `make chaos` run\n\n"
        "Written by `tests/test_chaos.py` (see [Reliability](reliability.md)).\n\n"
        f"| figure | value |\n|---|---|\n{rows}\n",
        encoding="utf-8",
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_a_batch_with_downloads_survives_a_fifth_of_all_responses_faulted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    async with FakeEvolink(chaos=0.2, chaos_seed=7, initial_credits=1e9) as fake:
        client = evo.AsyncClient(
            fake.api_key,
            base_url=fake.base_url,
            timeouts=evo.Timeouts(request=0.5, poll=0.5),
            retry=evo.RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.05),
            poll=evo.PollPolicy(min_interval=0.05, batch_interval=0.02),
            limits=evo.Limits(max_in_flight=64, requests_per_second=None),
        )
        with caplog.at_level(logging.DEBUG):  # every logger, every level: the key must be in none of them
            async with client:
                with anyio.fail_after(600):
                    outcomes = await client.generate_all(
                        (f"[duration:0.2] [eta:0] chaos {i}" for i in range(INPUTS)), download_to=out
                    )
                assert client.in_flight == 0
                assert client.waiting == 0
                # Still works afterwards (with the storm over).
                fake.chaos = 0.0
                after = await client.generate("[duration:0.05] [eta:0] after the storm")
                assert after.status is evo.TaskStatus.COMPLETED
        stats = fake.stats
        figures: dict[str, Any] = {
            "inputs": INPUTS,
            "requests": stats.requests,
            "faults": stats.faults_applied,
            "fault share": round(stats.faults_applied / max(1, stats.requests), 3),
            "creates": stats.creates - 1,
            "replays": stats.replays,
            "ok": sum(o.ok for o in outcomes),
            "not ok": dict(Counter(type(o.error).__name__ for o in outcomes if not o.ok)),
            "seconds": round(time.monotonic() - started, 1),
        }
        print("chaos figures:", figures)
        _report(figures)
        assert stats.faults_applied / stats.requests >= 0.18  # a fifth, give or take the dice
        assert [o.index for o in outcomes] == list(range(INPUTS))  # exactly one outcome each
        assert stats.creates_without_key == 0
        assert stats.creates == INPUTS + 1  # one task per input (and the one after the storm), no duplicate
        for outcome in outcomes:
            if outcome.ok:
                (path,) = outcome.files
                assert path.read_bytes().startswith(PNG_SIGNATURE)
            else:
                error = outcome.error
                assert getattr(error, "task_id", None) or getattr(error, "idempotency_key", None), repr(error)
        # No warning of ours, and no unhandled error (asyncio logs a task's exception nobody retrieved).
        noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.split(".")[0] in _OURS]
        assert not noisy, caplog.text
        assert fake.api_key not in caplog.text
        assert all(fake.api_key not in repr(o) for o in outcomes)
        file_requests = [r for r in stats.requests_seen if r.path.startswith("/files/")]
        assert file_requests
        assert not [r for r in file_requests if "authorization" in {k.lower() for k in r.headers}]
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".part")]
        assert not leftovers
