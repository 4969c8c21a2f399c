"""Callback bookkeeping, in one place: which tasks expect a callback, and what to do when one arrives.

EvoLink signs nothing, so a callback is only a hint. The registry knows the ids this client created with its
callback URL (bounded: the oldest are forgotten and then simply poll). It decides; the engine acts: for a callback
naming a task someone waits on, the answer is "confirm it with one read of our own" — at most one read at a time
per task, and at most one per ``min_confirm_interval`` — and that read, not the callback's body, resolves the
waiter. The registry calls nothing and is asked by no one but the engine (``Engine.on_callback``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import attrs

__all__ = ("CallbackRegistry", "CallbackStats", "Decision")

log = logging.getLogger("evolink_async")

_MAX_EXPECTED = 100_000

#: What the receiver answers EvoLink (see ``_webhooks``): the callback was taken (``accepted``), will be confirmed
#: after the minimum interval (``deferred``), joins a confirmation under way (``duplicate``), concerns nobody here
#: (``ignored``), or came while the client closes (``closing``).
Verdict = Literal["accepted", "deferred", "duplicate", "ignored", "closing"]


@attrs.define
class CallbackStats:
    """What the receiver has seen."""

    received: int = 0
    confirmed: int = 0
    ignored: int = 0
    #: Callbacks for a task whose confirmation was already under way (one more read follows it).
    duplicates: int = 0
    #: Callbacks that came sooner than ``min_confirm_interval`` after the task's last confirmation (read later).
    deferred: int = 0
    rejected: int = 0
    confirm_failures: int = 0
    #: Tasks confirmed here after a callback and relayed to the other processes (with a coordinator).
    relayed: int = 0


@attrs.frozen
class Decision:
    """The registry's answer to one callback: the verdict, and what the engine is to do (``confirm``: read after
    ``delay`` seconds, following :meth:`CallbackRegistry.after_read`; ``relay``: read, and relay it if final)."""

    verdict: Verdict
    action: Literal["confirm", "relay", "nothing"] = "nothing"
    delay: float = 0.0


# The answers that carry no action, made once (a flood of junk callbacks allocates nothing per callback).
_IGNORED = Decision("ignored")
_DUPLICATE = Decision("duplicate")
_RELAY = Decision("accepted", "relay")


@attrs.define(slots=True)
class _State:
    """One task's callback state."""

    #: A callback named it (true or not): the poller finding it final is then no sign of a lost receiver.
    announced: bool = False
    #: A confirmation read is running or scheduled; ``recheck``: another callback came meanwhile.
    confirming: bool = False
    recheck: bool = False
    #: After a read that said "not yet", one more look shortly (the server may lag behind its own callback).
    follow_up: bool = True
    confirmed_at: float = float("-inf")


class CallbackRegistry:
    """The tasks that expect a callback, and the decisions on callbacks that arrive (see the module)."""

    def __init__(
        self,
        *,
        min_confirm_interval: float = 1.0,
        max_expected: int = _MAX_EXPECTED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_confirm_interval = min_confirm_interval
        self._max = max_expected
        self._clock = clock
        self._expected: OrderedDict[str, _State] = OrderedDict()
        # Tasks waited on but not created with our callback URL, named by a callback: their confirmation
        # state only (the min_confirm_interval). Never "expected": their waits keep polling normally.
        self._strays: OrderedDict[str, _State] = OrderedDict()
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
        self._expected[task_id] = _State()
        if len(self._expected) > self._max:
            self._expected.popitem(last=False)

    def announced(self, task_id: str) -> bool:
        """Whether a callback named this task."""
        state = self._expected.get(task_id)
        return state is not None and state.announced

    # -- a callback arrives ------------------------------------------------------------------------

    def decide(self, task_id: str, *, waited_on: bool, relaying: bool) -> Decision:
        """A callback named ``task_id``; ``waited_on``: someone here waits on it; ``relaying``: other processes
        may (a coordinator relays). The engine then acts, or calls :meth:`abandon` if it cannot."""
        state = self._expected.get(task_id)
        if state is not None:
            # Ours, even if nobody waits yet (submit() now, wait() later): the wait then reads at once
            # instead of leaning on the safety net.
            state.announced = True
        if not waited_on:
            if relaying:
                return self._relay_for_others(task_id)
            # Nobody waits on it: acknowledge so EvoLink stops retrying, and keep nothing more.
            self.stats.ignored += 1
            log.debug("callback for task %s ignored: not waiting on it", task_id)
            return _IGNORED
        if state is None:
            # Waited on, though not created with our callback URL (its request had its own, or another
            # client made it): confirm it, without changing how its waits poll.
            state = self._stray(task_id)
        if state.confirming:
            # A confirmation is running or scheduled: have one more read follow it, so that a genuine
            # callback arriving just after a forged or duplicate one is never lost. Still one read at a time.
            state.recheck = True
            self.stats.duplicates += 1
            return _DUPLICATE
        # At most one read per min_confirm_interval: a callback sooner than that is confirmed when it ends.
        delay = max(0.0, state.confirmed_at + self.min_confirm_interval - self._clock())
        state.confirming, state.follow_up = True, True
        if delay > 0:
            self.stats.deferred += 1
            return Decision("deferred", "confirm", delay)
        return Decision("accepted", "confirm")

    def _relay_for_others(self, task_id: str) -> Decision:
        """Another process may wait on it (replicas behind one callback URL): confirm, and relay if final."""
        state = self._stray(task_id)
        if state.confirming:
            self.stats.duplicates += 1
            return _DUPLICATE
        state.confirming = True
        return _RELAY

    def abandon(self, task_id: str) -> Verdict:
        """The engine cannot act on its decision (the client is closing)."""
        self._end(task_id, waited_on=False)
        return "closing"

    # -- the engine's confirmation reads -------------------------------------------------------------

    def should_read(self, task_id: str, *, waited_on: bool) -> bool:
        """Before a confirmation read: whether it is still wanted (someone waits, and nothing settled it)."""
        state = self._state(task_id)
        if state is None or not waited_on:
            return False
        state.recheck = False
        return True

    def after_read(self, task_id: str, *, ok: bool, waited_on: bool) -> float | None:
        """A confirmation read ended (``ok``: it answered); the seconds until the next one, or None: done."""
        if ok:
            self.stats.confirmed += 1
        else:
            self.stats.confirm_failures += 1
        state = self._state(task_id)
        if state is None:
            return None
        state.confirmed_at = self._clock()
        if state.recheck:
            return self.min_confirm_interval
        if not waited_on or not state.follow_up:
            return None
        state.follow_up = False  # "not yet" although a callback said "done": look once more, shortly
        return self.min_confirm_interval

    def relayed(self, *, confirmed: int, relayed: bool, ignored: bool = False, failed: bool = False) -> None:
        """What a relay confirmation did (its reads, whether it relayed, or was ignored or failed)."""
        self.stats.confirmed += confirmed
        self.stats.relayed += relayed
        self.stats.ignored += ignored
        self.stats.confirm_failures += failed

    def confirmation_ended(self, task_id: str, *, waited_on: bool) -> None:
        """The engine's confirmation of ``task_id`` is over (whatever ended it)."""
        self._end(task_id, waited_on=waited_on)

    # -- state -----------------------------------------------------------------------------------

    def _state(self, task_id: str) -> _State | None:
        return self._expected.get(task_id) or self._strays.get(task_id)

    def _end(self, task_id: str, *, waited_on: bool) -> None:
        state = self._state(task_id)
        if state is not None:
            state.confirming = False
        if not waited_on:
            self._strays.pop(task_id, None)

    def _stray(self, task_id: str) -> _State:
        state = self._strays.get(task_id)
        if state is None:
            # Bounded: only tasks someone waits on get here, and the oldest are dropped past the cap.
            state = self._strays[task_id] = _State()
            if len(self._strays) > self._max:
                self._strays.popitem(last=False)
        return state
