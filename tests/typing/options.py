"""User code that configures a client: Timeouts, RetryPolicy, PollPolicy, Limits — frozen keyword-only values
(see results.py for how the ``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

import aiohttp
import attrs

import evolink_async as evo


async def configured(session: aiohttp.ClientSession) -> None:
    timeouts = evo.Timeouts(connect=5, request=30.0, poll=10, wait=600)
    retry = evo.RetryPolicy(max_attempts=6, initial_backoff=0.25, max_backoff=10, max_retry_after=60)
    poll = evo.PollPolicy(min_interval=1.0, max_interval=20, batch=True, video_estimate=240)
    limits = evo.Limits(max_in_flight=50, requests_per_second=None, burst=20, max_download_bytes=2**30)
    wider: evo.Limits = attrs.evolve(limits, max_in_flight=100)
    in_flight: int = wider.max_in_flight
    pace: float | None = limits.requests_per_second
    wait: float | None = timeouts.wait
    print(in_flight, pace, wait, retry.max_attempts, poll.batch)
    async with evo.AsyncClient(
        "key",
        base_url="http://127.0.0.1:8080",
        timeouts=timeouts,
        retry=retry,
        poll=poll,
        limits=limits,
        session=session,
        callback_url="https://example.com/evolink/callback",
    ) as client:
        print(client.limits.max_in_flight, client.in_flight, client.waiting, client.is_closed)

    # Options are keyword-only, with numbers where numbers go.
    evo.Limits(16)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    evo.Timeouts(request="60")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.RetryPolicy(max_attempts=2.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.PollPolicy(batch="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.Limits(max_in_fligth=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # ... and frozen: change one by copying (attrs.evolve).
    limits.max_in_flight = 5  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    # The client takes each option as its own type.
    evo.AsyncClient("key", limits=timeouts)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    evo.AsyncClient("key", limit=limits)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
