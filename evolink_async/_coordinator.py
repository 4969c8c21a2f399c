"""The seam between the engine and what several processes share: the pace, the in-flight cap, the callback relay.

Without a coordinator everything is local (in-process), as before. ``evolink_async.redis.RedisCoordinator`` is the
one implementation that puts them in Redis. The engine talks only to this small protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio.abc

__all__ = ("Coordinator", "OnRelayed")

#: Called with a final task's JSON that another process confirmed (after a callback it received).
OnRelayed = Callable[[Mapping[str, Any]], None]


class Coordinator(Protocol):
    """What the engine needs of a coordinator. Every method may raise ``CoordinatorError``."""

    async def take_token(self, *, rate: float, burst: int, needed: float) -> float:
        """Take one request token of the shared pace if ``needed`` are there: 0.0, else seconds to wait."""
        ...

    async def rate_limited(self, *, rate: float, retry_after: float | None) -> None:
        """A 429 arrived: slow every process down (and pause them all for ``retry_after``)."""
        ...

    async def acquire_slot(self, limit: int) -> str:
        """Wait for one of ``limit`` in-flight slots shared by all processes; return its lease id."""
        ...

    def release_slot(self, lease: str) -> None:
        """Give a slot back (at once locally; in the shared store soon after, in the background)."""
        ...

    async def expect(self, task_id: str) -> None:
        """This task was created with the shared callback URL: a callback for it may be relayed."""
        ...

    async def is_expected(self, task_id: str) -> bool:
        """Whether a process created this task with the callback URL (a callback for any other id is ignored)."""
        ...

    async def publish(self, task: Mapping[str, Any]) -> None:
        """Tell every process that this task (a confirmed final task) is final."""
        ...

    async def run(self, on_relayed: OnRelayed, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The background work (lease renewals and releases, the relay's subscription) until cancelled;
        ``task_status.started()`` once the relay listens (no relayed task is missed from then on)."""
        ...
