"""Fan-out: many inputs through one client, outcomes as they complete, a budget and a journal.

The input is consumed lazily: the next input is pulled only when one of ``max_in_flight`` slots is free,
so a generator of a million prompts costs memory for ``max_in_flight`` of them. Each input ends in exactly
one :class:`Outcome` — a completed task, or the exception that stopped it; one failure never cancels the rest.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import types
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias, cast

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import errors
from ._config import Limits
from ._converter import request_to_wire, structure_task, task_to_wire
from ._custom_id import CustomIds, custom_id_of
from ._download import Downloader
from ._engine import Engine, Launched, failure_of, warn_unfinished
from ._journal import Journal, JournalEntry, fingerprint
from ._poller import OnFinal
from ._requests import (
    BATCH_OPTIONS,
    build_request,
    check_field_names,
    check_timeout,
    new_idempotency_key,
    request_fields,
)
from ._resubmit import Resubmissions, worth_resubmitting
from ._slots import Slot
from .models import REQUEST_KINDS, AudioRequest, ImageRequest, Request, Task, TaskStatus, VideoRequest, is_local_source

__all__ = ("BatchInput", "BatchRun", "BatchStats", "Outcome")

log = logging.getLogger("evolink_async")

# Workers started per event-loop iteration (see BatchRun._produce).
_SPAWN_CHUNK = 64


#: What ``generate_many`` accepts per input: a prompt (an image), a request of any kind, or a mapping of request
#: fields (``"type": "video"`` or ``"audio"`` picks the kind; images by default).
BatchInput: TypeAlias = "str | Request | Mapping[str, Any]"


@attrs.frozen
class Outcome:
    """What became of one input: ``task`` when it completed, ``error`` when it did not (never both lost).

    A completed task whose download failed has both ``task`` and ``error`` (a DownloadError). ``resumed``
    means a journal knew this input from an earlier run: its outcome was read back, its task awaited by id,
    or its create resent with the saved key (which EvoLink answers with the original task).
    """

    index: int
    input: Any
    request: Request | None = None
    task: Task | None = None
    error: Exception | None = None
    files: tuple[Path, ...] = ()
    resumed: bool = False
    #: The failed tasks of this input's earlier tries (``retry_failed``), oldest first: no task id is lost.
    earlier: tuple[Task, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the task completed and everything asked of it (downloads) succeeded."""
        return self.error is None and self.task is not None and self.task.status is TaskStatus.COMPLETED

    @property
    def custom_id(self) -> str | None:
        """The input's own ``custom_id`` (a mapping input's key), which names its files; None without one."""
        try:
            return custom_id_of(self.input)
        except errors.ValidationError:
            return None  # refused when it was read: this outcome says why

    @property
    def task_id(self) -> str | None:
        """The task's id, from the task or from the error, when a task was created."""
        if self.task is not None:
            return self.task.id
        return getattr(self.error, "task_id", None)


#: What ``_launch`` returns for an input this worker does not report: another worker of a shared batch has it
#: (compared by identity, never delivered).
_ELSEWHERE = Outcome(index=-1, input=None)


@attrs.define
class BatchStats:
    """Live counters of a batch run (what a progress bar shows)."""

    started: int = 0
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    not_submitted: int = 0
    resumed: int = 0
    in_flight: int = 0
    committed_credits: float = 0.0
    #: Inputs of a shared batch (``coordinator.journal``) that another worker finished: reported there, not here.
    skipped: int = 0
    #: Creates the server answered with the task of an earlier create of the same Idempotency-Key (no new charge):
    #: a rerun resending a key its crashed run had sent.
    replayed: int = 0
    #: Failed tasks resubmitted as new tasks (``retry_failed``).
    retried: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.not_submitted


class _Price:
    """What a task of one price class (an endpoint, a model, its quality and duration) costs."""

    __slots__ = ("confirmed", "known", "looked_up", "missing", "probing", "value")

    def __init__(self, value: float | None) -> None:
        self.value = value  # cost_per_task, then the highest price the API told
        # A create of this class answered (or the journal knew its price): until then the value is a guess.
        self.confirmed = False
        self.looked_up = False  # the journal was asked for a price an earlier run learned
        self.missing = False  # the API told no price
        self.probing = False  # an input of this class is finding out the price
        self.known = anyio.Event()


@attrs.define(slots=True)
class _Plan:
    """How one input goes: a new create, a create resent with its saved key, or a wait by task id."""

    key: str
    task_id: str | None = None
    estimate: float = 0.0  # credits committed for it so far
    probe: bool = False  # its create tells the price (of its price class)
    price: _Price | None = None  # its price class, when a budget is kept
    sent: Request | None = None  # the request as sent, when its local files were uploaded first
    resumed: bool = False
    created: bool = False
    finished: bool = False  # the engine called back: final, or its wait ended
    attempt: int = 0  # 0 for the first task of the input, n for its n-th resubmission
    # Once launched, the plan is also the engine's callback for its input (one object per task in flight,
    # rather than a closure, a bound method and their cells).
    index: int = -1
    input: Any = None
    request: Request | None = None
    slot: Slot | None = None
    run: BatchRun | None = None

    def __call__(self, task: Task | None, error: BaseException | None) -> None:
        assert self.run is not None
        self.run._on_final(self, task, error)


@attrs.frozen(slots=True)
class _Final:
    """A launched input whose task is final (or whose wait ended with ``error``), queued for a finisher."""

    index: int
    input: Any
    request: Request
    plan: _Plan
    slot: Slot
    task: Task | None
    error: BaseException | None
    outcome: Outcome | None = None  # decided already: only its delivery is left


# Answers to a create that every later create would get too: the key (401), the credits (402), access (403).
_ACCOUNT_REFUSALS = (errors.AuthenticationError, errors.InsufficientCreditsError, errors.PermissionDeniedError)


def _not_submitted(refusal: errors.APIError) -> errors.NotSubmittedError:
    error = errors.NotSubmittedError(
        f"not submitted: an earlier create was refused ({type(refusal).__name__}: {refusal.message}); "
        "every other create would be too",
        refusal=refusal,
    )
    error.__cause__ = refusal
    return error


def _as_exception(error: BaseException) -> Exception:
    """Outcomes carry Exceptions; anything else that ended a wait is wrapped, never dropped."""
    if isinstance(error, Exception):
        return error
    wrapped = errors.EvolinkError(f"the wait ended with {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _kind_of(data: dict[str, Any]) -> type[Request]:
    kind = data.pop("type", "image")
    cls = REQUEST_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise errors.ValidationError("type", f"{kind!r} is not one of {', '.join(REQUEST_KINDS)}")
    return cls


def _to_request(item: Any, fields: Mapping[str, Any]) -> Request:
    if isinstance(item, Mapping):
        data = dict(item)
        data.pop("custom_id", None)  # the input's name, not a body field
        kind = _kind_of(data)
        prompt = data.pop("prompt", None)
        if not isinstance(prompt, str):
            raise errors.ValidationError("prompt", "each mapping input needs a string 'prompt'")
        # Batch-wide fields are keywords (a typo is an error); the mapping is a JSON object of request fields (a
        # batch file's line): its unknown keys are body fields, and its values win over batch-wide ones.
        check_field_names(fields, known=request_fields(kind))
        return build_request(prompt, {**fields, **data}, strict=False, kind=kind)
    if isinstance(item, str) and not fields:
        return ImageRequest(item)  # the common case, without the keyword plumbing
    if isinstance(item, (ImageRequest, VideoRequest, AudioRequest)):
        # The input's own values win over batch-wide ones, as for mappings: fill only what it left unset.
        unset = {k: v for k, v in fields.items() if not getattr(item, k, None)}
        return build_request(item, unset)
    return build_request(item, dict(fields))


class BatchRun:
    """A running ``generate_many``: ``async with client.generate_many(...) as run: async for outcome in run``.

    Leaving the block early cancels what is still running (the tasks go on at the server; a journal
    resumes them). ``run.stats`` has live counters.
    """

    def __init__(
        self,
        engine: Engine,
        downloader: Downloader,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int | None,
        budget: float | None,
        cost_per_task: float | None,
        download_to: str | os.PathLike[str] | None,
        journal: str | os.PathLike[str] | None,
        timeout: float | None,
        fields: Mapping[str, Any],
        retry_failed: int = 0,
        retry_delay: float = 30.0,
    ) -> None:
        _check_max_in_flight(max_in_flight, engine.limits.max_in_flight)
        self._retries = Resubmissions.checked(retry_failed, retry_delay, shared=getattr(journal, "shared", False))
        _check_options(inputs, budget, cost_per_task, timeout, fields)
        self._engine = engine
        self._downloader = downloader
        self._inputs = inputs
        self._pool_size, self._submitters, self._finishers = _pools(max_in_flight, engine.limits)
        self._cap = anyio.CapacityLimiter(self._pool_size)
        self._following: dict[int, Launched] = {}
        self._finals: MemoryObjectSendStream[_Final] | None = None
        self._submitted_all = False
        self._quiet: anyio.Event | None = None
        # A refusal every later create would get too (key, credits, model access): nothing more is sent after it.
        self._refusal: errors.APIError | None = None
        self._check_at: int | None = None
        self._checked: anyio.Event | None = None
        self.budget = budget
        self._cost_per_task = cost_per_task
        # By price class: a batch may mix images and videos of several models, each at its own price.
        self._prices: dict[str, _Price] = {}
        # The one create in flight whose price is not confirmed (of any class): a budget is exceeded by one
        # task's real price at most, whatever cost_per_task says.
        self._probe: _Price | None = None
        self._recorded: dict[str, float] = {}  # the prices written to the journal, by class
        self._fatal: errors.JournalError | None = None
        self._input_error: Exception | None = None
        self._download_to = Path(download_to) if download_to is not None else None
        self._journal: Any = journal if journal is None or getattr(journal, "shared", False) else Journal(journal)
        self._shared = self._journal is not None and getattr(self._journal, "shared", False)
        # Inputs of a shared batch that another live worker holds: revisited once the inputs are all pulled.
        self._deferred: list[tuple[int, Any]] = []
        self._custom_ids = CustomIds()  # checked as inputs are pulled (in order): a repeat is refused before its create
        self._refused: dict[int, errors.ValidationError] = {}
        self._timeout = timeout
        self._fields = dict(fields)
        self.stats = BatchStats()
        self._task_group: anyio.abc.TaskGroup | None = None
        # A pulling consumer (the sync iterator): new inputs are pulled and created only while it waits for an
        # outcome, so a loop left with `break` sends nothing more even while the iterator lives on.
        self._held = False
        self._released = anyio.Event()
        self._send: MemoryObjectSendStream[Outcome] | None = None
        self._receive: MemoryObjectReceiveStream[Outcome] | None = None

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<BatchRun started={s.started} in_flight={s.in_flight} completed={s.completed} failed={s.failed} "
            f"not_submitted={s.not_submitted}>"
        )

    async def __aenter__(self) -> BatchRun:
        if self._task_group is not None:
            raise errors.ClientStateError("this batch run was already started")
        self._engine.check_open(needs_poller=True)
        if self._journal is not None:
            await self._journal.open()
            # Credits of earlier runs count against this run's budget, before any worker starts (a worker
            # reading its own entry would race the new inputs' reservations).
            self.stats.committed_credits = await self._journal.committed()
            # A journal of other inputs must be refused before any create: nothing is sent until the first
            # input it records has been checked against it (new inputs beyond its end would go out at once).
            self._check_at = await self._journal.first_index()
            if self._check_at is not None:
                self._checked = anyio.Event()
        # A small buffer: workers hold their slot until their outcome is taken, so a slow consumer
        # slows submission instead of piling up outcomes in memory.
        self._send, self._receive = anyio.create_memory_object_stream[Outcome](self._pool_size)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._produce, self._send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._receive is not None
        try:
            # Leaving early (break, error in the body): stop what is still running.
            self._task_group.cancel_scope.cancel()
            if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                # An error raised by the caller's own block: the task group would wrap it in an
                # ExceptionGroup. Stop the workers without showing it the error; Python re-raises it as is.
                await self._task_group.__aexit__(None, None, None)
                return None
            suppress = await self._task_group.__aexit__(exc_type, exc, tb)
            if self._fatal is not None:
                raise self._fatal
            if self._input_error is not None:
                raise self._input_error
            return suppress
        finally:
            self._receive.close()
            if self._journal is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._journal.close()
                    except errors.CoordinatorError as exc:
                        # A shared journal's claims expire on their own: the run's own result is what to raise.
                        log.warning("%s (this worker's claims expire on their own)", exc)

    @property
    def task_ids_in_flight(self) -> tuple[str, ...]:
        """Ids of the tasks this run created (or resumed) and has not seen final yet: what an interrupted run
        leaves going on at EvoLink (and paid for)."""
        return tuple(launched.task_id for launched in self._following.values() if launched.task_id is not None)

    def __aiter__(self) -> AsyncIterator[Outcome]:
        if self._receive is None:
            raise errors.ClientStateError("use `async with client.generate_many(...) as run: async for o in run`")
        return self

    async def __anext__(self) -> Outcome:
        receive = self._receive
        if receive is None:
            raise errors.ClientStateError("use `async with client.generate_many(...) as run: async for o in run`")
        try:
            # An outcome already waiting is taken without a trip through the event loop (anyio's receive()
            # always makes one): in a big batch that is one loop iteration less per input.
            return receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        try:
            return await receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def _hold_between_pulls(self) -> None:
        """Create only while a consumer waits in :meth:`_pull` (the sync face's iterator)."""
        self._held = True

    async def _pull(self) -> Outcome:
        """The next outcome for a pulling consumer: the batch goes on only while it waits here."""
        self._held = False
        self._released.set()
        try:
            return await self.__anext__()
        finally:
            self._held = True
            self._released = anyio.Event()

    async def _gate(self) -> None:
        """Wait while the consumer holds the batch (between two pulls of the sync iterator)."""
        while self._held:
            await self._released.wait()

    # -- the work ------------------------------------------------------------------------------------

    async def _produce(self, send: MemoryObjectSendStream[Outcome]) -> None:
        # A few submitters create tasks; a created task is followed by the poller without a coroutine of its
        # own, and handed to a few finishers once final (refunds, downloads, the journal, the outcome). So
        # 20,000 tasks in flight cost 20,000 small records, not 20,000 suspended coroutines.
        inputs = self._inputs
        async_items = inputs.__aiter__() if isinstance(inputs, AsyncIterable) else None
        sync_items = iter(inputs) if async_items is None else None  # type: ignore[arg-type]
        next_input = self._puller(sync_items, async_items)
        finals_send, finals_receive = anyio.create_memory_object_stream[_Final](math.inf)
        self._finals = finals_send
        try:
            async with send, finals_send, anyio.create_task_group() as tg:
                for _ in range(self._finishers):
                    tg.start_soon(self._finisher, finals_receive.clone(), send.clone())
                finals_receive.close()
                async with anyio.create_task_group() as submitters:
                    for started in range(self._submitters):
                        submitters.start_soon(self._submitter, next_input, send.clone())
                        if started % _SPAWN_CHUNK == _SPAWN_CHUNK - 1:
                            # A checkpoint: never hold the loop for thousands of starts.
                            await anyio.lowlevel.checkpoint()
                if self._shared:
                    await self._revisit(send)
                await self._drained()
                finals_send.close()  # the finishers drain what is queued, then end
        finally:
            for launched in list(self._following.values()):
                launched.stop()  # left early: stop following (the tasks go on at the server)
                if launched.task_id is not None:
                    warn_unfinished(launched.task_id, "the batch was left before it was final")
            self._following.clear()
            # Leaving early closes the caller's async generator now, not whenever it is collected.
            aclose = getattr(async_items, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def _revisit(self, out: MemoryObjectSendStream[Outcome]) -> None:
        """Inputs another worker held: wait until they are done there, or take them over if it died."""
        while self._deferred:
            pending, self._deferred = self._deferred, []
            done = await self._journal.finished_among([index for index, _ in pending])
            for index, item in pending:
                if index in done:
                    self.stats.skipped += 1
                    continue
                slot = Slot(self._cap)
                await slot.acquire()
                if not await self._submit(index, item, slot, out):
                    return
            if self._deferred:
                # Soon enough to end with the others, and to take over as soon as a dead worker's claims run out.
                await anyio.sleep(min(0.5, self._journal.lease_seconds / 3))

    async def _drained(self) -> None:
        """Every input is launched or decided: wait until the launched ones are final too."""
        self._submitted_all = True
        if self.stats.in_flight > 0:
            self._quiet = anyio.Event()
            await self._quiet.wait()

    def _puller(
        self, sync_items: Iterator[Any] | None, async_items: AsyncIterator[Any] | None
    ) -> Callable[[], Awaitable[tuple[int, Any] | None]]:
        """The function submitters call for their next (index, input); None when the inputs are done."""
        # An async iterator must not be advanced by two submitters at once; a plain one is advanced without
        # any await, so it needs no lock.
        pull = anyio.Lock()
        counter = itertools.count()

        async def advance() -> Any:
            if sync_items is not None:
                for item in sync_items:
                    return item
                raise StopAsyncIteration
            assert async_items is not None
            async with pull:
                return await async_items.__anext__()

        async def next_input() -> tuple[int, Any] | None:
            if self._input_error is not None:
                return None
            try:
                item = await advance()
            except StopAsyncIteration:
                return None
            except Exception as exc:
                # The caller's iterable failed: stop pulling, let the inputs in progress finish and
                # deliver their outcomes, then raise it from the block (see __aexit__).
                self._input_error = exc
                return None
            self.stats.started += 1
            index = next(counter)
            try:
                self._custom_ids.check(item)
            except errors.ValidationError as exc:
                self._refused[index] = exc
            return index, item

        return next_input

    async def _submitter(
        self, next_input: Callable[[], Awaitable[tuple[int, Any] | None]], out: MemoryObjectSendStream[Outcome]
    ) -> None:
        async with out:
            while True:
                # The batch's own cap: a slot per input from before it is pulled until its outcome is handed
                # over, so that a slow consumer slows submission instead of piling up outcomes.
                slot = Slot(self._cap)
                await slot.acquire()
                await self._gate()
                pulled = await next_input()
                if pulled is None:
                    slot.release()
                    if self._checked is not None:
                        self._checked.set()  # the inputs ended before the one to check
                    return
                if not await self._submit(*pulled, slot, out):
                    return

    async def _submit(self, index: int, item: Any, slot: Slot, out: MemoryObjectSendStream[Outcome]) -> bool:
        """Launch one input, or hand over its outcome if it is decided at once; False when the run must stop."""
        try:
            outcome = await self._launch(index, item, slot)
            if outcome is _ELSEWHERE:
                slot.release()
                return True
            if outcome is not None and self._shared:
                await self._journal.let_go(index)  # decided here without a final record: others may try it
        except errors.JournalError as exc:
            slot.release()
            self._stop(exc)
            return False
        except Exception as exc:  # one input's failure never cancels the rest, and is never lost
            log.debug("batch input %d failed: %s", index, exc)
            outcome = Outcome(index=index, input=item, error=exc)
        if outcome is not None:
            await self._deliver(outcome, out)
            slot.release()
        return True

    async def _finisher(self, finals: MemoryObjectReceiveStream[_Final], out: MemoryObjectSendStream[Outcome]) -> None:
        async with finals, out:
            async for final in finals:
                try:
                    outcome = await self._conclude(final)
                except errors.JournalError as exc:
                    final.slot.release()
                    self._stop(exc)
                    return
                except Exception as exc:  # never lost: the outcome carries it
                    # The task, if there is one, stays with its outcome: a failed journal write must not lose it.
                    outcome = Outcome(
                        final.index, final.input, final.request, task=final.task, error=exc, resumed=final.plan.resumed
                    )
                await self._deliver(outcome, out)
                final.slot.release()

    def _stop(self, exc: errors.JournalError) -> None:
        # A journal of another batch (or unusable): stop the whole run and say so (raised by __aexit__).
        if self._fatal is None:
            self._fatal = exc
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    async def _deliver(self, outcome: Outcome, send: MemoryObjectSendStream[Outcome]) -> None:
        outcome = self._with_earlier(outcome)
        self._count(outcome)
        try:
            try:
                send.send_nowait(outcome)  # room in the buffer: no event-loop round trip
            except anyio.WouldBlock:
                await send.send(outcome)
        except anyio.BrokenResourceError:
            log.debug("batch consumer left; outcome of input %d not delivered", outcome.index)

    def _count(self, outcome: Outcome) -> None:
        if outcome.error is None:
            self.stats.completed += 1
        elif outcome.task is None and isinstance(outcome.error, errors.NotSubmittedError):
            self.stats.not_submitted += 1
        else:
            self.stats.failed += 1

    # -- one input -----------------------------------------------------------------------------------

    async def _launch(self, index: int, item: Any, slot: Slot) -> Outcome | None:
        """Plan the input (journal, budget) and launch it through the engine; an Outcome if decided at once."""
        try:
            refused = self._refused.pop(index, None)
            if refused is not None:
                raise refused
            request = _to_request(item, self._fields)
        except errors.ValidationError as exc:
            if index == self._check_at and self._checked is not None:
                self._checked.set()  # nothing to check it by: do not hold the others
            return Outcome(index=index, input=item, error=exc)
        if self._refusal is not None:
            return Outcome(index, item, request, error=_not_submitted(self._refusal))
        if self._shared and not await self._journal.claim(index):
            self._deferred.append((index, item))  # another live worker has it
            return _ELSEWHERE
        try:
            plan = await self._plan(index, item, request)  # a journal of other inputs raises JournalError here
        except errors.JournalError:
            raise  # the run stops: the gate stays shut
        except BaseException:
            self._open_gate(index)  # this input failed otherwise: do not hold the others
            raise
        self._open_gate(index)
        if isinstance(plan, Outcome):
            return plan
        if self._refusal is not None:  # refused while this input waited (for the price, say): not sent
            self._not_created(plan)
            return Outcome(index, item, request, error=_not_submitted(self._refusal))
        if self._checked is not None and self._check_at is not None and index > self._check_at:
            # Inputs come in order, so the one checked is already being planned: no deadlock here.
            await self._checked.wait()
        plan.index, plan.input, plan.request, plan.slot, plan.run = index, item, request, slot, self
        try:
            await self._gate()  # pulled while the consumer waited, planned after it left: not sent meanwhile
        except BaseException:
            self._not_created(plan)
            raise
        launched = await self._run(index, plan.sent or request, plan, plan)
        if not plan.finished:
            self._following[index] = launched
        return None

    def _open_gate(self, index: int) -> None:
        if index == self._check_at and self._checked is not None:
            self._checked.set()

    def _on_final(self, plan: _Plan, task: Task | None, error: BaseException | None) -> None:
        """The engine's callback once a launched task is final (or its wait ended): queue it for a finisher."""
        plan.finished = True
        self._following.pop(plan.index, None)
        self.stats.in_flight -= 1
        assert plan.request is not None
        assert plan.slot is not None
        final = _Final(plan.index, plan.input, plan.request, plan, plan.slot, task, error)
        try:
            if task is not None and self._task_group is not None and self._resubmits(plan, task):
                self.stats.in_flight += 1  # still in progress: the run does not end while it waits
                self._task_group.start_soon(self._resubmit, final)
                return
            outcome = self._conclude_now(final)
            if outcome is not None:
                outcome = self._with_earlier(outcome)
            if outcome is not None and self._send is not None:
                # Nothing to await (no journal, no download) and room for it: handed over at once.
                try:
                    self._send.send_nowait(outcome)
                except anyio.WouldBlock:
                    final = attrs.evolve(final, outcome=outcome)  # a finisher waits for room
                else:
                    self._count(outcome)
                    plan.slot.release()
                    return
            assert self._finals is not None
            self._finals.send_nowait(final)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            plan.slot.release()
            log.debug("batch left; outcome of input %d not delivered", plan.index)
        finally:
            if self.stats.in_flight == 0 and self._quiet is not None:
                self._quiet.set()

    # -- explicit retries of failed tasks (retry_failed) ------------------------------------------------

    def _resubmits(self, plan: _Plan, task: Task) -> bool:
        """Whether this failed task's input gets a new task; if so its credits are given back now (refunded)."""
        if not self._retries.limit or self._refusal is not None:
            return False
        if not worth_resubmitting(task, plan.attempt, self._retries.limit):
            return False
        self._settle(plan.estimate, 0.0)
        plan.estimate = 0.0
        return True

    async def _resubmit(self, final: _Final) -> None:
        """After the delay, a new task for a failed input (a new key, its credits reserved, the journal told);
        the failure stays the outcome when the budget or a refusal says no."""
        assert final.task is not None
        assert self._send is not None
        plan: _Plan | Exception | None
        try:
            await anyio.sleep(self._retries.delay)
            plan = await self._plan_retry(final)
        except Exception as exc:  # the journal, say: never lost, the outcome carries it
            plan = exc
        if isinstance(plan, _Plan):
            self._retries.earlier.setdefault(final.index, []).append(final.task)
            plan.index, plan.input, plan.request, plan.slot, plan.run = (
                final.index,
                final.input,
                final.request,
                final.slot,
                self,
            )
            self.stats.retried += 1
            self.stats.in_flight -= 1  # _run counts it again
            try:
                launched = await self._run(final.index, plan.sent or final.request, plan, plan)
            except Exception as exc:
                outcome = Outcome(final.index, final.input, final.request, error=exc, resumed=plan.resumed)
            else:
                if not plan.finished:
                    self._following[final.index] = launched
                return
        else:
            self.stats.in_flight -= 1
            error = plan if plan is not None else failure_of(final.task)
            if plan is None and self._journal is not None:
                await self._journal.finished(final.index, state="failed", task_json=task_to_wire(final.task))
            outcome = Outcome(
                final.index, final.input, final.request, task=final.task, error=error, resumed=final.plan.resumed
            )
        await self._deliver(outcome, self._send)
        final.slot.release()
        if self.stats.in_flight == 0 and self._quiet is not None:
            self._quiet.set()

    async def _plan_retry(self, final: _Final) -> _Plan | None:
        """The new try's plan, its credits reserved and its key journaled before the create; None: not sent."""
        estimate, probe = await self._reserve_budget(final.request)
        if estimate < 0 or self._refusal is not None:
            return None
        old = final.plan
        plan = _Plan(
            new_idempotency_key(),
            estimate=estimate,
            probe=probe,
            price=self._budget_price(final.request),
            sent=old.sent,
            resumed=old.resumed,
            attempt=old.attempt + 1,
        )
        if self._journal is not None:
            try:
                await self._journal.replan(final.index, plan.key)
            except BaseException:
                self._not_created(plan)
                raise
        return plan

    def _with_earlier(self, outcome: Outcome) -> Outcome:
        earlier = self._retries.earlier.pop(outcome.index, None) if self._retries.earlier else None
        return attrs.evolve(outcome, earlier=tuple(earlier)) if earlier else outcome

    def _conclude_now(self, final: _Final) -> Outcome | None:
        """The outcome when nothing needs awaiting (no journal, no download); None, untouched, otherwise."""
        index, item, request, plan, task = final.index, final.input, final.request, final.plan, final.task
        if task is None:
            # A shared batch first gives the input's claim back (a finisher awaits that): another worker may finish it.
            return None if self._shared else _wait_ended(final)
        if self._journal is not None:
            return None
        failure = failure_of(task)
        if failure is not None:
            self._settle(plan.estimate, 0.0)  # failed and cancelled tasks are refunded
            return Outcome(index, item, request, task=task, error=failure, resumed=plan.resumed)
        if self._download_to is not None:
            return None
        self._settle(plan.estimate, _charged(task, plan.estimate))
        return Outcome(index, item, request, task=task, resumed=plan.resumed)

    async def _conclude(self, final: _Final) -> Outcome:
        """A final task to its outcome: refund a failure, settle the charge, download, record."""
        outcome = final.outcome or self._conclude_now(final)
        if outcome is not None:
            return outcome
        index, item, request, plan, task = final.index, final.input, final.request, final.plan, final.task
        if task is None:
            await self._journal.let_go(index)
            return _wait_ended(final)
        failure = failure_of(task)
        if failure is not None:
            self._settle(plan.estimate, 0.0)  # failed and cancelled tasks are refunded
            if self._journal is not None:
                await self._journal.finished(index, state="failed", task_json=task_to_wire(task), credits=0.0)
            return Outcome(index, item, request, task=task, error=failure, resumed=plan.resumed)
        charged = _charged(task, plan.estimate)
        self._settle(plan.estimate, charged)
        return await self._finish_completed(index, item, request, task, charged, resumed=plan.resumed)

    async def _plan(self, index: int, item: Any, request: Request) -> _Plan | Outcome:
        """What to do with this input; an Outcome when it is already decided (final in the journal, no budget)."""
        journal = self._journal
        if journal is None:
            return await self._plan_new(index, item, request, "")
        fp = fingerprint(request_to_wire(request))
        entry = await journal.get(index)
        if entry is None:
            return await self._plan_new(index, item, request, fp)
        if entry.fingerprint != fp:
            raise errors.JournalError(
                f"journal {journal.path} holds a different request at input {index}: "
                "it belongs to another batch (use a new journal file)"
            )
        if entry.state in ("completed", "failed") and entry.task_json is not None:
            if self._shared:
                self.stats.skipped += 1  # done by a worker of this batch: reported by it
                await journal.let_go(index)
                return _ELSEWHERE
            return await self._resume_final(index, item, request, entry)
        self.stats.resumed += 1
        if entry.task_id is None:
            # Planned in an earlier run: its create may have reached EvoLink, so it is resubmitted with its
            # key whatever the budget (a replay costs nothing again; losing a paid task would be worse) — and
            # with the URLs its local files had then, so that the body is the same.
            estimate = self._price_of(request).value or 0.0
            self.stats.committed_credits += estimate
            plan = _Plan(entry.idempotency_key, estimate=estimate, resumed=True, price=self._budget_price(request))
            if entry.sources is not None:
                plan.sent = attrs.evolve(cast(Any, request), image_urls=entry.sources)
            return plan
        # Awaited by the task id the journal kept: nothing is sent again, and its credits were counted
        # when the run started (or, if the journal has none for it, are counted now).
        if entry.credits is not None:
            estimate = entry.credits
        else:
            estimate = self._price_of(request).value or 0.0
            self.stats.committed_credits += estimate
        return _Plan(
            entry.idempotency_key,
            task_id=entry.task_id,
            estimate=estimate,
            resumed=True,
            price=self._budget_price(request),
        )

    async def _plan_new(self, index: int, item: Any, request: Request, fp: str) -> _Plan | Outcome:
        """A first create: upload its local files, reserve its credits, record its key (and the URLs of its
        uploads) before it is sent."""
        sent: Request | None = None
        if any(is_local_source(source) for source in getattr(request, "image_urls", ())):
            try:
                sent = await self._engine.files.resolve(request)
            except (errors.ValidationError, errors.UploadError) as exc:
                return Outcome(index, item, request, error=exc)
        estimate, probe = await self._reserve_budget(request)
        if estimate < 0:
            why = (
                "the API reported no price (usage.credits_reserved) to keep a budget by; pass cost_per_task"
                if self._price_of(request).missing
                else f"credits committed ({self.stats.committed_credits:g}) plus this task would exceed the "
                f"budget of {self.budget:g}"
            )
            error = errors.BudgetExceededError(
                f"not submitted: {why}", budget=self.budget or 0.0, committed=self.stats.committed_credits
            )
            return Outcome(index, item, request, error=error)
        plan = _Plan(self._new_key(index), estimate=estimate, probe=probe, price=self._budget_price(request), sent=sent)
        if self._journal is not None:
            sources = list(getattr(sent, "image_urls", ())) if sent is not None else None
            try:
                # Committed before the create is sent: a crash from here on is resumed with this key.
                planned = await self._journal.plan(index, fp, plan.key, sources, custom_id_of(item))
            except BaseException:
                self._not_created(plan)
                raise
            if planned is False:  # a shared batch's input taken over by another worker meanwhile: its to send
                self._not_created(plan)
                return _ELSEWHERE
        return plan

    def _new_key(self, index: int) -> str:
        # A journal may derive each input's key from the input (evolink_async.ray): a block that Ray runs again
        # then sends the same keys, and EvoLink replays those creates instead of charging twice.
        key_for = getattr(self._journal, "key_for", None)
        return str(key_for(index)) if key_for is not None else new_idempotency_key()

    async def _run(self, index: int, request: Request, plan: _Plan, on_final: OnFinal) -> Launched:
        """The engine's path for this input: create (unless resumed by id), then followed until final."""
        self.stats.in_flight += 1
        try:
            return await self._engine.launch(
                request,
                on_final,
                key=plan.key,
                task_id=plan.task_id,
                timeout=self._timeout,
                on_created=functools.partial(self._created, index, plan),
            )
        except Exception as exc:
            self.stats.in_flight -= 1
            if plan.created or plan.task_id is not None:
                raise  # the task exists: its credits stay committed
            if plan.resumed and isinstance(exc, errors.ConflictError):
                # The saved key with another body (e.g. a different callback URL this run): the task of the
                # first run may exist, so this is unknown, not a refusal. Its estimate stays committed.
                if plan.probe:
                    self._end_probe(plan)
                raise errors.SubmissionUnknownError(
                    f"the saved Idempotency-Key was refused with this request ({exc}); the task "
                    "of the earlier run may exist",
                    idempotency_key=plan.key,
                ) from exc
            if isinstance(exc, errors.SubmissionUnknownError):
                if plan.probe:
                    self._end_probe(plan)  # an unknown outcome keeps its estimate: the task may exist
                raise
            self._not_created(plan)
            if isinstance(exc, _ACCOUNT_REFUSALS) and self._refusal is None:
                self._refusal = exc
                log.warning("create refused (%s): submitting no more inputs of this batch", exc)
            raise
        except BaseException:
            self.stats.in_flight -= 1
            if not plan.created and plan.task_id is None:
                self._not_created(plan)
            raise

    def _not_created(self, plan: _Plan) -> None:
        """The create certainly did not happen: give its credits back, and its probe turn."""
        self._settle(plan.estimate, 0.0)
        plan.estimate = 0.0
        if plan.probe:
            self._end_probe(plan)  # others wait on the probe: never leave them waiting

    async def _created(self, index: int, plan: _Plan, task: Task) -> None:
        """The engine's hook once the create answered: learn the price, settle the estimate, record the id."""
        plan.created = True
        plan.task_id = task.id
        reserved = _reserved(task)
        self._learn_price(plan, reserved)
        actual = reserved if reserved is not None else plan.estimate
        self._settle(plan.estimate, actual)
        plan.estimate = actual
        self.stats.submitted += 1
        self.stats.replayed += task.replayed
        if self._journal is not None:
            await self._journal.submitted(index, task.id, reserved)
            if reserved is not None and plan.request is not None:
                await self._record_price(_price_class(plan.request), reserved)

    async def _finish_completed(
        self, index: int, item: Any, request: Request, task: Task, credits: float, *, resumed: bool
    ) -> Outcome:
        files: tuple[Path, ...] = ()
        error: Exception | None = None
        if self._download_to is not None:
            try:
                name = custom_id_of(item)
                files = tuple(await self._downloader.download(task, self._download_to, name=name))
            except Exception as exc:  # DownloadError, or anything else: the completed, paid task is kept
                error = exc  # the task stays in the outcome: its URLs are valid for 24 h
        if self._journal is not None:
            await self._journal.finished(
                index, state="completed", task_json=task_to_wire(task), files=[str(f) for f in files], credits=credits
            )
        return Outcome(index, item, request, task=task, error=error, files=files, resumed=resumed)

    async def _resume_final(self, index: int, item: Any, request: Request, entry: JournalEntry) -> Outcome:
        assert entry.task_json is not None
        task = structure_task(entry.task_json)
        self.stats.resumed += 1
        failure = failure_of(task)
        if failure is not None:
            return Outcome(index, item, request, task=task, error=failure, resumed=True)
        # Its credits were counted from the journal when the run started.
        paths = tuple(Path(f) for f in entry.files)
        if self._download_to is not None and (not paths or not all(p.exists() for p in paths)):
            return await self._finish_completed(index, item, request, task, entry.credits or 0.0, resumed=True)
        return Outcome(index, item, request, task=task, files=paths, resumed=True)

    # -- the budget ----------------------------------------------------------------------------------

    def _price_of(self, request: Request) -> _Price:
        key = _price_class(request)
        price = self._prices.get(key)
        if price is None:
            price = self._prices[key] = _Price(self._cost_per_task)
        return price

    def _budget_price(self, request: Request) -> _Price | None:
        return self._price_of(request) if self.budget is not None else None

    async def _reserve_budget(self, request: Request) -> tuple[float, bool]:
        """Commit this input's expected credits: (estimate, whether it is the price probe); -1 when refused."""
        if self.budget is None:
            return 0.0, False
        price = self._price_of(request)
        while not price.confirmed:
            if self._probe is not None:
                # One create at a time whose price is a guess (cost_per_task) or unknown: wait for its answer.
                await self._probe.known.wait()
            elif self._journal is not None and not price.looked_up:
                # Learned by an earlier run (or another worker of a shared batch): no probe of our own.
                price.looked_up = True
                self._probe, price.probing = price, True  # the others wait for this answer, not probe meanwhile
                try:
                    learned = await self._journal.known_price(_price_class(request))
                finally:
                    self._probe_ended(price)
                if learned is not None:
                    price.value = learned if price.value is None else max(price.value, learned)
                    price.confirmed = True
            else:
                return await self._start_probe(price)
        if price.value is None:
            return -1.0, False  # the API gave no price: fail closed rather than spend blind
        if self.stats.committed_credits + price.value > self.budget + 1e-9:
            return -1.0, False
        if self._shared and not await self._journal.reserve(price.value, self.budget):
            return -1.0, False  # the budget is spent across the workers of the batch
        self.stats.committed_credits += price.value
        return price.value, False

    async def _start_probe(self, price: _Price) -> tuple[float, bool]:
        """This input's create will tell what a task of its class costs: it goes if its guess fits the budget
        (anything left of it when there is no guess); nothing else unpriced goes until it is answered."""
        assert self.budget is not None
        guess = price.value or 0.0
        if self.stats.committed_credits + guess > self.budget + 1e-9 or self.stats.committed_credits >= self.budget:
            return -1.0, False
        price.probing = True  # before any await: one probe at a time, not one per waiting input
        self._probe = price
        if self._shared and await self._journal.spent() >= self.budget:
            self._probe_ended(price)  # the others waiting for a price look again
            return -1.0, False  # spent by the workers of the batch
        return 0.0, True

    def _learn_price(self, plan: _Plan, reserved: float | None) -> None:
        """What the create's answer tells of its class's price."""
        price = plan.price
        if price is None:
            return
        if reserved is not None:
            price.value = reserved if price.value is None else max(price.value, reserved)
            price.confirmed = True
        elif plan.probe:
            price.confirmed = True  # the API tells no price: cost_per_task, if given, is all there is
            price.missing = price.value is None
        if plan.probe:
            self._end_probe(plan)

    def _end_probe(self, plan: _Plan) -> None:
        """The probing input is done (priced, failed or cancelled): wake those waiting for its class's price."""
        if plan.price is not None:
            self._probe_ended(plan.price)

    def _probe_ended(self, price: _Price) -> None:
        """No input is finding out a price any more: wake those that waited for it."""
        if self._probe is price:
            self._probe = None
        price.probing = False
        event, price.known = price.known, anyio.Event()
        event.set()

    def _settle(self, expected: float, actual: float) -> None:
        self.stats.committed_credits += actual - expected
        if self._shared and actual != expected:
            self._engine.spawn(self._adjust_shared, actual - expected)

    async def _record_price(self, price_class: str, price: float) -> None:
        """A price the API told, kept in the journal (once per class and value): a rerun, another worker of a
        shared batch, or a dry run of the CLI knows it without a create of its own."""
        if self._recorded.get(price_class, -1.0) >= price:
            return
        self._recorded[price_class] = price
        try:
            await self._journal.learn_price(price_class, price)
        except errors.CoordinatorError as exc:
            log.warning("%s: the other workers learn this price by themselves", exc)

    async def _adjust_shared(self, delta: float) -> None:
        """The shared committed credits corrected, in the client's task group: never raising there."""
        try:
            await self._journal.adjust(delta)
        except errors.CoordinatorError as exc:
            log.warning("%s: the batch's shared committed credits are off by %g", exc, delta)


def _price_class(request: Request) -> str:
    """What sets a task's price: its endpoint, its model, and the quality and duration it asks for."""
    parts = [request.endpoint, request.model]
    for name in ("quality", "duration"):
        value = getattr(request, name, None)
        if value is not None:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _wait_ended(final: _Final) -> Outcome:
    """The outcome of an input whose wait ended without a final task (a timeout, a read that failed)."""
    plan = final.plan
    assert final.error is not None
    error = errors.task_context(plan.task_id).attach(final.error) if plan.task_id else final.error
    return Outcome(final.index, final.input, final.request, error=_as_exception(error), resumed=plan.resumed)


def _reserved(task: Task) -> float | None:
    usage = task.usage
    if usage is None or usage.credits_reserved is None or not math.isfinite(usage.credits_reserved):
        return None
    return usage.credits_reserved


def _charged(task: Task, estimate: float) -> float:
    usage = task.usage
    if usage is not None and usage.credits_used is not None and math.isfinite(usage.credits_used):
        return usage.credits_used
    return estimate


def _pools(max_in_flight: int | None, limits: Limits) -> tuple[int, int, int]:
    """The batch's own cap, and how many submitters and finishers serve it."""
    pool = max_in_flight or limits.max_in_flight
    # Creates go out over at most max_connections at once: twice that many submitters keep them busy.
    return pool, min(pool, max(16, 2 * limits.max_connections)), min(pool, max(16, limits.max_download_connections))


def _check_max_in_flight(max_in_flight: int | None, client_cap: int) -> None:
    """The batch's own cap applies within its client's: a larger one is an error, never silently capped."""
    if max_in_flight is None:
        return
    if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1:
        raise errors.ValidationError("max_in_flight", f"must be an int >= 1 or None, got {max_in_flight!r}")
    if max_in_flight > client_cap:
        raise errors.ValidationError(
            "max_in_flight",
            f"{max_in_flight} is above the client's Limits(max_in_flight={client_cap}); "
            "a batch runs within its client's slots: raise the client's Limits(max_in_flight=...)",
        )


def _check_options(
    inputs: object, budget: float | None, cost_per_task: float | None, timeout: float | None, fields: Mapping[str, Any]
) -> None:
    if budget is not None and not (_is_number(budget) and budget >= 0):
        raise errors.ValidationError("budget", f"must be a number of credits >= 0, got {budget!r}")
    if cost_per_task is not None and not (_is_number(cost_per_task) and 0 <= cost_per_task < math.inf):
        raise errors.ValidationError("cost_per_task", f"must be a finite number of credits >= 0, got {cost_per_task!r}")
    check_timeout(timeout)
    check_field_names(fields, options=BATCH_OPTIONS)
    if isinstance(inputs, (str, bytes)):
        raise errors.ValidationError("requests", "must be an iterable of prompts, not a single string")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
