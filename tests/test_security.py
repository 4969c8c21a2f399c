"""The API key never leaks (reprs, errors, logs) and goes only to the API, over TLS or loopback.

Every test uses a distinctive key, so a leak anywhere is a plain substring match.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from conftest import FAST_POLL, FAST_RETRY, UNPACED, closed_port

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault, directive_plan

SECRET = "sk-evo-TOPSECRET-7f3a9c1e5b2d4086"
OTHER_SECRET = "sk-evo-WRONGSECRET-0a1b2c3d4e5f6071"
QUICK = "a cat [duration:0.2]"


@pytest.fixture
async def sim() -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink(api_key=SECRET, plan=lambda body: directive_plan(body, default_duration=0.2)) as fake:
        yield fake


def _client(base_url: str, api_key: str | None = SECRET, **kwargs: Any) -> evo.AsyncClient:
    options: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "limits": UNPACED}
    options.update(kwargs)
    return evo.AsyncClient(api_key, base_url=base_url, **options)


def _renderings(err: BaseException) -> list[str]:
    """Every way an error commonly ends up in a log or a bug report, including its cause chain."""
    return [str(err), repr(err), "".join(traceback.format_exception(err)), repr(vars(err))]


def _assert_no_secret(err: BaseException, *secrets: str) -> None:
    for text in _renderings(err):
        for secret in secrets:
            assert secret not in text, f"{type(err).__name__} leaks the key"


# -- reprs -------------------------------------------------------------------------------------------------


async def test_client_repr_and_str_do_not_contain_the_key(sim: FakeEvolink) -> None:
    client = _client(sim.base_url)
    texts = [repr(client), str(client)]
    async with client:
        await client.credits()
        texts += [repr(client), str(client), repr(vars(client))]
    texts.append(repr(client))
    assert sim.base_url in texts[0]  # the repr is informative, just not secret
    assert all(SECRET not in t for t in texts)


# -- errors ------------------------------------------------------------------------------------------------


async def _collect_errors(sim: FakeEvolink) -> list[evo.EvolinkError]:
    """Errors from as many failure paths as the SDK has, all raised by a client holding SECRET."""
    collected: list[evo.EvolinkError] = []

    async def expect(cls: type[evo.EvolinkError], call: Callable[[], Any]) -> None:
        with pytest.raises(cls) as info:
            await call()
        collected.append(info.value)

    async with _client(
        sim.base_url, timeouts=evo.Timeouts(request=0.3), retry=attrs.evolve(FAST_RETRY, max_attempts=2)
    ) as client:
        task = await client.submit(QUICK)
        await expect(evo.BadRequestError, lambda: client.get_task("abc"))
        await expect(evo.NotFoundError, lambda: client.get_task("task-unified-1757165031-nosuchid"))
        sim.inject(Fault(kind="status", status=500, route="read", times=2))
        await expect(evo.ServerError, lambda: client.get_task(task.id))
        sim.inject(Fault(kind="html", route="read", times=2))
        await expect(evo.ServerError, lambda: client.get_task(task.id))
        sim.inject(Fault(kind="status", status=429, route="credits", retry_after="0.01", times=2))
        await expect(evo.RateLimitError, lambda: client.credits())
        sim.inject(Fault(kind="malformed", route="credits", times=2))
        await expect(evo.MalformedResponseError, lambda: client.credits())
        sim.inject(Fault(kind="drop", route="read", times=4))
        await expect(evo.APIConnectionError, lambda: client.get_task(task.id))
        sim.inject(Fault(kind="slow", route="read", delay=0.6, times=2))
        await expect(evo.APITimeoutError, lambda: client.get_task(task.id))
        sim.inject(Fault(kind="drop_after_create", route="create", times=2))
        await expect(evo.SubmissionUnknownError, lambda: client.submit(QUICK))
        sim.inject(Fault(kind="status", status=403, route="create"))
        await expect(evo.PermissionDeniedError, lambda: client.submit(QUICK))
        await expect(evo.ValidationError, lambda: client.submit(QUICK, idempotency_key="bad key"))
        await expect(evo.TaskFailedError, lambda: client.generate("a cat [duration:0.2] [fail:service_error]"))
        stuck = await client.submit("a cat [never]")
        await expect(evo.WaitTimeoutError, lambda: client.wait(stuck, timeout=0.2))
        sim.credits = 0
        await expect(evo.InsufficientCreditsError, lambda: client.submit("another cat"))
    await expect(evo.ClientStateError, lambda: client.credits())
    async with _client(f"http://127.0.0.1:{closed_port()}") as refused:
        await expect(evo.APIConnectionError, lambda: refused.credits())
    return collected


async def test_errors_from_every_failure_path_do_not_contain_the_key(sim: FakeEvolink) -> None:
    errors = await _collect_errors(sim)
    assert len(errors) >= 15
    for err in errors:
        _assert_no_secret(err, SECRET)


async def test_authentication_error_does_not_echo_the_rejected_key(sim: FakeEvolink) -> None:
    async with _client(sim.base_url, api_key=OTHER_SECRET) as client:
        with pytest.raises(evo.AuthenticationError) as info:
            await client.credits()
    assert sim.stats.auth_failures == 1
    _assert_no_secret(info.value, OTHER_SECRET, SECRET)


@pytest.mark.parametrize("base_url", ["http://example.com", "ftp://127.0.0.1/", "not a url"])
async def test_configuration_errors_do_not_contain_the_key(base_url: str) -> None:
    with pytest.raises(evo.ConfigurationError) as info:
        evo.AsyncClient(SECRET, base_url=base_url)
    _assert_no_secret(info.value, SECRET)


# -- logs --------------------------------------------------------------------------------------------------


async def test_debug_logs_over_retries_and_failures_do_not_contain_the_key(
    sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _client(sim.base_url) as client:
        sim.inject(Fault(kind="drop_after_create", route="create"))
        sim.inject(Fault(kind="status", status=429, route="batch", retry_after="0.01"))
        sim.inject(Fault(kind="status", status=500, route="batch", times=2))
        task = await client.generate(QUICK)
        sim.inject(Fault(kind="html", route="read", times=10))
        with pytest.raises(evo.ServerError):
            await client.get_task(task.id)
        with pytest.raises(evo.TaskFailedError):
            await client.generate("a cat [duration:0.2] [fail]")
    ours = [r for r in caplog.records if r.name.startswith("evolink_async")]
    assert len(ours) >= 3  # retries were logged, so the check below looked at real log lines
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        assert SECRET not in formatter.format(record), f"log record from {record.name} leaks the key"
        assert SECRET not in repr(record.args)
    assert SECRET not in caplog.text


# -- where the key goes --------------------------------------------------------------------------------------


async def test_every_api_request_carries_exactly_the_bearer_key(sim: FakeEvolink) -> None:
    async with _client(sim.base_url) as client:
        task = await client.generate(QUICK)  # create + status reads (batch)
        await client.get_task(task.id)
        await client.credits()
        sim.inject(Fault(kind="status", status=503, route="credits"))
        await client.credits()  # a retried request carries the same header
    seen = sim.stats.requests_seen
    assert {r.path.split("/")[2] for r in seen} >= {"images", "tasks", "credits"}
    assert len(seen) >= 5
    for record in seen:
        assert record.path.startswith("/v1/"), f"the client called {record.path}"
        assert record.headers.get("Authorization") == f"Bearer {SECRET}"
        assert record.headers.getall("Authorization") == [f"Bearer {SECRET}"]  # type: ignore[attr-defined]
    assert sim.stats.auth_failures == 0


@pytest.mark.parametrize(
    "base_url",
    ["http://example.com", "http://api.evolink.ai", "http://10.0.0.5:8080", "http://192.168.1.10", "http://[fe80::1]"],
)
async def test_plain_http_to_a_non_loopback_host_is_refused(base_url: str) -> None:
    with pytest.raises(evo.ConfigurationError) as info:
        evo.AsyncClient(SECRET, base_url=base_url)
    assert "http" in str(info.value)


async def test_plain_http_to_a_non_loopback_host_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVOLINK_BASE_URL", "http://example.com")
    with pytest.raises(evo.ConfigurationError):
        evo.AsyncClient(SECRET)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("https://example.com", "https://example.com"),
        ("https://api.evolink.ai/", "https://api.evolink.ai"),
    ],
)
async def test_https_and_loopback_http_base_urls_are_accepted(base_url: str, expected: str) -> None:
    client = evo.AsyncClient(SECRET, base_url=base_url)
    try:
        assert client.base_url == expected
    finally:
        await client.aclose()


async def test_missing_key_raises_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with pytest.raises(evo.ConfigurationError, match="EVOLINK_API_KEY"):
        evo.AsyncClient(base_url="http://127.0.0.1:8080")


@pytest.mark.parametrize("key", ["", "   ", "\n"])
async def test_blank_key_raises_configuration_error(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    with pytest.raises(evo.ConfigurationError):
        evo.AsyncClient(key, base_url="http://127.0.0.1:8080")


@pytest.mark.parametrize(
    "key",
    [SECRET + "\r\nX-Injected: 1", "sk-evo-TOP SECRET-7f3a9c1e5b2d4086", "sk-evo-TOPSECRET\x00-7f3a9c1e5b2d4086"],
    ids=["crlf", "space", "nul"],
)
async def test_key_with_control_characters_is_refused_at_construction_without_echoing_it(key: str) -> None:
    with pytest.raises(evo.ConfigurationError) as info:
        evo.AsyncClient(key, base_url="http://127.0.0.1:8080")
    _assert_no_secret(info.value, "TOPSECRET")


async def test_key_from_environment_is_used_when_no_argument_is_given(
    sim: FakeEvolink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOLINK_API_KEY", SECRET)
    async with evo.AsyncClient(base_url=sim.base_url) as client:
        await client.credits()
    (record,) = sim.stats.requests_seen
    assert record.headers.get("Authorization") == f"Bearer {SECRET}"
    assert sim.stats.auth_failures == 0


async def test_explicit_key_wins_over_the_environment(sim: FakeEvolink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLINK_API_KEY", OTHER_SECRET)
    async with evo.AsyncClient(SECRET, base_url=sim.base_url) as client:
        await client.credits()
    (record,) = sim.stats.requests_seen
    assert record.headers.get("Authorization") == f"Bearer {SECRET}"
