"""The client-wide request pace: a token bucket that halves its rate on 429 and recovers on success."""

from __future__ import annotations

import time

import anyio

__all__ = ("RateLimiter",)


class RateLimiter:
    """Token bucket shared by every request of one client.

    ``rate`` None means unpaced, but a 429's ``Retry-After`` still pauses everyone. On 429 the rate
    halves (down to ``rate / 16``); each success then adds back ``rate / 20`` (additive increase,
    multiplicative decrease), so a client settles just under the server's limit.
    """

    def __init__(self, rate: float | None, burst: int) -> None:
        self.nominal = rate
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = anyio.Lock()
        self.waiting = 0
        self.slowdowns = 0

    def __repr__(self) -> str:
        rate = "unpaced" if self.rate is None else f"{self.rate:.3g}/s"
        return f"<RateLimiter {rate} burst={self.burst} waiting={self.waiting}>"

    async def acquire(self) -> None:
        """Wait for this request's turn."""
        if self.rate is None and not self._lock.locked() and self._paused_until <= time.monotonic():
            return  # unpaced and not paused: no queue to join (and no event-loop round trip per request)
        self.waiting += 1
        try:
            # The lock makes waiters queue in order; sleeping while holding it is the point.
            async with self._lock:
                while True:
                    now = time.monotonic()
                    if self._paused_until > now:
                        await anyio.sleep(self._paused_until - now)
                        continue
                    if self.rate is None:
                        return
                    self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if self._tokens >= 1.0:
                        self._tokens -= 1.0
                        return
                    await anyio.sleep((1.0 - self._tokens) / self.rate)
        finally:
            self.waiting -= 1

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
