"""Shared fixtures: a simulator on loopback per test, and a client pointed at it with fast retries."""

from __future__ import annotations

import inspect
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import trustme

import evolink_async as evo
from evolink_async.testing import FakeEvolink

# Fast retries keep fault tests quick; the schedule's shape is what the tests pin, not its scale.
FAST_RETRY = evo.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, max_retry_after=2.0)
FAST_POLL = evo.PollPolicy(min_interval=0.05, max_interval=0.5, default_estimate=1.0)
UNPACED = evo.Limits(max_in_flight=64, requests_per_second=None)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every coroutine test runs under anyio (asyncio backend) without a mark on each. The mark must be
    # on the function before anyio's own collection hook looks at it (so parametrize still works).
    is_test = isinstance(collector, pytest.Module | pytest.Class) and collector.istestfunction(obj, name)
    if is_test and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


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


async def until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Yield until ``predicate()`` holds; the limit only guards against a hang."""
    with anyio.fail_after(limit):
        while True:
            if predicate():
                return
            await anyio.sleep(0.01)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.frozen
class TLS:
    server: ssl.SSLContext  # the receiver's certificate (127.0.0.1 and localhost)
    client: ssl.SSLContext  # trusts the test CA: for the simulator's deliveries and the test's own posts
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    """A test CA's certificate for 127.0.0.1 (real HTTPS on loopback), and a context that trusts it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    where = tmp_path_factory.mktemp("tls")
    cert_file, key_file = where / "cert.pem", where / "key.pem"
    for blob in cert.cert_chain_pems:
        blob.write_to_path(cert_file, append=True)
    cert.private_key_pem.write_to_path(key_file)
    return TLS(server, client, cert_file, key_file)
