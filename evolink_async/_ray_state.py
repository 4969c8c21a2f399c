"""What every actor of a Ray batch shares, kept in one named Ray actor: the pace, the in-flight leases, and per
job its ledger (each input's key, task id, credits) and its budget.

This module is plain Python (no Ray import): :mod:`evolink_async._ray_coordinator` runs :class:`SharedState` as an
async Ray actor, found by name, so that every job on the cluster that uses one API key shares it.
One process holds the state, so one clock and one event loop order everything: no scripts, no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

__all__ = ("SharedState",)

# How long a caller waits in the actor for a slot before it asks again (a freed slot wakes it at once).
_SLOT_WAIT = 1.0


class _Bucket:
    """The shared token bucket: the same rules as the Redis coordinator's script (a 429 halves the rate, down
    to 1/16, and each second gives back 1/20 of the nominal rate; ``retry_after`` pauses everyone)."""

    def __init__(self) -> None:
        self.tokens: float | None = None
        self.ts = time.monotonic()
        self.rate: float | None = None
        self.paused = 0.0

    def _load(self, nominal: float, burst: int, now: float) -> None:
        rate = min(self.rate if self.rate is not None else nominal, nominal)
        elapsed = max(0.0, now - self.ts)
        if rate < nominal:
            rate = min(nominal, rate + elapsed * nominal / 20)
        tokens = self.tokens if self.tokens is not None else float(burst)
        self.tokens = min(float(burst), tokens + elapsed * rate)
        self.rate, self.ts = rate, now

    def take(self, nominal: float, burst: int, needed: float) -> float:
        now = time.monotonic()
        self._load(nominal, burst, now)
        assert self.tokens is not None
        assert self.rate is not None
        if self.paused > now:
            return self.paused - now
        if self.tokens >= needed:
            self.tokens -= 1.0
            return 0.0
        return (needed - self.tokens) / self.rate

    def slow(self, nominal: float, retry_after: float) -> None:
        now = time.monotonic()
        self._load(nominal, 1, now)
        assert self.rate is not None
        self.rate = max(nominal / 16, self.rate / 2)
        self.tokens = min(self.tokens or 0.0, 0.0)
        if retry_after > 0:
            self.paused = max(self.paused, now + retry_after)


class _Job:
    """One job's ledger (input key -> what became of it) and its committed credits."""

    __slots__ = ("committed", "entries", "prices")

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.committed = 0.0
        self.prices: dict[str, float] = {}


class SharedState:
    """The state behind :class:`~evolink_async._ray_coordinator.RayCoordinator` and the Ray journal."""

    def __init__(self) -> None:
        self._bucket = _Bucket()
        self._leases: dict[str, float] = {}  # lease id -> expiry (monotonic)
        self._freed: asyncio.Event | None = None
        self._ids = itertools.count()
        self._jobs: dict[str, _Job] = {}

    # -- the pace --------------------------------------------------------------------------------------

    async def take_token(self, rate: float, burst: int, needed: float) -> float:
        return self._bucket.take(rate, burst, needed)

    async def rate_limited(self, rate: float, retry_after: float) -> None:
        self._bucket.slow(rate, retry_after)

    # -- the in-flight cap -----------------------------------------------------------------------------

    async def acquire_slot(self, limit: int, lease_seconds: float, wait: float = _SLOT_WAIT) -> str | None:
        """A lease on one of ``limit`` slots, or None after ``wait`` seconds (the caller asks again)."""
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            for lease in [lease for lease, expiry in self._leases.items() if expiry <= now]:
                del self._leases[lease]  # its holder died (no renewal): the slot comes back
            if len(self._leases) < limit:
                lease = f"lease-{next(self._ids)}"
                self._leases[lease] = now + lease_seconds
                return lease
            if now >= deadline:
                return None
            if self._freed is None:
                self._freed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._freed.wait(), timeout=min(deadline - now, lease_seconds))

    async def renew(self, leases: list[str], lease_seconds: float) -> int:
        """Renew the leases still held; how many were."""
        expiry = time.monotonic() + lease_seconds
        renewed = 0
        for lease in leases:
            if lease in self._leases:
                self._leases[lease] = expiry
                renewed += 1
        return renewed

    async def release(self, leases: list[str]) -> None:
        for lease in leases:
            self._leases.pop(lease, None)
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()

    async def in_flight(self) -> int:
        """Slots held now (for tests and dashboards)."""
        now = time.monotonic()
        return sum(1 for expiry in self._leases.values() if expiry > now)

    # -- a job's ledger and budget ---------------------------------------------------------------------

    def _job(self, job: str) -> _Job:
        found = self._jobs.get(job)
        if found is None:
            found = self._jobs[job] = _Job()
        return found

    async def entries(self, job: str, keys: list[str]) -> list[dict[str, Any] | None]:
        """What the ledger holds for these inputs (one call for a whole block)."""
        entries = self._job(job).entries
        return [entries.get(key) for key in keys]

    async def record(self, job: str, records: list[tuple[str, dict[str, Any]]]) -> None:
        """Apply ``(key, changes)`` records in order (a block's writes, sent together)."""
        entries = self._job(job).entries
        for key, changes in records:
            entries.setdefault(key, {}).update(changes)

    async def reserve(self, job: str, amount: float, budget: float) -> bool:
        state = self._job(job)
        if state.committed + amount > budget + 1e-9:
            return False
        state.committed += amount
        return True

    async def adjust(self, job: str, delta: float) -> None:
        self._job(job).committed += delta

    async def spent(self, job: str) -> float:
        return self._job(job).committed

    async def known_price(self, job: str, price_class: str) -> float | None:
        return self._job(job).prices.get(price_class)

    async def learn_price(self, job: str, price_class: str, price: float) -> None:
        prices = self._job(job).prices
        prices[price_class] = max(price, prices.get(price_class, price))

    async def forget(self, job: str) -> bool:
        """Drop a job's ledger and committed credits (a rerun then replays its creates by key)."""
        return self._jobs.pop(job, None) is not None
