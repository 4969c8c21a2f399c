"""The task engine: the one path of a task, from validated request to final state.

    engine.run(request, key)
      ├─► in-flight slot            (held from create until the task is seen final)
      ├─► upload local files        files.resolve: image_urls that are paths or bytes become URLs (once each)
      ├─► create                    api.create at the request's endpoint: pace, Idempotency-Key, retries with it
      ├─► register with the poller  one shared loop; callbacks may confirm sooner (the registry)
      ├─► wait                      on an event the poller sets; errors get the task id (task_context)
      └─► final Task                failure_of(task) maps a final status to its exception, here only

``AsyncClient``, the batch layer and the callback receiver all go through this module; it owns the client's
task group (the poller, callback confirmations) and its lifecycle (new → open → closed).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from . import errors, events
from ._api import API
from ._callbacks import CallbackRegistry, Verdict
from ._config import Limits, PollPolicy, Timeouts
from ._converter import request_to_wire, structure_task, task_to_wire
from ._coordinator import Coordinator
from ._files import Files
from ._poller import Follower, OnFinal, Poller, Watch
from ._slots import Slot
from .models import Request, Task, TaskStatus, is_local_source

__all__ = ("Engine", "Launched", "OnCreated", "OnUpdate", "failure_of", "warn_unfinished")

log = logging.getLogger("evolink_async")

#: ``on_update`` callbacks get each new state of the task; they may be plain or async functions.
OnUpdate = Callable[[Task], "Awaitable[None] | None"]
#: Called once a create has answered, before the wait (the batch layer records the task id there).
OnCreated = Callable[[Task], Awaitable[None]]

# A wait without a timeout needs no cancel scope (one per wait adds up over a large batch).
_NO_SCOPE: contextlib.nullcontext[None] = contextlib.nullcontext()


def failure_of(task: Task) -> errors.TaskFailedError | None:
    """The exception a final status stands for (None for completed): the one mapping of status to error."""
    if task.status is TaskStatus.CANCELLED:
        return errors.TaskCancelledError(task)
    if task.status is TaskStatus.FAILED:
        return errors.TaskFailedError(task)
    return None


class Engine:
    """The path of every task of one client, and the client's background work."""

    def __init__(
        self,
        api: API,
        files: Files,
        *,
        poll: PollPolicy,
        timeouts: Timeouts,
        limits: Limits,
        callback_url: str | None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.api = api
        self.files = files
        self.observers = api.transport.observers
        self.coordinator = coordinator
        self.limits = limits
        self.callback_url = callback_url
        self.callback_registry = CallbackRegistry()
        self.poller = Poller(api, poll, timeouts, readers=limits.max_connections)
        self.slots = anyio.CapacityLimiter(limits.max_in_flight)
        self.state = "new"  # new -> open -> closed
        self._task_group: anyio.abc.TaskGroup | None = None
        # The poller's own scope: close() may run in any task, and cancelling this scope stops only the
        # poller, whereas the task group's scope also covers the body of the caller's ``async with``.
        self._poller_scope: anyio.CancelScope | None = None
        # The coordinator's background work (lease renewals, the relay), stopped with the poller.
        self._coordinator_scope: anyio.CancelScope | None = None

    async def _expect_shared(self, task_id: str) -> None:
        """Let the other replicas relay this task's callback (the callback may land on any of them)."""
        assert self.coordinator is not None
        try:
            await self.coordinator.expect(task_id)
        except errors.CoordinatorError as exc:  # the task exists: never fail its create for this
            log.warning("%s; task %s falls back on its safety-net reads", exc, task_id)

    # -- callbacks: the registry decides, the engine acts ------------------------------------------

    def on_callback(self, task_id: str) -> Verdict:
        """A callback named ``task_id`` (the receiver's verdict comes back): a confirmation read, or a relay."""
        waited_on = self.poller.is_waited_on(task_id)
        decision = self.callback_registry.decide(task_id, waited_on=waited_on, relaying=self.coordinator is not None)
        if waited_on and task_id in self.callback_registry:
            self.poller.mark_announced(task_id)
        if decision.action == "nothing":
            return decision.verdict
        if decision.action == "confirm":
            started = self.spawn(self._confirm_callback, task_id, decision.delay)
        else:
            started = self.spawn(self._relay_callback, task_id)
        return decision.verdict if started else self.callback_registry.abandon(task_id)

    async def _confirm_callback(self, task_id: str, delay: float | None) -> None:
        """Our own reads, with our key, as the registry asks: the callback's body is never used."""
        registry = self.callback_registry
        try:
            while delay is not None:
                if delay > 0:
                    await anyio.sleep(delay)
                if not registry.should_read(task_id, waited_on=self.poller.is_waited_on(task_id)):
                    return  # nobody waits any more, or a read found it final meanwhile
                ok = await self._confirming_read(task_id)
                delay = registry.after_read(task_id, ok=ok, waited_on=self.poller.is_waited_on(task_id))
        finally:
            registry.confirmation_ended(task_id, waited_on=self.poller.is_waited_on(task_id))

    async def _confirming_read(self, task_id: str) -> bool:
        try:
            await self.read(task_id)
        except Exception as exc:  # whatever a read brings, a callback must not take the client down
            # The waiter is not lost: its safety-net polling goes on.
            log.info("confirming callback for task %s failed: %s", task_id, exc)
            return False
        return True

    async def _relay_callback(self, task_id: str) -> None:
        """A callback nobody here waits on, with replicas that may: confirm it, and relay the task if final."""
        assert self.coordinator is not None
        registry, reads = self.callback_registry, 0
        try:
            if not await self.coordinator.is_expected(task_id):
                # No replica created it with our callback URL: a forged or foreign callback costs no read.
                registry.relayed(confirmed=0, relayed=False, ignored=True)
                return
            for attempt in range(2):
                task = await self.read(task_id)  # our own read: the callback's body is never relayed
                reads += 1
                if task.is_final:
                    await self.coordinator.publish(task_to_wire(task))
                    registry.relayed(confirmed=reads, relayed=True)
                    return
                if attempt == 0:
                    await anyio.sleep(registry.min_confirm_interval)  # the server may lag behind its callback
            registry.relayed(confirmed=reads, relayed=False)
        except Exception as exc:  # a relay that fails leaves the other process its safety net
            registry.relayed(confirmed=reads, relayed=False, failed=True)
            log.warning("could not confirm or relay the callback of task %s: %s", task_id, exc)
        finally:
            registry.confirmation_ended(task_id, waited_on=False)

    def _relayed(self, data: Any) -> None:
        """A final task another process confirmed: its waiters here are woken (no read of ours needed)."""
        task = structure_task(data)
        if task.is_final and self.poller.is_waited_on(task.id):
            self.poller.observe(task)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the poller in a task group of the caller's task (``AsyncClient.__aenter__``)."""
        if self.state != "new":
            raise errors.ClientStateError(f"this client is {self.state}; a client can be entered only once")
        self._poller_scope = anyio.CancelScope()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run_poller, self._poller_scope)
        if self.coordinator is not None:
            self._coordinator_scope = anyio.CancelScope()
            try:
                await self._task_group.start(self._run_coordinator, self._coordinator_scope)
            except BaseException:
                # The task group reports the same failure again, grouped: the error itself (a CoordinatorError
                # naming Redis) is what the caller of ``async with`` gets.
                with contextlib.suppress(Exception):
                    await self.finish()
                raise
        self.state = "open"

    async def _run_coordinator(self, scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self.coordinator is not None
        with scope:
            await self.coordinator.run(self._relayed, task_status=task_status)

    async def _run_poller(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self.poller.run()

    def close(self) -> None:
        """Stop the poller and fail pending waits (each with its task id). Idempotent; safe from any task."""
        if self.state == "closed":
            return
        self.state = "closed"
        self.poller.close(errors.ClientStateError("the client was closed while waiting for this task"))
        if self._poller_scope is not None:
            self._poller_scope.cancel()
        if self._coordinator_scope is not None:
            self._coordinator_scope.cancel()

    async def finish(self) -> None:
        """Leave the task group, in the task that entered it (``AsyncClient.__aexit__``)."""
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)

    def check_open(self, *, needs_poller: bool = False) -> None:
        """Raise ClientStateError when closed, or (``needs_poller``) when never entered."""
        if self.state == "closed":
            raise errors.ClientStateError("this client is closed; create a new AsyncClient")
        if needs_poller and self.state != "open":
            raise errors.ClientStateError(
                "waiting needs the shared poller: use `async with AsyncClient() as client:` first"
            )

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run ``fn`` in the client's task group (work that must outlive a web request); False if closed."""
        if self.state != "open" or self._task_group is None:
            return False
        self._task_group.start_soon(fn, *args)
        return True

    # -- one call each -----------------------------------------------------------------------------

    async def create(self, request: Request, key: str, *, followed: bool = False) -> Task:
        """Create the task (its local files uploaded first); the client's callback URL goes along unless the
        request has its own."""
        self.check_open()
        sources = getattr(request, "image_urls", ())
        if sources and any(is_local_source(source) for source in sources):  # most creates have none: no await
            request = await self.files.resolve(request)
        body = request_to_wire(request)
        # The client's callback URL was checked when the client was made (it may be a local test URL).
        with_callback = self.callback_url is not None and request.callback_url is None
        if with_callback:
            body["callback_url"] = self.callback_url
        traced = self.observers.active
        started = 0.0  # read only when traced (bound here for pyright)
        if traced:
            self.observers.emit(events.CreateStarted(key, request.kind, request.model))
            started = time.monotonic()
        try:
            created = await self.api.create(request.endpoint, body, key)
        except BaseException as exc:
            if isinstance(exc, errors.SubmissionUnknownError):
                exc.request = request  # as sent: a resubmission with the key needs the same URLs of its uploads
            if traced:
                self.observers.emit(events.CreateFailed(key, exc))
            raise
        if traced:
            elapsed = time.monotonic() - started
            self.observers.emit(
                events.TaskSubmitted(key, created.task, request.kind, elapsed, created.replayed, followed)
            )
        if with_callback:
            self.callback_registry.expect(created.task.id)
            if self.coordinator is not None:
                await self._expect_shared(created.task.id)
        if created.replayed:
            log.info("create replayed by the server: task %s (idempotency key reused)", created.task.id)
        return created.task

    async def read(self, task_id: str) -> Task:
        """One status read; waiters of the task see it too."""
        self.check_open()
        task = await self.api.get(task_id, urgent=True)
        self.poller.observe(task)
        return task

    async def wait(
        self,
        task_id: str,
        *,
        known: Task | None = None,
        submitted_at: float | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
    ) -> Task:
        """Wait, through the shared poller, until the task is final; return it (failed ones too)."""
        with errors.task_context(task_id):
            known, submitted_at, expects_callback = self._before_watching(task_id, known, submitted_at)
            w = self.poller.watch(
                task_id,
                known,
                submitted_at=submitted_at,
                callback=expects_callback,
                announced=self.callback_registry.announced(task_id),
            )
            try:
                with anyio.move_on_after(timeout) if timeout is not None else _NO_SCOPE as scope:
                    await self.poller.first_read(w)
                    await _follow(w, on_update)
                if scope is not None and scope.cancelled_caught:
                    raise errors.WaitTimeoutError(task_id, timeout or 0.0, w.task)
            except BaseException as exc:
                if self.observers.active:
                    self.observers.emit(events.WaitEnded(task_id, exc))
                warn_unfinished(task_id, exc)
                raise
            finally:
                self.poller.release(w)
            final = w.task
            assert final is not None
            assert final.is_final
            return final

    async def follow(
        self,
        task_id: str,
        on_final: OnFinal,
        *,
        known: Task | None = None,
        submitted_at: float | None = None,
        timeout: float | None = None,
    ) -> Follower:
        """Like :meth:`wait`, without a waiting coroutine: ``on_final(task, error)`` is called once."""
        known, submitted_at, expects_callback = self._before_watching(task_id, known, submitted_at)
        follower = self.poller.follow(
            task_id,
            known,
            on_final,
            submitted_at=submitted_at,
            callback=expects_callback,
            announced=self.callback_registry.announced(task_id),
            timeout=timeout,
        )
        try:
            # A first read due now is made here: a task that finished at once is settled before this returns.
            await self.poller.first_read(follower.watch)
        except BaseException:
            follower.stop()
            raise
        return follower

    def _before_watching(
        self, task_id: str, known: Task | None, submitted_at: float | None
    ) -> tuple[Task | None, float | None, bool]:
        """What a wait or a follow starts from: (known, submitted_at, whether a callback is expected)."""
        self.check_open(needs_poller=True)
        if known is not None and not known.is_final and self.callback_registry.announced(task_id):
            known, submitted_at = None, None  # its callback already came: read it now
        return known, submitted_at, task_id in self.callback_registry

    # -- the whole path ----------------------------------------------------------------------------

    async def run(
        self,
        request: Request,
        *,
        key: str,
        task_id: str | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
        on_created: OnCreated | None = None,
    ) -> Task:
        """Slot → create (unless ``task_id`` is known: resume) → wait; the final task, failed ones too."""
        async with Slot(self.slots, self.coordinator):
            task_id, known, submitted_at = await self._create_unless_known(request, key, task_id, on_created)
            return await self.wait(
                task_id, known=known, submitted_at=submitted_at, timeout=timeout, on_update=on_update
            )

    async def launch(
        self,
        request: Request,
        on_final: OnFinal,
        *,
        key: str,
        task_id: str | None = None,
        timeout: float | None = None,
        on_created: OnCreated | None = None,
    ) -> Launched:
        """:meth:`run` without a coroutine held through the wait (a batch's thousands of tasks in flight).

        Returns once the task is created (or, with ``task_id``, resumed) and followed; ``on_final(task,
        error)`` is called once, after the task's slot is released. Errors before that are raised here.
        """
        launched = Launched(self.slots, on_final, self.coordinator, self.observers)
        await launched.acquire()
        try:
            task_id, known, submitted_at = await self._create_unless_known(request, key, task_id, on_created)
            launched.follower = await self.follow(
                task_id, launched, known=known, submitted_at=submitted_at, timeout=timeout
            )
        except BaseException:
            launched.release()
            raise
        return launched

    async def _create_unless_known(
        self, request: Request, key: str, task_id: str | None, on_created: OnCreated | None
    ) -> tuple[str, Task | None, float | None]:
        """Create the task, unless ``task_id`` resumes one: (task id, the created task, when it was sent)."""
        if task_id is not None:
            return task_id, None, None
        known = await self.create(request, key, followed=True)
        submitted_at = time.monotonic()
        if on_created is not None:
            with errors.task_context(known.id):
                await on_created(known)
        return known.id, known, submitted_at


def warn_unfinished(task_id: str, why: BaseException | str) -> None:
    """One WARNING line for a task whose wait ended before it was final: it goes on at EvoLink, and is paid."""
    reason = why if isinstance(why, str) else type(why).__name__ + (f": {why}" if str(why) else "")
    log.warning(
        "task %s: not final, no longer awaited here (%s); it goes on at EvoLink, wait for it by its id", task_id, reason
    )


class Launched(Slot):
    """A task launched by :meth:`Engine.launch`: its in-flight slot, held until the task is final (then
    ``on_final`` is called) or until :meth:`stop` (its wait cancelled: the task goes on at the server).
    One object per task in flight, and the poller's callback itself."""

    __slots__ = ("follower", "observers", "on_final")

    def __init__(
        self,
        limiter: anyio.CapacityLimiter,
        on_final: OnFinal,
        shared: Coordinator | None,
        observers: events.Observers,
    ) -> None:
        super().__init__(limiter, shared)
        self.on_final = on_final
        self.observers = observers
        self.follower: Follower | None = None

    def __call__(self, task: Task | None, error: BaseException | None) -> None:
        self.release()
        if error is not None and self.follower is not None and self.observers.active:
            self.observers.emit(events.WaitEnded(self.follower.watch.task_id, error))
        self.on_final(task, error)

    @property
    def task_id(self) -> str | None:
        """The id of the task followed (None until it is created)."""
        return self.follower.watch.task_id if self.follower is not None else None

    def stop(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        self.release()


async def _follow(w: Watch, on_update: OnUpdate | None) -> None:
    """Sleep on the watch until its task is final, telling ``on_update`` of each new state."""
    seen: tuple[str, int | None] | None = None
    while True:
        current = w.task
        if on_update is not None and current is not None:
            state = (current.raw_status, current.progress)
            if state != seen:
                seen = state
                result = on_update(current)
                if inspect.isawaitable(result):
                    await result
        if w.error is not None:
            raise w.error
        if current is not None and current.is_final:
            return
        if w.task is current and w.error is None:
            await w.changed().wait()
