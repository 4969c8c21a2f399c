"""Backoff schedule and ``Retry-After`` parsing."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from ._config import RetryPolicy

__all__ = ("backoff_delay", "parse_retry_after")


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
