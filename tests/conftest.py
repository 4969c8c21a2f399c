"""Shared fixtures: a simulator on loopback per test, and a client pointed at it with fast retries."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import evolink_async as evo
from evolink_async.testing import FakeEvolink

# Fast retries keep fault tests quick; the schedule's shape is what the tests pin, not its scale.
FAST_RETRY = evo.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, max_retry_after=2.0)
FAST_POLL = evo.PollPolicy(min_interval=0.05, max_interval=0.5, default_estimate=1.0)
UNPACED = evo.Limits(max_in_flight=64, requests_per_second=None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test runs under anyio (asyncio backend) without a mark on each.
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.function):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink() as sim:
        yield sim


def _make_client(fake: FakeEvolink, **kwargs: Any) -> evo.AsyncClient:
    options: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "limits": UNPACED}
    options.update(kwargs)
    return evo.AsyncClient(fake.api_key, base_url=fake.base_url, **options)


@pytest.fixture
def make_client() -> Callable[..., evo.AsyncClient]:
    """``make_client(fake, **options)``: a client for ``fake`` with test-speed retry/poll policies."""
    return _make_client


@pytest.fixture
async def client(fake: FakeEvolink) -> AsyncIterator[evo.AsyncClient]:
    async with _make_client(fake) as c:
        yield c
