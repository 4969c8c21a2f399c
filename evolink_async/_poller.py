"""The shared poll scheduler: one loop per client, a heap of next-check times, few requests.

Each watched task has one entry in a heap keyed by when it should next be read. The loop sleeps until
the earliest is due (or a new task arrives), then refreshes every due task in as few requests as it
can: ``POST /v1/tasks/batch`` (up to 50 ids) when the server answers it, one ``GET`` each otherwise.
When a task is read its next check is planned from what is known: the server's ``estimated_time``,
the time elapsed, and its ``progress`` (which predicts the finish). Waiters sleep on an event the poller
sets; followers (a batch's in-flight tasks) hold no coroutine at all: the poller calls them back once their
task is final (:meth:`Poller.follow`). Per-task reads are made by a small pool of reader coroutines, never by
a task spawned per read.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

import anyio
import anyio.abc
import attrs

from . import errors, events
from ._api import API
from ._config import PollPolicy, Timeouts
from ._schedule import estimate_of, next_delay, safety_net_delay
from ._slots import Slot
from .models import Task

__all__ = ("Follower", "OnFinal", "Poller", "Watch")

#: A follower's callback: the final task, or the error that ended the following (never both None).
OnFinal = Callable[["Task | None", "BaseException | None"], None]

log = logging.getLogger("evolink_async")

_MAX_ELAPSED_TRUSTED = 7 * 24 * 3600.0
# Batch reads that fail in a row (after the endpoint once worked) before the tasks are read one by one.
_BATCH_FAILURES_BEFORE_FALLBACK = 3


_event_type: type[anyio.Event] | None = None


def _new_event() -> anyio.Event:
    """``anyio.Event()`` without looking the backend up each time (a measurable cost per task in big batches).

    The first event made under a running loop tells the backend's class; later ones are made from it.
    """
    global _event_type
    if _event_type is not None:
        return _event_type()
    event = anyio.Event()
    if type(event).__module__.startswith("anyio._backends."):  # a backend's own class, not the no-loop adapter
        _event_type = type(event)
    return event


@attrs.define(eq=False, slots=True)
class Watch:
    """The poller's record of one task that someone is waiting on: only what polling needs."""

    task_id: str
    started: float
    task: Task | None = None
    error: errors.EvolinkError | None = None
    #: How many waiters share this watch.
    refs: int = 0
    #: Reads that failed in a row (they back the schedule off).
    failures: int = 0
    due: float = 0.0
    reading: bool = False
    #: Its first read is due now and left to whoever started watching (Poller.first_read): no reader woken.
    first_inline: bool = False
    #: Submitted with our callback URL: the poller keeps only a slow safety-net schedule for it.
    callback: bool = False
    #: A callback named it (the engine says so): its final state found by a read is no sign of a lost receiver.
    announced: bool = False
    #: Reads that saw this task, and when the last one did (for the events: reads per task, detection lag).
    reads: int = 0
    read_at: float | None = None
    #: Set (and dropped) on every change; made only when someone sleeps on it, since most reads find
    #: nobody asleep yet and an Event per read is a measurable cost in large batches.
    _changed: anyio.Event | None = None
    #: Called back (once) when the task is final or fails: waits without a coroutine (see Poller.follow).
    #: Usually one: kept bare, a list only for more (one object less per task in flight).
    _followers: Follower | list[Follower] | None = None

    def add_follower(self, follower: Follower) -> None:
        current = self._followers
        if current is None:
            self._followers = follower
        elif isinstance(current, list):
            current.append(follower)
        else:
            self._followers = [current, follower]

    def remove_follower(self, follower: Follower) -> None:
        current = self._followers
        if current is follower:
            self._followers = None
        elif isinstance(current, list) and follower in current:
            current.remove(follower)

    def changed(self) -> anyio.Event:
        """The event the next change sets."""
        if self._changed is None:
            self._changed = _new_event()
        return self._changed

    @property
    def done(self) -> bool:
        return self.error is not None or (self.task is not None and self.task.is_final)

    def update(self, task: Task, observers: events.Observers) -> None:
        previous, self.task = self.task, task
        if observers.active:
            self._tell(previous, task, observers)
        self.wake()

    def _tell(self, previous: Task | None, task: Task, observers: events.Observers) -> None:
        now = time.monotonic()
        if task.is_final and (previous is None or not previous.is_final):
            since = None if self.read_at is None else now - self.read_at
            observers.emit(events.TaskFinished(task, now - self.started, self.reads, since))
        elif previous is None or (previous.raw_status, previous.progress) != (task.raw_status, task.progress):
            observers.emit(events.TaskUpdated(task))
        self.read_at = now

    def fail(self, error: errors.EvolinkError) -> None:
        if self.error is None:
            self.error = error
            self.wake()

    def wake(self) -> None:
        """Wake whoever sleeps on this watch; call its followers back once it is done."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()
        if self._followers is not None and self.done:
            followers, self._followers = self._followers, None
            for follower in followers if isinstance(followers, list) else (followers,):
                try:
                    follower.fire(None)
                except Exception:  # a callback's bug must not take the poller down, nor the other followers
                    log.exception("a follower of task %s failed", self.task_id)


class Follower:
    """A wait without a coroutine: ``on_final`` is called once, when the task is final, fails, or the
    timeout passes. It must only hand the result on (it runs inside the poller)."""

    __slots__ = ("_poller", "active", "on_final", "timeout", "watch")

    def __init__(self, poller: Poller, watch: Watch, on_final: OnFinal, timeout: float | None) -> None:
        self._poller = poller
        self.watch = watch
        self.on_final = on_final
        self.timeout = timeout
        self.active = True

    def fire(self, error: BaseException | None) -> None:
        """End the following: release the watch, then call ``on_final`` (once)."""
        if not self.active:
            return
        self.active = False
        w = self.watch
        self._poller.release(w)
        if error is None and w.error is not None:
            error = w.error
        self.on_final(None if error is not None else w.task, error)

    def stop(self) -> None:
        """Stop following (its wait was cancelled): no callback, the watch is released."""
        if self.active:
            self.active = False
            self.watch.remove_follower(self)
            self._poller.release(self.watch)


class Poller:
    """Refreshes watched tasks; one instance per client, run in the client's task group."""

    def __init__(
        self,
        api: API,
        policy: PollPolicy,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.monotonic,
        readers: int = 32,
    ) -> None:
        self._api = api
        self._observers = api.transport.observers
        self.policy = policy
        self._timeouts = timeouts
        self._clock = clock
        self._watches: dict[str, Watch] = {}
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._wake = anyio.Event()
        self._reads = anyio.CapacityLimiter(policy.max_concurrent_reads or math.inf)
        # Per-task reads: due watches queue here for a pool of reader coroutines (started as needed).
        self._due: deque[Watch] = deque()
        self._idle_readers: list[anyio.Event] = []
        self._readers = 0
        self._max_readers = policy.max_concurrent_reads or readers
        self._tg: anyio.abc.TaskGroup | None = None
        self._deadlines: list[tuple[float, int, Follower]] = []
        self._last_batch = float("-inf")
        self._sleep_until = float("-inf")  # when the sleeping loop wakes by itself (inf: only when woken)
        self._backlog = False
        self._batch_failures = 0  # batch reads failed in a row
        self._batches_reading = 0
        self._callback_miss_reported = False
        #: None until detected; then whether POST /v1/tasks/batch works on this server.
        self.batch_supported: bool | None = policy.batch
        self.closed = False

    def __repr__(self) -> str:
        mode = {None: "batch?", True: "batch", False: "per-task"}[self.batch_supported]
        return f"<Poller watching={len(self._watches)} mode={mode}>"

    @property
    def watching(self) -> int:
        return len(self._watches)

    # -- waiters' side -------------------------------------------------------------------------

    def is_waited_on(self, task_id: str) -> bool:
        """Whether someone waits on this task and it is not settled yet."""
        w = self._watches.get(task_id)
        return w is not None and not w.done

    def watch(
        self,
        task_id: str,
        task: Task | None = None,
        *,
        submitted_at: float | None = None,
        callback: bool = False,
        announced: bool = False,
    ) -> Watch:
        """Start (or join) watching a task; pair every call with :meth:`release`."""
        if self.closed:
            raise errors.ClientStateError("the client is closed")
        w = self._watches.get(task_id)
        if w is None:
            now = self._clock()
            started = submitted_at if submitted_at is not None else self._started(task, now)
            w = Watch(task_id=task_id, started=started, callback=callback)
            self._watches[task_id] = w
            w.task = task
            if task is None:
                self._schedule_first(w, now)  # nothing known about it: read it now
            elif not task.is_final:
                estimate = estimate_of(self.policy, task)
                if estimate is None:
                    estimate = self.policy.default_estimate
                # Read at once a task object from long ago (it says little about now), and a task the
                # server expects to finish at once (estimated_time 0); later reads keep min_interval.
                at_once = estimate == 0 and not callback
                stale = submitted_at is None and now - w.started >= estimate
                self._schedule_first(w, now if stale or at_once else now + self._delay(w, now))
        elif task is not None and w.task is None:
            w.update(task, self._observers)
        w.announced = w.announced or announced
        w.refs += 1
        return w

    def follow(
        self,
        task_id: str,
        task: Task | None,
        on_final: OnFinal,
        *,
        submitted_at: float | None = None,
        callback: bool = False,
        announced: bool = False,
        timeout: float | None = None,
    ) -> Follower:
        """Watch a task without a waiting coroutine: ``on_final`` is called once it is final (see Follower)."""
        w = self.watch(task_id, task, submitted_at=submitted_at, callback=callback, announced=announced)
        follower = Follower(self, w, on_final, timeout)
        if w.done:
            follower.fire(None)
            return follower
        w.add_follower(follower)
        if timeout is not None:
            deadline = self._clock() + timeout
            heapq.heappush(self._deadlines, (deadline, next(self._seq), follower))
            if deadline < self._sleep_until:
                self._wake.set()
        return follower

    def release(self, w: Watch) -> None:
        w.refs -= 1
        if w.refs <= 0 and self._watches.get(w.task_id) is w:
            del self._watches[w.task_id]  # its heap entry is skipped when it surfaces

    def mark_announced(self, task_id: str) -> None:
        """A callback named this task (the engine tells): finding it final is no sign of a lost receiver."""
        w = self._watches.get(task_id)
        if w is not None:
            w.announced = True

    def observe(self, task: Task) -> None:
        """A fresh read from elsewhere (get_task, a callback): share it with waiters."""
        w = self._watches.get(task.id)
        if w is not None and not w.done:
            w.reads += 1
            w.update(task, self._observers)
            w.failures = 0
            if not task.is_final and not w.reading:
                now = self._clock()
                self._schedule(w, now + self._delay(w, now))

    def close(self, error: errors.EvolinkError) -> None:
        """Fail every waiter with ``error`` (the client is closing)."""
        self.closed = True
        for w in list(self._watches.values()):
            w.fail(_copy_error(error))

    # -- scheduling --------------------------------------------------------------------------------

    def _started(self, task: Task | None, now: float) -> float:
        # For a task we did not just submit, its server timestamp tells how long it has run.
        if task is not None and task.created is not None:
            elapsed = time.time() - task.created
            if 0 <= elapsed < _MAX_ELAPSED_TRUSTED:
                return now - elapsed
        return now

    def _delay(self, w: Watch, now: float) -> float:
        task = w.task
        estimated = estimate_of(self.policy, task)
        if w.callback:
            delay = safety_net_delay(self.policy, elapsed=now - w.started, estimated=estimated)
        else:
            delay = next_delay(
                self.policy,
                elapsed=now - w.started,
                estimated=estimated,
                progress=task.progress if task is not None else None,
            )
        if w.failures:
            # Reads keep failing: back off (the waits go on; the errors are logged).
            delay = max(delay, min(self.policy.max_interval, self.policy.min_interval * 2 ** min(w.failures, 16)))
        return delay

    def _schedule_first(self, w: Watch, due: float) -> None:
        if due <= self._clock() and self.batch_supported is False:
            # Per-task mode, due now: the caller of watch()/follow() makes this read (first_read), in its own
            # coroutine; neither the loop nor a reader need hear of it.
            w.due = due
            w.first_inline = True
            return
        self._schedule(w, due)

    async def first_read(self, w: Watch) -> None:
        """Make the first read that :meth:`watch` left to its caller, if it did (see ``Watch.first_inline``)."""
        if not w.first_inline:
            return
        w.first_inline = False
        if w.done or w.reading or self._watches.get(w.task_id) is not w:
            return
        w.reading = True
        try:
            await self._refresh_one(w)
        finally:
            if w.reading:  # cancelled mid-read: the task is read on schedule for whoever still waits
                w.reading = False
                if not w.done and self._watches.get(w.task_id) is w:
                    self._schedule(w, self._clock())

    # -- per-task reads ------------------------------------------------------------------------------

    def _enqueue(self, w: Watch) -> None:
        """Queue a due watch (``reading`` already set) for the readers; start one if none is idle."""
        self._due.append(w)
        if self._idle_readers:
            self._idle_readers.pop().set()
        elif self._readers < self._max_readers and self._tg is not None:
            self._readers += 1
            self._tg.start_soon(self._reader)

    async def _reader(self) -> None:
        try:
            while True:
                while self._due:
                    w = self._due.popleft()
                    if self._watches.get(w.task_id) is not w or w.done:
                        w.reading = False
                        continue
                    await self._refresh_one(w)
                idle = _new_event()
                self._idle_readers.append(idle)
                await idle.wait()
        finally:
            self._readers -= 1

    # -- timeouts of followers -----------------------------------------------------------------------

    def _expire(self, now: float) -> float | None:
        """Fire the followers whose timeout passed; the next deadline, if any."""
        while self._deadlines:
            deadline, _, follower = self._deadlines[0]
            if not follower.active:
                heapq.heappop(self._deadlines)
                continue
            if deadline > now:
                return deadline
            heapq.heappop(self._deadlines)
            w = follower.watch
            w.remove_follower(follower)
            follower.fire(errors.WaitTimeoutError(w.task_id, follower.timeout or 0.0, w.task))
        return None

    def _schedule(self, w: Watch, due: float) -> None:
        w.due = due
        heapq.heappush(self._heap, (due, next(self._seq), w))
        if due < self._sleep_until:  # else the loop wakes in time anyway: no wake-up per task
            self._wake.set()

    def _live(self, entry: tuple[float, int, Watch]) -> bool:
        due, _, w = entry
        return self._watches.get(w.task_id) is w and not w.done and not w.reading and w.due == due

    def _pop_due(self, now: float, limit: int, lookahead: float) -> list[Watch]:
        """Up to ``limit`` live watches due by ``now + lookahead``, earliest first."""
        taken: list[Watch] = []
        while self._heap and len(taken) < limit:
            entry = self._heap[0]
            if not self._live(entry):
                heapq.heappop(self._heap)
                continue
            if entry[0] > now + lookahead:
                break
            heapq.heappop(self._heap)
            entry[2].reading = True
            taken.append(entry[2])
        return taken

    def _next_due(self) -> float | None:
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The poll loop; runs until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            while True:
                self._wake = anyio.Event()
                now = self._clock()
                deadline = self._expire(now)
                due_at = self._next_due()
                use_batch = self.batch_supported is not False
                if due_at is not None and use_batch and not self._backlog and self._batches_reading:
                    # A batch read is under way: let more tasks fall due meanwhile so that the next request
                    # reads many (group commit). With none under way, or after a full batch, read at once.
                    due_at = max(due_at, self._last_batch + self.policy.batch_interval)
                if deadline is not None and (due_at is None or deadline < due_at):
                    due_at = deadline  # a follower's timeout comes first: wake for it
                if due_at is None or due_at > now:
                    self._sleep_until = float("inf") if due_at is None else due_at
                    with anyio.move_on_after(None if due_at is None else due_at - now):
                        await self._wake.wait()
                    self._sleep_until = float("-inf")
                    continue
                if use_batch:
                    # A batch read costs one request however many ids it carries, so fill it with
                    # tasks due soon too: reading them a little early is free.
                    lookahead = max(self.policy.batch_interval, 2.0)
                    batch = self._pop_due(now, self.policy.batch_size, lookahead)
                    self._last_batch = now
                    self._backlog = len(batch) >= self.policy.batch_size
                    tg.start_soon(self._refresh_batch, batch)
                else:
                    for w in self._pop_due(now, len(self._heap), 0.0):
                        self._enqueue(w)

    async def _refresh_batch(self, batch: list[Watch]) -> None:
        self._batches_reading += 1
        try:
            await self._read_batch(batch)
        finally:
            self._batches_reading -= 1
            self._wake.set()  # tasks held back while it read may be due now

    async def _read_batch(self, batch: list[Watch]) -> None:
        by_id: dict[str, Task] | None
        async with Slot(self._reads):
            try:
                by_id = await self._api.get_many([w.task_id for w in batch], timeout=self._timeouts.poll)
            except errors.EvolinkError as exc:
                status = getattr(exc, "status", None)
                if status in (401, 403) and isinstance(exc, errors.APIError):
                    # About the request as a whole (the key, the account): it concerns every task in it.
                    for w in batch:
                        self._deliver_error(w, exc)
                    return
                self._batch_failures += 1
                # Never worked here and failing again (not a rate limit): take it as not supported.
                never_worked = self.batch_supported is None and status != 429 and self._batch_failures >= 2
                if status in (404, 405, 501) or never_worked:
                    # Undocumented and not (or not properly) here: read per task from now on.
                    log.info("POST /v1/tasks/batch is not usable here (%s); polling per task", exc)
                    self.batch_supported = False
                    by_id = None
                elif self._batch_failures >= _BATCH_FAILURES_BEFORE_FALLBACK:
                    by_id = None  # it worked before: read these per task, and keep trying batches later
                else:
                    self._read_later(batch, exc)
                    return
            except Exception as exc:  # never lose an exception: hand it to the waiters
                for w in batch:
                    self._deliver_error(w, _unexpected(exc))
                return
        if by_id is None:
            for w in batch:
                await self._refresh_one(w)
            return
        self._batch_failures = 0
        if self.batch_supported is None:
            self.batch_supported = True
        missing = []
        for w in batch:
            found = by_id.get(w.task_id)
            if found is None:
                missing.append(w)
            else:
                self._apply(w, found)
        # The batch endpoint leaves out unknown and foreign ids; a direct read says which it was.
        for w in missing:
            await self._refresh_one(w)

    async def _refresh_one(self, w: Watch) -> None:
        async with Slot(self._reads):
            traced = self._observers.active
            if traced:
                self._observers.emit(
                    events.ReadStarted(w.task_id)
                )  # a tracer makes the read's HTTP span the task's child
            try:
                task = await self._api.get(w.task_id, urgent=True, timeout=self._timeouts.poll, max_attempts=2)
            except errors.EvolinkError as exc:
                if _worth_reading_again(exc):
                    self._read_later([w], exc)
                else:
                    self._deliver_error(w, exc)
                return
            except Exception as exc:  # never lose an exception: hand it to the waiter
                self._deliver_error(w, _unexpected(exc))
                return
            finally:
                if traced:
                    self._observers.emit(events.ReadEnded(w.task_id))
        self._apply(w, task)

    def _apply(self, w: Watch, task: Task) -> None:
        w.reading = False
        w.failures = 0
        w.reads += 1
        if w.done:
            return
        if w.callback and task.is_final and not self._callback_miss_reported and not w.announced:
            # Once per client: a hint, since a receiver that is not mounted only shows up as slowness.
            self._callback_miss_reported = True
            log.warning(
                "task %s finished but no callback announced it; the safety net found it. Is the callback "
                "receiver mounted at the client's callback_url, and reachable from EvoLink?",
                w.task_id,
            )
        w.update(task, self._observers)
        if not task.is_final and self._watches.get(w.task_id) is w:
            now = self._clock()
            self._schedule(w, now + self._delay(w, now))

    def _read_later(self, batch: Iterable[Watch], exc: errors.EvolinkError) -> None:
        """Transient read failure: keep waiting, back off, say so in the log."""
        # Handled, not lost: the waits go on and the read is retried with backoff.
        log.info("status read failed, will retry: %s", exc)
        now = self._clock()
        for w in batch:
            w.reading = False
            w.failures += 1
            if not w.done and self._watches.get(w.task_id) is w:
                self._schedule(w, now + self._delay(w, now))

    def _deliver_error(self, w: Watch, exc: errors.EvolinkError) -> None:
        w.reading = False
        w.fail(_copy_error(exc))


def _worth_reading_again(exc: errors.EvolinkError) -> bool:
    """Worth reading again later. A garbled body (not JSON: it has an HTTP status) may read fine next time;
    valid JSON of a shape we cannot read, or about another task, reads the same again: the waiter is told."""
    if isinstance(exc, errors.MalformedResponseError):
        return exc.status is not None
    return isinstance(exc, (errors.APIConnectionError, errors.ServerError, errors.RateLimitError))


def _unexpected(exc: Exception) -> errors.EvolinkError:
    err = errors.EvolinkError(f"unexpected error while polling: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _copy_error(exc: errors.EvolinkError) -> errors.EvolinkError:
    """A per-task copy without a task id, so each waiter raises its own instance; the waiter's
    ``task_context`` then attaches its own id."""
    cls = type(exc)
    dup = cls.__new__(cls, *exc.args)
    dup.__dict__.update(exc.__dict__)
    dup.args = exc.args
    dup.task_id = None
    dup.__cause__ = exc.__cause__
    return dup
