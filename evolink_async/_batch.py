"""Fan-out: many inputs through one client, outcomes as they complete, a budget and a journal.

The input is consumed lazily: the next input is pulled only when one of ``max_in_flight`` slots is free,
so a generator of a million prompts costs memory for ``max_in_flight`` of them. Each input ends in exactly
one :class:`Outcome` — a completed task, or the exception that stopped it; one failure never cancels the rest.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import types
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import errors
from ._converter import request_to_wire, structure_task, task_to_wire
from ._journal import Journal, fingerprint
from ._requests import Slot, build_request, check_field_names, new_idempotency_key
from .models import ImageRequest, Task, TaskStatus

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ("BatchInput", "BatchRun", "BatchStats", "Outcome")

log = logging.getLogger("evolink_async")

#: What ``generate_many`` accepts per input: a prompt, an ImageRequest, or a mapping of request fields.
BatchInput: TypeAlias = "str | ImageRequest | Mapping[str, Any]"


@attrs.frozen
class Outcome:
    """What became of one input: ``task`` when it completed, ``error`` when it did not (never both lost).

    A completed task whose download failed has both ``task`` and ``error`` (a DownloadError). ``resumed``
    means a journal knew this input from an earlier run: its outcome was read back, its task awaited by id,
    or its create resent with the saved key (which EvoLink answers with the original task).
    """

    index: int
    input: Any
    request: ImageRequest | None = None
    task: Task | None = None
    error: Exception | None = None
    files: tuple[Path, ...] = ()
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True when the task completed and everything asked of it (downloads) succeeded."""
        return self.error is None and self.task is not None and self.task.status is TaskStatus.COMPLETED

    @property
    def task_id(self) -> str | None:
        """The task's id, from the task or from the error, when a task was created."""
        if self.task is not None:
            return self.task.id
        return getattr(self.error, "task_id", None)


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

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.not_submitted


def _to_request(item: Any, fields: Mapping[str, Any]) -> ImageRequest:
    if isinstance(item, Mapping):
        data = dict(item)
        prompt = data.pop("prompt", None)
        if not isinstance(prompt, str):
            raise errors.ValidationError("prompt", "each mapping input needs a string 'prompt'")
        # A mapping is a JSON object of request fields (a batch file's line): unknown keys are body fields.
        return build_request(prompt, {**fields, **data}, strict=False)
    if isinstance(item, str) and not fields:
        return ImageRequest(item)  # the common case, without the keyword plumbing
    if isinstance(item, ImageRequest):
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
        client: AsyncClient,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int | None,
        budget: float | None,
        cost_per_task: float | None,
        download_to: str | os.PathLike[str] | None,
        journal: str | os.PathLike[str] | None,
        timeout: float | None,
        fields: Mapping[str, Any],
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise errors.ValidationError("max_in_flight", f"must be >= 1, got {max_in_flight!r}")
        if budget is not None and not budget >= 0:
            raise errors.ValidationError("budget", f"must be >= 0 credits, got {budget!r}")
        if timeout is not None and not timeout > 0:
            raise errors.ValidationError("timeout", f"must be > 0 seconds or None, got {timeout!r}")
        check_field_names(fields)
        if isinstance(inputs, (str, bytes)):
            raise errors.ValidationError("requests", "must be an iterable of prompts, not a single string")
        self._client = client
        self._inputs = inputs
        self._pool_size = max_in_flight or client.limits.max_in_flight
        self.budget = budget
        self._price: float | None = cost_per_task
        self._price_known = anyio.Event()
        self._probing = False
        self._price_missing = False
        self._fatal: errors.JournalError | None = None
        self._input_error: Exception | None = None
        self._download_to = Path(download_to) if download_to is not None else None
        self._journal = Journal(journal) if journal is not None else None
        self._timeout = timeout
        self._fields = dict(fields)
        self.stats = BatchStats()
        self._task_group: anyio.abc.TaskGroup | None = None
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
        self._client._check_open(needs_poller=True)
        if self._journal is not None:
            await self._journal.open()
            # Credits of earlier runs count against this run's budget, before any worker starts (a worker
            # reading its own entry would race the new inputs' reservations).
            self.stats.committed_credits = await self._journal.committed()
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
                    await self._journal.close()

    def __aiter__(self) -> AsyncIterator[Outcome]:
        if self._receive is None:
            raise errors.ClientStateError("use `async with client.generate_many(...) as run: async for o in run`")
        return self._receive.__aiter__()

    # -- the work ------------------------------------------------------------------------------------

    async def _produce(self, send: MemoryObjectSendStream[Outcome]) -> None:
        # A fixed pool of max_in_flight workers, each pulling its next input only when idle: memory stays flat
        # however long the input, and nothing is paid per input for a task, a token or a stream clone.
        # An async iterator must not be advanced by two workers at once; a plain one is advanced without any
        # await, so it needs no lock.
        inputs = self._inputs
        async_items = inputs.__aiter__() if isinstance(inputs, AsyncIterable) else None
        sync_items = iter(inputs) if async_items is None else None  # type: ignore[arg-type]
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
            return next(counter), item

        async def worker(out: MemoryObjectSendStream[Outcome]) -> None:
            async with out:
                while (pulled := await next_input()) is not None:
                    if not await self._work(*pulled, out):
                        return

        try:
            async with send, anyio.create_task_group() as workers:
                for _ in range(self._pool_size):
                    workers.start_soon(worker, send.clone())
        finally:
            # Leaving early closes the caller's async generator now, not whenever it is collected.
            aclose = getattr(async_items, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def _work(self, index: int, item: Any, send: MemoryObjectSendStream[Outcome]) -> bool:
        """Run one input to its outcome and hand it over; False when the whole run must stop."""
        try:
            outcome = await self._process(index, item)
        except errors.JournalError as exc:
            # A journal of another batch: stop the whole run and say so (raised by __aexit__).
            if self._fatal is None:
                self._fatal = exc
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
            return False
        except Exception as exc:  # one input's failure never cancels the rest, and is never lost
            log.debug("batch input %d failed: %s", index, exc)
            outcome = Outcome(index=index, input=item, error=exc)
        if outcome.error is None:
            self.stats.completed += 1
        elif outcome.task is None and isinstance(outcome.error, errors.BudgetExceededError):
            self.stats.not_submitted += 1
        else:
            self.stats.failed += 1
        try:
            try:
                send.send_nowait(outcome)  # room in the buffer: no event-loop round trip
            except anyio.WouldBlock:
                await send.send(outcome)
        except anyio.BrokenResourceError:
            log.debug("batch consumer left; outcome of input %d not delivered", index)
        return True

    async def _process(self, index: int, item: Any) -> Outcome:
        try:
            request = _to_request(item, self._fields)
        except errors.ValidationError as exc:
            return Outcome(index=index, input=item, error=exc)
        journal = self._journal
        fp = fingerprint(request_to_wire(request)) if journal is not None else ""
        key: str | None = None
        task_id: str | None = None
        entry = None
        if journal is not None:
            entry = await journal.get(index)
            if entry is not None:
                if entry.fingerprint != fp:
                    raise errors.JournalError(
                        f"journal {journal.path} holds a different request at input {index}: "
                        "it belongs to another batch (use a new journal file)"
                    )
                key, task_id = entry.idempotency_key, entry.task_id
                if entry.state in ("completed", "failed") and entry.task_json is not None:
                    return await self._resume_final(index, item, request, entry.task_json, entry.files, entry.credits)
        estimate = 0.0
        resumed = False
        probe = False  # this input's create is the one that tells the price
        if task_id is None and key is not None:
            # Planned in an earlier run: its create may have reached EvoLink, so it is resubmitted with its
            # key whatever the budget (a replay costs nothing again; losing a paid task would be worse).
            estimate = self._price or 0.0
            self.stats.committed_credits += estimate
            self.stats.resumed += 1
            resumed = True
        elif task_id is None:
            estimate, probe = await self._reserve_budget(request)
            if estimate < 0:
                why = (
                    "the API reported no price (usage.credits_reserved) to keep a budget by; pass cost_per_task"
                    if self._price_missing
                    else f"credits committed ({self.stats.committed_credits:g}) plus this task would exceed the "
                    f"budget of {self.budget:g}"
                )
                return Outcome(
                    index=index,
                    input=item,
                    request=request,
                    error=errors.BudgetExceededError(
                        f"not submitted: {why}",
                        budget=self.budget or 0.0,
                        committed=self.stats.committed_credits,
                    ),
                )
            if key is None:
                key = new_idempotency_key()
                if journal is not None:
                    try:
                        # Committed before the create is sent: a crash from here on is resumed with this key.
                        await journal.plan(index, fp, key)
                    except BaseException:
                        self._settle(estimate, 0.0)
                        if probe:
                            self._end_probe()  # others wait on the probe: never leave them waiting
                        raise
        else:
            # Awaited by the task id the journal kept: nothing is sent again, and its credits were counted
            # when the run started (or, if the journal has none for it, are counted now).
            if entry is not None and entry.credits is not None:
                estimate = entry.credits
            else:
                estimate = self._price or 0.0
                self.stats.committed_credits += estimate
            self.stats.resumed += 1
            resumed = True
        self.stats.in_flight += 1
        try:
            async with Slot(self._client._in_flight):
                known: Task | None = None
                submitted_at: float | None = None
                if task_id is None:
                    assert key is not None
                    try:
                        known = await self._client.submit(request, idempotency_key=key)
                    except BaseException as exc:
                        if probe:
                            self._end_probe()
                        if resumed and isinstance(exc, errors.ConflictError):
                            # The saved key with another body (e.g. a different callback URL this run):
                            # the task of the first run may exist, so this is unknown, not a refusal.
                            raise errors.SubmissionUnknownError(
                                f"the saved Idempotency-Key was refused with this request ({exc}); the task "
                                "of the earlier run may exist",
                                idempotency_key=key,
                            ) from exc
                        if not isinstance(exc, errors.SubmissionUnknownError):
                            self._settle(estimate, 0.0)  # certainly not created
                        raise  # an unknown outcome keeps its estimate committed: the task may exist
                    submitted_at = time.monotonic()
                    task_id = known.id
                    reserved = _reserved(known)
                    self._learn_price(reserved, probe=probe)
                    self._settle(estimate, reserved if reserved is not None else estimate)
                    estimate = reserved if reserved is not None else estimate
                    self.stats.submitted += 1
                    if journal is not None:
                        await journal.submitted(index, task_id, reserved)
                final = await self._client._wait(task_id, known, submitted_at, self._timeout, None, False)
        finally:
            self.stats.in_flight -= 1
        if final.status is not TaskStatus.COMPLETED:
            self._settle(estimate, 0.0)  # failed and cancelled tasks are refunded
            if journal is not None:
                await journal.finished(index, state="failed", task_json=task_to_wire(final), credits=0.0)
            failure = errors.TaskCancelledError if final.status is TaskStatus.CANCELLED else errors.TaskFailedError
            return Outcome(index=index, input=item, request=request, task=final, error=failure(final), resumed=resumed)
        charged = _charged(final, estimate)
        self._settle(estimate, charged)
        return await self._finish_completed(index, item, request, final, charged, resumed=resumed)

    async def _finish_completed(
        self, index: int, item: Any, request: ImageRequest, task: Task, credits: float, *, resumed: bool
    ) -> Outcome:
        files: tuple[Path, ...] = ()
        error: Exception | None = None
        if self._download_to is not None:
            try:
                files = tuple(await self._client.download(task, self._download_to))
            except Exception as exc:  # DownloadError, or anything else: the completed, paid task is kept
                error = exc  # the task stays in the outcome: its URLs are valid for 24 h
        if self._journal is not None:
            await self._journal.finished(
                index, state="completed", task_json=task_to_wire(task), files=[str(f) for f in files], credits=credits
            )
        return Outcome(index=index, input=item, request=request, task=task, error=error, files=files, resumed=resumed)

    async def _resume_final(
        self,
        index: int,
        item: Any,
        request: ImageRequest,
        task_json: dict[str, Any],
        files: tuple[str, ...],
        credits: float | None,
    ) -> Outcome:
        task = structure_task(task_json)
        self.stats.resumed += 1
        if task.status is not TaskStatus.COMPLETED:
            failure = errors.TaskCancelledError if task.status is TaskStatus.CANCELLED else errors.TaskFailedError
            return Outcome(index=index, input=item, request=request, task=task, error=failure(task), resumed=True)
        # Its credits were counted from the journal when the run started.
        paths = tuple(Path(f) for f in files)
        if self._download_to is not None and (not paths or not all(p.exists() for p in paths)):
            return await self._finish_completed(index, item, request, task, credits or 0.0, resumed=True)
        return Outcome(index=index, input=item, request=request, task=task, files=paths, resumed=True)

    # -- the budget ----------------------------------------------------------------------------------

    async def _reserve_budget(self, request: ImageRequest) -> tuple[float, bool]:
        """Commit this input's expected credits: (estimate, whether it is the price probe); -1 when refused."""
        if self.budget is None:
            return 0.0, False
        while self._price is None and not self._price_missing:
            if not self._probing:
                # This input's create will tell what a task costs: it may go if anything of the budget is left.
                if self.stats.committed_credits >= self.budget:
                    return -1.0, False
                self._probing = True
                return 0.0, True
            # Another input is finding out the price: wait for it rather than guess.
            await self._price_known.wait()
        if self._price is None:
            return -1.0, False  # the API gave no price: fail closed rather than spend blind
        if self.stats.committed_credits + self._price > self.budget + 1e-9:
            return -1.0, False
        self.stats.committed_credits += self._price
        return self._price, False

    def _learn_price(self, reserved: float | None, *, probe: bool) -> None:
        if reserved is not None:
            self._price = reserved if self._price is None else max(self._price, reserved)
        elif probe and self._price is None:
            self._price_missing = True
        if probe:
            self._end_probe()

    def _end_probe(self) -> None:
        """The probing input is done (priced, failed or cancelled): wake those waiting for the price."""
        self._probing = False
        event, self._price_known = self._price_known, anyio.Event()
        event.set()

    def _settle(self, expected: float, actual: float) -> None:
        self.stats.committed_credits += actual - expected


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
