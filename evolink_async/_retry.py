"""The one retry mechanism (API requests, downloads): a policy, a hook that decides, a pure backoff.

    result = await retrying(policy, attempt, decide, observers=client_observers)

``decide(exc)`` answers whether to retry and how long to wait: ``False`` (give up: the exception is raised),
``True`` (back off by the policy's schedule) or a number of seconds the server asked for (``Retry-After``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio

from . import events
from ._config import RetryPolicy

__all__ = ("Decide", "backoff_delay", "parse_retry_after", "retrying")

log = logging.getLogger("evolink_async")

T = TypeVar("T")

#: The hook: False (do not retry), True (retry after the policy's backoff) or seconds to wait (Retry-After).
Decide = Callable[[Exception], "bool | float"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt`` (1 = first retry).

    Jitter over the upper half of an exponential ceiling; a server's ``Retry-After`` wins (capped by
    ``policy.max_retry_after``) since it knows when capacity returns.
    """
    if retry_after is not None:
        return min(retry_after, policy.max_retry_after)
    ceiling = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (attempt - 1))
    # Half fixed, half random: spreads retries of many clients without ever retrying instantly.
    return ceiling / 2 + random.uniform(0, ceiling / 2)


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    decide: Decide,
    *,
    observers: events.Observers,
    max_attempts: int | None = None,
    what: str = "request",
) -> T:
    """Run ``attempt`` until it returns, ``decide`` says stop, or the attempts run out (the last error raised)."""
    attempts = max_attempts if max_attempts is not None else policy.max_attempts
    number = 0
    while True:
        number += 1
        try:
            return await attempt()
        except Exception as exc:
            verdict = decide(exc)
            if verdict is False or number >= attempts:
                raise
            hint = None if verdict is True else float(verdict)
            delay = backoff_delay(policy, number, hint)
            log.info("%s failed (%s); retry %d/%d in %.2fs", what, exc, number, attempts - 1, delay)
            if observers.active:
                observers.emit(events.RetryScheduled(what, number, delay, f"{type(exc).__name__}: {exc}"))
        await anyio.sleep(delay)
