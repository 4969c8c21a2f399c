"""The account's tasks as EvoLink lists them (``GET /v1/tasks``): a lazily paged async iterator.

The listing is the way back to tasks a crashed process paid for but never recorded: it needs no journal, only
the key. It is newest first and carries no result links (read a task by id for those).
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from . import errors
from ._api import API
from .models import TaskStatus, TaskSummary

__all__ = ("TaskListing", "Tasks")

_STATUSES = frozenset(status.value for status in TaskStatus if status is not TaskStatus.UNKNOWN)
MAX_PAGE_SIZE = 100


class Tasks:
    """The account's tasks (``client.tasks``): ``async for task in client.tasks.list(status="processing")``."""

    def __init__(self, api: API, check_open: Callable[[], None]) -> None:
        self._api = api
        self._check_open = check_open

    def __repr__(self) -> str:
        return f"<Tasks {self._api.transport.base_url}>"

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: str | None = None,
        since: datetime | float | None = None,
        limit: int | None = None,
        page_size: int = 50,
    ) -> TaskListing:
        """The account's tasks, newest first, as :class:`~evolink_async.TaskSummary` items; pages are fetched
        as the loop reaches them (``GET /v1/tasks``).

        ``status`` and ``model`` filter at the server; ``since`` (an aware datetime or Unix seconds) stops at
        the first task created before it; ``limit`` stops after that many tasks. A task listed twice (the
        pages shift when tasks are created meanwhile) is yielded once. Arguments are checked here, before any
        request.
        """
        return TaskListing(
            self._api,
            self._check_open,
            status=_check_status(status),
            model=_check_model(model),
            since=_check_since(since),
            limit=None if limit is None else _check_count("limit", limit, None),
            page_size=_check_count("page_size", page_size, MAX_PAGE_SIZE),
        )


class TaskListing:
    """An async iterator over the account's tasks, one page fetched at a time (see :meth:`Tasks.list`)."""

    def __init__(
        self,
        api: API,
        check_open: Callable[[], None],
        *,
        status: str | None,
        model: str | None,
        since: float | None,
        limit: int | None,
        page_size: int,
    ) -> None:
        self._api = api
        self._check_open = check_open
        self._status = status
        self._model = model
        self._since = since
        self._limit = limit
        self._page_size = page_size
        self._buffer: collections.deque[TaskSummary] = collections.deque()
        self._seen: set[str] = set()
        self._next_page = 1
        self._done = False
        self.yielded = 0
        #: Requests sent so far (one per page).
        self.pages_read = 0

    def __repr__(self) -> str:
        return f"<TaskListing status={self._status} pages_read={self.pages_read} yielded={self.yielded}>"

    def __aiter__(self) -> AsyncIterator[TaskSummary]:
        return self

    async def __anext__(self) -> TaskSummary:
        while True:
            if self._limit is not None and self.yielded >= self._limit:
                raise StopAsyncIteration
            if not self._buffer:
                if self._done:
                    raise StopAsyncIteration
                await self._fetch()
                continue
            item = self._buffer.popleft()
            if item.id in self._seen:
                continue  # shifted onto the next page by a task created meanwhile
            if self._since is not None and item.created is not None and item.created < self._since:
                self._done = True  # newest first: every later item is older still
                self._buffer.clear()
                raise StopAsyncIteration
            self._seen.add(item.id)
            self.yielded += 1
            return item

    async def _fetch(self) -> None:
        self._check_open()
        page = self._next_page
        items, total = await self._api.list_tasks(
            page=page, page_size=self._page_size, status=self._status, model=self._model
        )
        self.pages_read += 1
        self._next_page += 1
        self._buffer.extend(items)
        # A short page is the last; so is the page that reaches the total the server counted (with the tasks
        # created meanwhile, which pushed older ones further down).
        if len(items) < self._page_size or (total is not None and page * self._page_size >= total):
            self._done = True


def _check_status(status: TaskStatus | str | None) -> str | None:
    if status is None:
        return None
    value = status.value if isinstance(status, TaskStatus) else status
    if value not in _STATUSES:
        raise errors.ValidationError("status", f"{status!r} is not one of {', '.join(sorted(_STATUSES))}")
    return value


def _check_model(model: str | None) -> str | None:
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise errors.ValidationError("model", f"must be a non-empty string, got {model!r}")
    return model


def _check_since(since: datetime | float | None) -> float | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise errors.ValidationError("since", "must be an aware datetime (e.g. datetime.now(timezone.utc))")
        return since.astimezone(UTC).timestamp()
    if isinstance(since, bool) or not isinstance(since, (int, float)) or not math.isfinite(since):
        raise errors.ValidationError("since", f"must be a datetime or Unix seconds, got {since!r}")
    return float(since)


def _check_count(name: str, value: int, most: int | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (most is not None and value > most):
        bound = f" and <= {most}" if most is not None else ""
        raise errors.ValidationError(name, f"must be an int >= 1{bound}, got {value!r}")
    return value
