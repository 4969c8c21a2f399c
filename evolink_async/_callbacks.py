"""Callback bookkeeping, in one place: which tasks expect a callback, and confirming the ones that came.

EvoLink signs nothing, so a callback is only a hint. The registry knows the ids this client created with its
callback URL (bounded: the oldest are forgotten and then simply poll). When a callback names a task someone is
waiting on, the registry confirms it with one read of our own — at most one read at a time per task, and at
most one per ``min_confirm_interval`` — and that read, not the callback's body, resolves the waiter.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

__all__ = ("CallbackRegistry", "CallbackStats")

log = logging.getLogger("evolink_async")

_MAX_EXPECTED = 100_000


@attrs.define
class CallbackStats:
    """What the receiver has seen."""

    received: int = 0
    confirmed: int = 0
    ignored: int = 0
    duplicates: int = 0
    rejected: int = 0
    confirm_failures: int = 0
    #: Tasks confirmed here after a callback and relayed to the other processes (with a coordinator).
    relayed: int = 0


@attrs.define(slots=True)
class _Expected:
    """One task created with our callback URL."""

    #: A callback named it (true or not): the poller finding it final is then no sign of a lost receiver.
    announced: bool = False
    #: A confirmation read is running or scheduled; ``recheck``: another callback came meanwhile.
    confirming: bool = False
    recheck: bool = False
    confirmed_at: float = float("-inf")


class CallbackRegistry:
    """The tasks that expect a callback, and the confirmation of callbacks that arrive.

    The engine binds three functions: ``read(task_id)`` (a status read that also updates waiters),
    ``is_waited_on(task_id)`` (someone waits on it and it is not settled), ``spawn(fn, *args)`` (run work that
    outlives a web request; False once the client is closing).
    """

    def __init__(
        self,
        *,
        read: Callable[[str], Awaitable[Any]],
        is_waited_on: Callable[[str], bool],
        spawn: Callable[..., bool],
        relay: Callable[[Any], Awaitable[None]] | None = None,
        relay_expected: Callable[[str], Awaitable[bool]] | None = None,
        min_confirm_interval: float = 1.0,
        max_expected: int = _MAX_EXPECTED,
    ) -> None:
        self._read = read
        self._is_waited_on = is_waited_on
        self._spawn = spawn
        self._relay = relay
        self._relay_expected = relay_expected
        self.min_confirm_interval = min_confirm_interval
        self._max = max_expected
        self._expected: OrderedDict[str, _Expected] = OrderedDict()
        # Tasks waited on but not created with our callback URL, named by a callback: their confirmation
        # state only (the min_confirm_interval). Never "expected": their waits keep polling normally.
        self._strays: OrderedDict[str, _Expected] = OrderedDict()
        self.stats = CallbackStats()

    def __repr__(self) -> str:
        return f"<CallbackRegistry expected={len(self._expected)} {self.stats}>"

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._expected

    def __len__(self) -> int:
        return len(self._expected)

    def expect(self, task_id: str) -> None:
        """``task_id`` was created with our callback URL: its waits lean on callbacks, not polling."""
        if task_id in self._expected:  # a replayed create: keep what is known (a confirmation under way)
            self._expected.move_to_end(task_id)
            return
        self._expected[task_id] = _Expected()
        if len(self._expected) > self._max:
            self._expected.popitem(last=False)

    def announced(self, task_id: str) -> bool:
        """Whether a callback named this task."""
        state = self._expected.get(task_id)
        return state is not None and state.announced

    def announce(self, task_id: str) -> str:
        """A callback named ``task_id``: ``ignored``, ``duplicate``, ``accepted`` or ``closing`` (the verdict)."""
        state = self._expected.get(task_id)
        if state is not None:
            # Ours, even if nobody waits yet (submit() now, wait() later): the wait then reads at once
            # instead of leaning on the safety net.
            state.announced = True
        if not self._is_waited_on(task_id):
            if self._relay is not None:
                return self._relay_for_others(task_id)
            # Nobody waits on it: acknowledge so EvoLink stops retrying, and keep nothing more.
            self.stats.ignored += 1
            log.debug("callback for task %s ignored: not waiting on it", task_id)
            return "ignored"
        if state is None:
            # Waited on, though not created with our callback URL (its request had its own, or another
            # client made it): confirm it, without changing how its waits poll.
            state = self._stray(task_id)
        if state.confirming:
            # A confirmation is running or scheduled: have one more read follow it, so that a genuine
            # callback arriving just after a forged or duplicate one is never lost. Still one read at a time.
            state.recheck = True
            self.stats.duplicates += 1
            return "duplicate"
        # At most one read per min_confirm_interval: a callback sooner than that is confirmed when it ends.
        delay = max(0.0, state.confirmed_at + self.min_confirm_interval - time.monotonic())
        state.confirming = True
        if not self._spawn(self._confirm, task_id, state, delay):
            state.confirming = False
            return "closing"
        if delay > 0:
            self.stats.duplicates += 1
            return "duplicate"
        return "accepted"

    def _relay_for_others(self, task_id: str) -> str:
        """Another process may wait on it (replicas behind one callback URL): confirm, and relay if final."""
        state = self._stray(task_id)
        if state.confirming:
            self.stats.duplicates += 1
            return "duplicate"
        state.confirming = True
        if not self._spawn(self._confirm_and_relay, task_id, state):
            state.confirming = False
            return "closing"
        return "accepted"

    async def _confirm_and_relay(self, task_id: str, state: _Expected) -> None:
        assert self._relay is not None
        try:
            if self._relay_expected is not None and not await self._relay_expected(task_id):
                # No replica created it with our callback URL: a forged or foreign callback costs no read.
                self.stats.ignored += 1
                return
            for attempt in range(2):
                # Our own read, as for a callback of our own: the callback's body is never relayed.
                task = await self._read(task_id)
                self.stats.confirmed += 1
                if task.is_final:
                    await self._relay(task)
                    self.stats.relayed += 1
                    return
                if attempt == 0:
                    await anyio.sleep(self.min_confirm_interval)  # the server may lag behind its callback
        except Exception as exc:  # a relay that fails leaves the other process its safety net
            self.stats.confirm_failures += 1
            log.warning("could not confirm or relay the callback of task %s: %s", task_id, exc)
        finally:
            state.confirming = False
            if self._strays.get(task_id) is state:
                del self._strays[task_id]

    def _stray(self, task_id: str) -> _Expected:
        state = self._strays.get(task_id)
        if state is None:
            # Bounded: only tasks someone waits on get here, and the oldest are dropped past the cap.
            state = self._strays[task_id] = _Expected()
            if len(self._strays) > self._max:
                self._strays.popitem(last=False)
        return state

    def _still_waited(self, task_id: str, state: _Expected) -> bool:
        ours = self._expected.get(task_id) is state or self._strays.get(task_id) is state
        return ours and self._is_waited_on(task_id)

    async def _confirm(self, task_id: str, state: _Expected, delay: float) -> None:
        follow_up = True
        try:
            while True:
                if delay > 0:
                    await anyio.sleep(delay)
                if not self._still_waited(task_id, state):
                    return  # nobody waits any more, or a read found it final meanwhile
                state.recheck = False
                await self._confirm_once(task_id, state)
                settled = not self._still_waited(task_id, state)
                if not state.recheck and (settled or not follow_up):
                    return
                if not state.recheck:
                    # The read says "not yet" although a callback said "done": the server may lag behind
                    # its own callback. Look once more shortly rather than wait for the safety net.
                    follow_up = False
                delay = self.min_confirm_interval
        finally:
            state.confirming = False
            if not self._is_waited_on(task_id) and self._strays.get(task_id) is state:
                del self._strays[task_id]

    async def _confirm_once(self, task_id: str, state: _Expected) -> None:
        try:
            await self._read(task_id)  # our own read, with our key: the callback's body is never used
            self.stats.confirmed += 1
        except Exception as exc:  # whatever a read brings, a callback must not take the client down
            # The waiter is not lost: its safety-net polling goes on.
            self.stats.confirm_failures += 1
            log.info("confirming callback for task %s failed: %s", task_id, exc)
        finally:
            state.confirmed_at = time.monotonic()
