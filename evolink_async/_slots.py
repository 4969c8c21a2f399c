"""Capacity slots without an event-loop round trip when one is free.

``async with limiter`` (anyio) always yields to the loop, even when a slot is free; in a batch of thousands of
tasks that is one extra loop iteration per slot taken. :class:`Slot` takes a free slot at once and waits only
when the limiter is full. With a coordinator, a slot is also one of the slots all its processes share (a lease).
"""

from __future__ import annotations

import anyio

from ._coordinator import Coordinator

__all__ = ("Slot",)


class Slot:
    """One slot of ``limiter``, borrowed on behalf of this object (a task may hold several slots), and, with
    ``shared``, a lease on one of the ``limiter``'s total slots across processes."""

    __slots__ = ("_limiter", "_shared", "held", "lease")

    def __init__(self, limiter: anyio.CapacityLimiter, shared: Coordinator | None = None) -> None:
        self._limiter = limiter
        self._shared = shared
        self.held = False
        self.lease: str | None = None

    async def acquire(self) -> None:
        try:
            # A free slot is taken at once; only a full limiter costs a wait (and an event-loop round trip).
            self._limiter.acquire_on_behalf_of_nowait(self)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(self)
        self.held = True
        if self._shared is not None:
            try:
                self.lease = await self._shared.acquire_slot(int(self._limiter.total_tokens))
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        if self.held:
            self.held = False
            self._limiter.release_on_behalf_of(self)
            if self.lease is not None and self._shared is not None:
                lease, self.lease = self.lease, None
                self._shared.release_slot(lease)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
