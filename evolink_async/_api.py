"""The API's calls as methods that return models: create, get, get_many, credits.

Each call goes through the pace (status reads first), the transport, and the one retry mechanism. A create
is retried only with its Idempotency-Key, and when its outcome stays unknown it raises
:class:`SubmissionUnknownError` carrying that key — decided here, and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import attrs

from . import errors
from ._config import RetryPolicy
from ._converter import batch_items, structure_credits, structure_task, structure_task_page
from ._pace import RateLimiter
from ._retry import Decide, retrying
from ._transport import Response, Transport, path_segment
from .models import Credits, Task, TaskSummary

__all__ = ("API", "Created")


@attrs.frozen
class Created:
    """A create's answer: the task, and whether the server replayed an earlier create of the same key."""

    task: Task
    replayed: bool


def _worth_retrying(exc: Exception) -> bool:
    """Transport trouble worth another attempt: connection errors, timeouts, 429, 5xx, a garbled answer."""
    return isinstance(
        exc, (errors.RateLimitError, errors.ServerError, errors.APIConnectionError, errors.MalformedResponseError)
    )


def _may_have_created(exc: Exception) -> bool:
    """Whether a failed create attempt may still have created a task on the server."""
    if isinstance(exc, errors.APIConnectionError):
        return exc.maybe_sent
    return isinstance(exc, (errors.ServerError, errors.MalformedResponseError))  # 429 is a refusal


class API:
    """EvoLink's endpoints for one key: paced, retried, answers read into models."""

    def __init__(self, transport: Transport, pace: RateLimiter, retry: RetryPolicy) -> None:
        self.transport = transport
        self.pace = pace
        self.retry = retry

    def __repr__(self) -> str:
        return f"<API {self.transport.base_url} requests_sent={self.transport.requests_sent}>"

    def _decide(self, exc: Exception) -> bool | float:
        if not _worth_retrying(exc):
            return False
        if isinstance(exc, errors.RateLimitError) and exc.retry_after is not None:
            return exc.retry_after
        return True

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        urgent: bool = False,
        timeout: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        decide: Decide | None = None,
    ) -> Response:
        try:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode() if body is not None else None
        except ValueError as exc:  # Infinity / NaN: not JSON, and never sent
            raise errors.ValidationError("request", f"a field is not a finite number: {exc}") from None

        async def attempt() -> Response:
            await self.pace.acquire(urgent=urgent)
            try:
                resp = await self.transport.send(
                    method, path, body=data, idempotency_key=idempotency_key, timeout=timeout
                )
            except errors.RateLimitError as exc:
                # The pause is capped like the retry delay: a huge Retry-After must not stall every request.
                hint = exc.retry_after
                await self.pace.rate_limited(None if hint is None else min(hint, self.retry.max_retry_after))
                raise
            self.pace.on_success()
            return resp

        return await retrying(
            self.retry,
            attempt,
            decide or self._decide,
            observers=self.transport.observers,
            max_attempts=max_attempts,
            what=f"{method} {path}",
        )

    async def create(self, path: str, body: dict[str, Any], key: str) -> Created:
        """``POST`` a generation; retried only with ``key``; an unknown outcome raises SubmissionUnknownError."""
        maybe_created = False

        def decide(exc: Exception) -> bool | float:
            nonlocal maybe_created
            maybe_created = maybe_created or _may_have_created(exc)
            return self._decide(exc)

        try:
            resp = await self._request("POST", path, body, idempotency_key=key, decide=decide)
        except errors.EvolinkError as exc:
            error = _create_error(exc, key, maybe_created or _may_have_created(exc))
            if error is exc:
                raise
            raise error from exc
        try:
            task = structure_task(resp.data, request_id=resp.request_id)
        except Exception as exc:  # whatever reading the answer raised: the task may exist
            # Only the key can find it again without paying twice.
            raise errors.SubmissionUnknownError(
                f"create answered but the task could not be read: {exc}", idempotency_key=key
            ) from exc
        replayed = resp.headers.get("idempotency-replayed", "").lower() == "true"
        if replayed:  # rare: said on the task too, so that whoever gets the task can count it
            task = attrs.evolve(task, replayed=True)
        return Created(task=task, replayed=replayed)

    async def get(
        self, task_id: str, *, urgent: bool = False, timeout: float | None = None, max_attempts: int | None = None
    ) -> Task:
        """``GET /v1/tasks/{id}``; an answer about another task is a MalformedResponseError."""
        with errors.task_context(task_id):
            path = f"/v1/tasks/{path_segment('task_id', task_id)}"
            resp = await self._request("GET", path, urgent=urgent, timeout=timeout, max_attempts=max_attempts)
            task = structure_task(resp.data, request_id=resp.request_id)
            if task.id != task_id:
                # A caching proxy can answer with another task: never hand one task's result to another's waiter.
                raise errors.MalformedResponseError(
                    f"asked for task {task_id} but the answer is about task {task.id}", request_id=resp.request_id
                )
            return task

    async def get_many(
        self, task_ids: list[str], *, timeout: float | None = None, max_attempts: int = 2
    ) -> dict[str, Task]:
        """``POST /v1/tasks/batch`` (undocumented, up to 50 ids): the tasks it answered, by id.

        Ids it left out (unknown, foreign) and items that cannot be read are absent: read those one by one.
        """
        resp = await self._request(
            "POST", "/v1/tasks/batch", {"task_ids": task_ids}, urgent=True, timeout=timeout, max_attempts=max_attempts
        )
        found: dict[str, Task] = {}
        for item in batch_items(resp.data, request_id=resp.request_id):
            try:
                task = structure_task(item, request_id=resp.request_id)
            except errors.MalformedResponseError:
                continue  # one unreadable item must not hold up the others
            found[task.id] = task
        return found

    async def list_tasks(
        self, *, page: int, page_size: int, status: str | None = None, model: str | None = None
    ) -> tuple[list[TaskSummary], int | None]:
        """``GET /v1/tasks`` (one page, newest first): the page's tasks and the ``total`` the server counts."""
        query = {"page": page, "page_size": page_size, "status": status, "model": model}
        path = "/v1/tasks?" + urlencode({k: v for k, v in query.items() if v is not None})
        resp = await self._request("GET", path, urgent=True)
        return structure_task_page(resp.data, request_id=resp.request_id)

    async def credits(self) -> Credits:
        """``GET /v1/credits``."""
        resp = await self._request("GET", "/v1/credits")
        return structure_credits(resp.data, request_id=resp.request_id)


def _create_error(exc: errors.EvolinkError, key: str, maybe_created: bool) -> errors.EvolinkError:
    """A failed create's error: carrying its key, or SubmissionUnknownError when the task may exist."""
    if maybe_created:
        closing = isinstance(exc, errors.ClientStateError)
        why = "the client was closed while creating a task" if closing else f"create outcome unknown: {exc}"
        unknown = errors.SubmissionUnknownError(
            f"{why}; resubmit with the same idempotency_key to get the original task without paying twice",
            idempotency_key=key,
        )
        return unknown
    exc.idempotency_key = key
    return exc
