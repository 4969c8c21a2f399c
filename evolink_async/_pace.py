"""The client-wide request pace: a token bucket that serves reads before creates, halves on 429, recovers."""

from __future__ import annotations

import time
from collections import deque

import anyio

from ._coordinator import Coordinator

__all__ = ("RateLimiter",)


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: anyio.Event | None = None


class RateLimiter:
    """Token bucket shared by every request of one client::

        await limiter.acquire(urgent=True)    # a status read: goes before every queued create

    ``rate`` None means unpaced, but a 429's ``Retry-After`` still pauses everyone. Waiters are served
    in order within two queues, urgent first: a read ends a wait and frees a slot, a create only adds
    work. Creates also leave ``reserve`` tokens (a quarter of the burst) in the bucket for reads: reads due
    together (tasks created together finish together) then go at once instead of one per token. On 429 the
    rate halves (down to ``rate / 16``); each success then adds back ``rate / 20`` (additive increase,
    multiplicative decrease), so a client settles just under the server's limit.

    With a ``shared`` coordinator the bucket (and the 429 slow-down) is the one all its processes share; the
    order of this process's requests (reads first) stays local.
    """

    def __init__(self, rate: float | None, burst: int, shared: Coordinator | None = None) -> None:
        self.shared = shared if rate is not None else None
        self.nominal = rate
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self.reserve = burst // 4
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._urgent: deque[_Waiter] = deque()
        self._normal: deque[_Waiter] = deque()
        self.slowdowns = 0

    def __repr__(self) -> str:
        rate = "unpaced" if self.rate is None else f"{self.rate:.3g}/s"
        return f"<RateLimiter {rate} burst={self.burst} queued={self.queued}>"

    @property
    def queued(self) -> int:
        """Requests queued for their turn right now."""
        return len(self._urgent) + len(self._normal)

    def _wait_time(self, now: float, urgent: bool) -> float:
        """Seconds until a token is free for this kind of request (0: now), refilling the bucket first."""
        if self._paused_until > now:
            return self._paused_until - now
        if self.rate is None:
            return 0.0
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        needed = 1.0 if urgent else 1.0 + self.reserve
        return 0.0 if self._tokens >= needed else (needed - self._tokens) / self.rate

    def _take(self) -> None:
        if self.rate is not None:
            self._tokens -= 1.0

    def _head(self) -> _Waiter | None:
        queue = self._urgent or self._normal
        return queue[0] if queue else None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None and head.event is not None:
            head.event.set()

    async def _shared_wait(self, urgent: bool) -> float:
        """A token of the shared bucket (0.0), or the seconds to wait; the local bucket if it fell back."""
        assert self.shared is not None
        assert self.rate is not None
        now = time.monotonic()
        if self._paused_until > now:
            return self._paused_until - now
        needed = 1.0 if urgent else 1.0 + self.reserve
        wait = await self.shared.take_token(rate=self.nominal or self.rate, burst=self.burst, needed=needed)
        if wait >= 0:
            return wait
        return self._local_wait(urgent)  # Redis unreachable, fallback="local"

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for this request's turn; ``urgent`` (status reads) go before queued creates."""
        shared = self.shared is not None
        if not shared and not self._urgent and not self._normal and self._wait_time(time.monotonic(), urgent) <= 0:
            self._take()  # nobody queued and a token free: no queue to join, no event-loop round trip
            return
        me = _Waiter()
        queue = self._urgent if urgent else self._normal
        queue.append(me)
        try:
            while True:
                if self._head() is me:
                    # A token of the shared bucket, or of this client's own: 0 when taken, else the wait.
                    delay = await self._shared_wait(urgent) if shared else self._local_wait(urgent)
                    if delay <= 0:
                        return
                    # Sleeping on time, not on an event: an urgent request arriving meanwhile becomes the
                    # head and sleeps on its own; this one finds out when it wakes and steps back.
                    await anyio.sleep(delay)
                else:
                    me.event = anyio.Event()
                    await me.event.wait()
        finally:
            queue.remove(me)
            self._wake_head()

    def _local_wait(self, urgent: bool) -> float:
        delay = self._wait_time(time.monotonic(), urgent)
        if delay <= 0:
            self._take()
        return delay

    async def rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: slow down here, and every process sharing the pace."""
        self.on_rate_limited(retry_after)
        if self.shared is not None and self.nominal is not None:
            await self.shared.rate_limited(rate=self.nominal, retry_after=retry_after)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: slow down, and pause everyone for ``retry_after`` seconds if given."""
        self.slowdowns += 1
        now = time.monotonic()
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        if self.rate is not None and self.nominal is not None:
            self.rate = max(self.nominal / 16, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)
            self._updated = now

    def on_success(self) -> None:
        """A request went through: recover toward the nominal rate."""
        if self.rate is not None and self.nominal is not None and self.rate < self.nominal:
            self.rate = min(self.nominal, self.rate + self.nominal / 20)
