"""EvoLink callbacks end to end: the simulator POSTs over real HTTPS (a ``trustme`` CA) to the client's receiver,
mounted three ways (aiohttp handler, aiohttp sub-app, ASGI app under uvicorn), and the waiter resolves on the
receiver's confirmation read.

A callback is only a hint (EvoLink signs nothing): these tests forge, duplicate, reorder, malform and flood
callbacks and check on the simulator's counters that the caller only ever sees what a read with our own key
returned, that junk costs no reads and no memory, and that the key goes nowhere near the receiver.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any, Literal

import aiohttp
import anyio
import attrs
import pytest
import uvicorn
from aiohttp import web
from conftest import FAST_POLL, FAST_RETRY, TLS, UNPACED, until

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault, directive_plan

Mount = Literal["handler", "subapp", "asgi"]
MOUNTS: tuple[Mount, ...] = ("handler", "subapp", "asgi")

SECRET = "sk-evo-CALLBACK-SECRET-5e1d9a7c3b"
PATH = "/evolink/callback"
QUICK = "a cat [duration:0.3]"
NEVER = "a cat [never]"
EVIL = "https://evil.example/stolen.png"
UNKNOWN_ID = "task-unified-1757165031-zzzzzzzz"
# A short safety net, for the tests where the callback never comes.
SHORT_NET = attrs.evolve(FAST_POLL, callback_grace=0.5, callback_slack=0.2, callback_max_interval=0.5)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


# -- TLS, the receiver's server, and the test's own HTTPS session ----------------------------------------------


@pytest.fixture
async def sim(tls: TLS) -> AsyncIterator[FakeEvolink]:
    async with FakeEvolink(
        api_key=SECRET,
        plan=lambda body: directive_plan(body, default_duration=0.3),
        callback_retry_delays=(0.05, 0.1, 0.2),
        callback_timeout=2.0,
        callback_ssl=tls.client,
        allow_local_callbacks=True,
    ) as fake:
        yield fake


@attrs.define
class Rig:
    """A client with a callback URL, its receiver served over HTTPS, and a session to post to it."""

    client: evo.AsyncClient
    url: str
    session: aiohttp.ClientSession
    #: Request headers of every request that reached the receiver's server (while ``recording``), lower-cased names.
    headers: list[dict[str, str]] = attrs.field(factory=list)
    recording: bool = True

    @property
    def receiver(self) -> evo.CallbackReceiver:
        return self.client.callbacks

    async def post(self, body: bytes | dict[str, Any] | list[Any], **kwargs: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        async with self.session.post(self.url, data=data, headers=headers, **kwargs) as resp:
            text = await resp.text()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = text
            return resp.status, answer


StartRig = Callable[..., Awaitable[Rig]]


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _client(fake: FakeEvolink, **kwargs: Any) -> evo.AsyncClient:
    options: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "limits": UNPACED}
    options.update(kwargs)
    return evo.AsyncClient(fake.api_key, base_url=fake.base_url, **options)


def _recording_asgi(app: ASGIApp, rig: Rig) -> ASGIApp:
    async def recording(
        scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "http" and rig.recording:
            rig.headers.append({k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]})
        await app(scope, receive, send)

    return recording


async def serve_aiohttp(stack: AsyncExitStack, app: web.Application, sock: socket.socket, tls: TLS) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock, ssl_context=tls.server).start()


async def serve_uvicorn(
    stack: AsyncExitStack, app: ASGIApp, sock: socket.socket, tls: TLS, *, lifespan: str = "on"
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan=lifespan,  # type: ignore[arg-type]
        # uvicorn's auto-detection takes a bound ``async def`` method for an ASGI2 app: say it is ASGI3.
        interface="asgi3",
        ssl_certfile=str(tls.cert_file),
        ssl_keyfile=str(tls.key_file),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    tg = await stack.enter_async_context(anyio.create_task_group())

    async def stop() -> None:
        server.should_exit = True

    stack.push_async_callback(stop)
    tg.start_soon(server.serve, [sock])
    await until(lambda: server.started)
    return server


@pytest.fixture
async def start(sim: FakeEvolink, tls: TLS) -> AsyncIterator[StartRig]:
    """``await start(mount="handler", **client_options)``: an open client whose receiver is being served."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client, limit=32))
        )

        async def start_rig(mount: Mount = "handler", **options: Any) -> Rig:
            sock = stack.enter_context(_listener())
            port = sock.getsockname()[1]
            url = f"https://127.0.0.1:{port}{PATH}"
            client = _client(sim, callback_url=url, allow_local_callback_url=True, **options)
            rig = Rig(client, url, session)
            if mount == "asgi":
                await serve_uvicorn(stack, _recording_asgi(client.callbacks.asgi_app, rig), sock, tls)
            else:

                @web.middleware
                async def record(
                    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
                    if rig.recording:
                        rig.headers.append({k.lower(): v for k, v in request.headers.items()})
                    return await handler(request)

                app = web.Application(middlewares=[record])
                if mount == "handler":
                    app.router.add_post(PATH, client.callbacks.aiohttp_handler)
                else:
                    app.add_subapp(PATH, client.callbacks.aiohttp_app())
                await serve_aiohttp(stack, app, sock, tls)
            # Entered last, so closed first: the client closes before its receiver's server goes away.
            await stack.enter_async_context(client)
            return rig

        yield start_rig


# -- small helpers ------------------------------------------------------------------------------------------


@attrs.define
class Waiter:
    """A ``generate`` call running in the background (so the test can act while it waits)."""

    task_id: str = ""
    result: evo.Task | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


async def start_generate(
    tg: anyio.abc.TaskGroup, rig: Rig, sim: FakeEvolink, prompt: str = NEVER, **kwargs: Any
) -> Waiter:
    waiter = Waiter()
    before = set(sim.tasks)
    waiting = rig.client.waiting

    async def run() -> None:
        try:
            waiter.result = await rig.client.generate(prompt, **kwargs)
        except Exception as exc:
            waiter.error = exc

    tg.start_soon(run)
    await until(lambda: rig.client.waiting > waiting)
    (waiter.task_id,) = set(sim.tasks) - before
    return waiter


def _reads_of(sim: FakeEvolink, task_id: str) -> list[float]:
    return [r.time for r in sim.stats.requests_seen if r.method == "GET" and r.path == f"/v1/tasks/{task_id}"]


def _safety_net_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "no callback announced it" in r.getMessage()]


# -- the full flow ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mount", MOUNTS)
async def test_generate_completes_on_the_callback_with_one_confirmation_read(
    start: StartRig, sim: FakeEvolink, mount: Mount
) -> None:
    rig = await start(mount)
    task = await rig.client.generate(QUICK)
    await sim.wait_callbacks_idle()

    assert task.status is evo.TaskStatus.COMPLETED
    assert list(task.results) == sim.task_view(task.id)["results"]
    assert sim.tasks[task.id].request["callback_url"] == rig.url
    # The safety net's first read would come 10 s after the estimate: the one read is the confirmation.
    assert sim.stats.reads[task.id] == 1
    assert sim.stats.read_requests == 1
    assert sim.stats.batch_requests == 0
    assert sim.stats.callbacks_delivered == 1
    assert [(r.task_id, r.url, r.status) for r in sim.stats.callback_log] == [(task.id, rig.url, 202)]
    assert rig.receiver.stats.confirmed == 1


async def test_many_tasks_each_complete_on_their_own_callback(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    tasks: list[evo.Task] = []

    async def one(n: int) -> None:
        tasks.append(await rig.client.generate(f"cat {n} [duration:0.{2 + n % 3}]"))

    async with anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(one, n)
    await sim.wait_callbacks_idle()

    assert len({t.id for t in tasks}) == 12
    assert all(sim.stats.reads[t.id] == 1 for t in tasks)
    assert sim.stats.callbacks_delivered == 12
    assert rig.receiver.stats.confirmed == 12


async def test_a_failed_task_is_announced_by_callback_and_raises_task_failed(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    with pytest.raises(evo.TaskFailedError) as info:
        await rig.client.generate("a cat [duration:0.2] [fail:service_error]")
    await sim.wait_callbacks_idle()

    assert info.value.code == "service_error"
    task_id = info.value.task_id
    assert task_id is not None
    assert sim.stats.reads[task_id] == 1
    assert sim.stats.callbacks_delivered == 1


async def test_client_without_callback_url_sends_none_and_polls(
    sim: FakeEvolink, make_client: Callable[..., evo.AsyncClient]
) -> None:
    async with make_client(sim) as client:
        task = await client.generate(QUICK)
    assert "callback_url" not in sim.tasks[task.id].request
    assert sim.stats.callbacks_attempted == 0


async def test_deliveries_carry_no_authorization_header(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    await rig.client.generate(QUICK)
    await sim.wait_callbacks_idle()

    assert len(rig.headers) == 1
    (headers,) = rig.headers
    assert "authorization" not in headers
    assert all(SECRET not in value for value in headers.values())
    assert headers["content-type"] == "application/json"


# -- callback_url validation --------------------------------------------------------------------------------

LONG_URL = "https://hooks.example.com/" + "a" * 2048


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/cb",
        "https://10.1.2.3/cb",
        "https://192.168.1.1/cb",
        "https://127.0.0.1/cb",
        "https://[::1]/cb",
        "https://localhost/cb",
        LONG_URL,
    ],
)
def test_client_callback_url_rejected_at_construction(url: str) -> None:
    with pytest.raises(evo.ConfigurationError, match="callback_url"):
        evo.AsyncClient(SECRET, callback_url=url)


def test_public_https_callback_url_is_accepted() -> None:
    client = evo.AsyncClient(SECRET, callback_url="https://hooks.example.com/evolink/callback")
    assert client.callback_url == "https://hooks.example.com/evolink/callback"


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:8443/cb", "https://localhost/cb", "https://10.1.2.3/cb", "https://[::1]:9000/cb"]
)
def test_allow_local_callback_url_accepts_loopback_and_private_https(url: str) -> None:
    client = evo.AsyncClient(SECRET, callback_url=url, allow_local_callback_url=True)
    assert client.callback_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8443/cb", "http://localhost/cb", "ftp://127.0.0.1/cb", "https:///cb"]
)
def test_allow_local_callback_url_still_requires_https_with_a_host(url: str) -> None:
    with pytest.raises(evo.ConfigurationError, match="callback_url"):
        evo.AsyncClient(SECRET, callback_url=url, allow_local_callback_url=True)


def test_allow_local_callback_url_still_rejects_urls_over_2048_characters() -> None:
    # The flag relaxes the host rule only: the API refuses such a URL on every create whatever the host.
    with pytest.raises(evo.ConfigurationError, match="2048"):
        evo.AsyncClient(SECRET, callback_url="https://127.0.0.1/" + "a" * 2048, allow_local_callback_url=True)


async def test_request_callback_url_is_still_validated_strictly(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()  # the client's own URL is local (allowed by the flag)
    with pytest.raises(evo.ValidationError) as info:
        await rig.client.submit("a cat", callback_url="https://127.0.0.1/mine")
    assert info.value.field == "callback_url"
    with pytest.raises(evo.ValidationError) as info:
        await rig.client.generate("a cat", callback_url="http://hooks.example.com/mine")
    assert info.value.field == "callback_url"
    assert sim.stats.create_requests == 0


async def test_request_callback_url_wins_over_the_clients(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    mine = "https://hooks.example.com/mine"
    task = await rig.client.submit(evo.ImageRequest(NEVER, callback_url=mine))

    assert sim.tasks[task.id].request["callback_url"] == mine
    # Not ours to be told about: waits on it poll normally.
    assert task.id not in rig.client._engine.callback_registry


# -- lost callbacks: the safety net -------------------------------------------------------------------------


async def test_lost_callbacks_complete_through_the_safety_net_and_warn_once(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evolink_async")
    rig = await start(poll=SHORT_NET)
    sim.lose_callbacks = True
    tasks: list[evo.Task] = []

    async def one(prompt: str) -> None:
        tasks.append(await rig.client.generate(prompt, timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, QUICK)
        tg.start_soon(one, "a dog [duration:0.2]")

    assert all(t.status is evo.TaskStatus.COMPLETED for t in tasks)
    assert sim.stats.callbacks_lost == 2
    assert sim.stats.callbacks_attempted == 0
    assert rig.receiver.stats.received == 0
    assert len(_safety_net_warnings(caplog)) == 1


async def test_a_task_announced_by_callback_logs_no_safety_net_warning(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evolink_async")
    rig = await start(poll=SHORT_NET)
    await rig.client.generate(QUICK)
    assert _safety_net_warnings(caplog) == []


# -- delivery failures, retries, duplicates, order ----------------------------------------------------------


async def test_failed_deliveries_are_retried_by_the_simulator_and_the_task_completes(
    start: StartRig, sim: FakeEvolink
) -> None:
    rig = await start()
    sim.inject(Fault(route="callback", kind="drop", times=2))
    task = await rig.client.generate(QUICK, timeout=10)
    await sim.wait_callbacks_idle()

    log = sim.stats.callback_log
    assert [(r.attempt, r.status) for r in log] == [(1, None), (2, None), (3, 202)]
    assert (sim.stats.callbacks_failed, sim.stats.callbacks_delivered) == (2, 1)
    assert sim.stats.reads[task.id] == 1
    assert rig.receiver.stats.received == 1


async def test_receiver_refusing_every_delivery_leaves_the_task_to_the_safety_net(
    start: StartRig, sim: FakeEvolink
) -> None:
    rig = await start(poll=SHORT_NET)
    rig.receiver.max_body_bytes = 16  # every real delivery is now "too large": 413
    task = await rig.client.generate(QUICK, timeout=10)
    await sim.wait_callbacks_idle()

    assert [r.status for r in sim.stats.callback_log] == [413, 413, 413, 413]  # first try + 3 retries
    assert sim.stats.callbacks_lost == 1
    assert task.status is evo.TaskStatus.COMPLETED
    assert rig.receiver.stats.confirmed == 0
    assert sim.stats.reads[task.id] >= 1


async def test_redelivery_after_a_lost_answer_is_acknowledged_without_another_read(sim: FakeEvolink, tls: TLS) -> None:
    # A proxy in front of the receiver that sits on its first answer longer than the simulator waits: the
    # simulator times out and delivers again, so the receiver sees the same callback twice.
    sim.callback_timeout = 0.3
    async with AsyncExitStack() as stack:
        sock = stack.enter_context(_listener())
        url = f"https://127.0.0.1:{sock.getsockname()[1]}{PATH}"
        client = _client(sim, callback_url=url, allow_local_callback_url=True)
        answers: list[str] = []

        async def slow_first(request: web.Request) -> web.StreamResponse:
            response = await client.callbacks.aiohttp_handler(request)
            assert isinstance(response, web.Response)
            answers.append(json.loads(response.text or "{}")["status"])
            if len(answers) == 1:
                await anyio.sleep(0.6)
            return response

        app = web.Application()
        app.router.add_post(PATH, slow_first)
        await serve_aiohttp(stack, app, sock, tls)
        await stack.enter_async_context(client)

        task = await client.generate(QUICK, timeout=10)
        await sim.wait_callbacks_idle()

    assert answers == ["accepted", "ignored"]
    assert [r.attempt for r in sim.stats.callback_log] == [1, 2]
    assert sim.stats.reads[task.id] == 1


async def test_the_same_callback_posted_twice_costs_one_read_per_min_confirm_interval(
    start: StartRig, sim: FakeEvolink
) -> None:
    rig = await start()
    rig.receiver.min_confirm_interval = 0.3
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        body = sim.task_view(waiter.task_id)
        first = await rig.post(body)
        second = await rig.post(body)
        await until(lambda: rig.receiver.stats.confirmed == 1)

        assert (first, second) == ((202, {"status": "accepted"}), (202, {"status": "duplicate"}))
        assert rig.receiver.stats.duplicates == 1
        assert len(_reads_of(sim, waiter.task_id)) == 1
        sim.complete(waiter.task_id)
    await sim.wait_callbacks_idle()

    assert waiter.result is not None
    assert waiter.result.status is evo.TaskStatus.COMPLETED
    # The duplicate (and the genuine callback) were confirmed together, one interval after the first read.
    reads = _reads_of(sim, waiter.task_id)
    assert len(reads) == 2
    assert reads[1] - reads[0] >= 0.3 - 0.01


async def test_confirmation_reads_of_one_task_are_at_least_min_confirm_interval_apart(
    start: StartRig, sim: FakeEvolink
) -> None:
    rig = await start()
    rig.receiver.min_confirm_interval = 0.3
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        body = sim.task_view(waiter.task_id)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            await rig.post(body)
            await anyio.sleep(0.02)
        await anyio.sleep(0.4)
        reads = _reads_of(sim, waiter.task_id)
        sim.complete(waiter.task_id)

    assert waiter.result is not None
    assert 2 <= len(reads) <= 5  # about one per 0.3 s over 1 s of posting every 20 ms
    assert all(b - a >= 0.3 - 0.01 for a, b in itertools.pairwise(reads))


async def test_a_stale_processing_callback_after_completion_is_ignored(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    task = await rig.client.generate(QUICK)
    await sim.wait_callbacks_idle()
    stale = {"id": task.id, "status": "processing", "progress": 40}

    assert await rig.post(stale) == (202, {"status": "ignored"})
    assert sim.stats.reads[task.id] == 1
    assert rig.client.waiting == 0


async def test_a_processing_callback_arriving_around_completion_does_not_hold_the_waiter(
    start: StartRig, sim: FakeEvolink
) -> None:
    rig = await start()
    rig.receiver.min_confirm_interval = 0.05
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        sim.complete(waiter.task_id)
        # A late "processing" body (reordered delivery) arrives after the task really ended.
        status, _ = await rig.post({"id": waiter.task_id, "status": "processing", "progress": 10})
        assert status == 202
    assert waiter.result is not None
    assert waiter.result.status is evo.TaskStatus.COMPLETED


# -- security: forged, unknown, malformed, oversized and flooding callbacks ---------------------------------


async def test_forged_completed_callback_cannot_hand_its_urls_to_the_waiter(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    rig.receiver.min_confirm_interval = 0.05
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        forged = {"id": waiter.task_id, "status": "completed", "progress": 100, "results": [EVIL]}

        assert await rig.post(forged) == (202, {"status": "accepted"})
        # The confirmation read, then (since it said "processing") one follow-up read, and no more.
        await until(lambda: rig.receiver.stats.confirmed == 2)
        await anyio.sleep(0.1)  # the waiter had every chance to wake up on it

        assert not waiter.done  # both reads said "processing"
        assert len(_reads_of(sim, waiter.task_id)) == 2
        sim.complete(waiter.task_id)

    assert waiter.result is not None
    assert list(waiter.result.results) == sim.task_view(waiter.task_id)["results"]
    assert all(url.startswith(sim.base_url) for url in waiter.result.results)
    assert EVIL not in waiter.result.results


async def test_genuine_callback_right_after_a_forged_one_still_resolves_the_waiter(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    # Within min_confirm_interval of a forged callback's confirmation the genuine one must not be dropped as a
    # "duplicate": that would leave the waiter to the safety net (11.5 s here, past the timeout).
    caplog.set_level(logging.WARNING, logger="evolink_async")
    rig = await start()
    rig.receiver.min_confirm_interval = 0.5
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim, timeout=5)
        await rig.post({"id": waiter.task_id, "status": "completed", "results": [EVIL]})
        await until(lambda: rig.receiver.stats.confirmed == 1)
        sim.complete(waiter.task_id)  # the real callback goes out now
    await sim.wait_callbacks_idle()

    assert waiter.error is None
    assert waiter.result is not None
    assert EVIL not in waiter.result.results
    assert sim.stats.callbacks_delivered == 1
    assert len(_reads_of(sim, waiter.task_id)) == 2  # one per min_confirm_interval
    assert _safety_net_warnings(caplog) == []  # resolved by a confirmation, not by the safety net


@pytest.mark.parametrize("mount", MOUNTS)
async def test_callback_for_an_unknown_id_is_acknowledged_and_costs_no_read(
    start: StartRig, sim: FakeEvolink, mount: Mount
) -> None:
    rig = await start(mount)
    answer = await rig.post({"id": UNKNOWN_ID, "status": "completed", "results": [EVIL]})

    assert answer == (202, {"status": "ignored"})
    assert rig.receiver.stats.ignored == 1
    assert sim.stats.read_requests == 0
    assert sim.stats.batch_requests == 0


MALFORMED: list[bytes] = [
    b"",
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b'{"status": "completed", "results": ["https://evil.example/x.png"]}',
    b'[{"id": "task-unified-1757165031-zzzzzzzz"}]',
    b'"task-unified-1757165031-zzzzzzzz"',
    b'{"id": 12345}',
    b'{"id": ""}',
    b'{"id": "' + b"x" * 201 + b'"}',
    b"{" * 1000,
    b"[" * 100_000,  # nesting deep enough to exhaust the JSON parser's recursion limit
]


@pytest.mark.parametrize("mount", MOUNTS)
async def test_malformed_bodies_get_400_and_a_log_line(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture, mount: Mount
) -> None:
    caplog.set_level(logging.INFO, logger="evolink_async")
    rig = await start(mount)
    for body in MALFORMED:
        caplog.clear()
        status, answer = await rig.post(body)
        assert status == 400, body[:40]
        assert isinstance(answer, dict)
        assert "error" in answer
        assert [r.getMessage() for r in caplog.records if "rejected a callback" in r.getMessage()], body[:40]
        assert not [r for r in caplog.records if r.exc_info], body[:40]

    assert rig.receiver.stats.rejected == len(MALFORMED)
    assert sim.stats.read_requests == 0
    # Still serving: a genuine callback afterwards works as usual.
    task = await rig.client.generate(QUICK)
    await sim.wait_callbacks_idle()
    assert sim.stats.reads[task.id] == 1


async def _chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("mount", MOUNTS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_max_body_bytes_gets_413(
    start: StartRig, sim: FakeEvolink, mount: Mount, chunked: bool
) -> None:
    rig = await start(mount)
    limit = rig.receiver.max_body_bytes
    body = json.dumps({"id": UNKNOWN_ID, "pad": "x" * limit}).encode()
    assert len(body) > limit
    headers = {"Content-Type": "application/json"}
    data: Any = _chunks(body) if chunked else body
    async with rig.session.post(rig.url, data=data, headers=headers) as resp:
        assert resp.status == 413
    assert rig.receiver.stats.rejected == 1
    assert sim.stats.read_requests == 0
    # Just under the limit is judged normally.
    fits = json.dumps({"id": UNKNOWN_ID, "pad": "x" * (limit - 100)}).encode()
    assert len(fits) <= limit
    assert (await rig.post(fits))[0] == 202


async def test_a_flood_of_junk_costs_no_reads_and_no_memory(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    rig.recording = False  # the test's own bookkeeping must not be what grows
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        known = {"id": waiter.task_id, "status": "completed", "results": [EVIL]}

        async def flood(bodies: list[bytes]) -> None:
            for body in bodies:
                status, _ = await rig.post(body)
                assert status == 202

        async def flood_all(bodies: list[bytes], lanes: int = 16) -> None:
            async with anyio.create_task_group() as lanes_tg:
                for lane in range(lanes):
                    lanes_tg.start_soon(flood, bodies[lane::lanes])

        def unknown(start: int, count: int) -> list[bytes]:
            return [
                json.dumps({"id": f"task-unified-1757165031-{n:08d}"}).encode() for n in range(start, start + count)
            ]

        await flood_all(unknown(0, 1000))  # warm up: connections, buffers, caches
        receiver_state = dict(vars(rig.receiver))
        callback_ids = len(rig.client._engine.callback_registry)
        tracemalloc.start(1)
        try:
            before = tracemalloc.take_snapshot()
            await flood_all(unknown(1000, 5000))
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "lineno"))
        await flood_all([json.dumps(known).encode()] * 1000)
        await anyio.sleep(0.1)
        reads = len(_reads_of(sim, waiter.task_id))
        stats = attrs.evolve(rig.receiver.stats)
        assert not waiter.done
        sim.complete(waiter.task_id)

    assert stats.ignored == 6000
    assert stats.received == 6000 + 1000
    assert stats.duplicates + stats.deferred >= 998  # joined a confirmation under way, or set for after it
    # The flood lasted less than a few min_confirm_intervals (1 s): a couple of reads, no more.
    assert 1 <= reads <= 3
    assert sim.stats.batch_requests == 0
    assert sim.stats.read_requests - len(_reads_of(sim, waiter.task_id)) == 0  # no read of any unknown id
    # Nothing kept per junk callback: same attributes, same watches, same known ids, bounded allocations.
    assert vars(rig.receiver).keys() == receiver_state.keys()
    assert rig.client.waiting == 0
    assert len(rig.client._engine.callback_registry) == callback_ids
    # Whatever the process still holds after 5000 junk callbacks (aiohttp's buffers included) is well under
    # what keeping even their ids would take (~100 bytes each).
    assert growth < 64 * 5000, f"{growth} bytes more allocated after 5000 junk callbacks"
    assert waiter.result is not None
    assert EVIL not in waiter.result.results


async def test_the_api_key_appears_in_no_receiver_log_and_no_delivery(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = await start()
    rig.receiver.min_confirm_interval = 0.05
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        await rig.post({"id": UNKNOWN_ID, "status": "completed"})
        await rig.post({"id": waiter.task_id, "status": "completed", "results": [EVIL]})
        for body in MALFORMED[:6]:
            await rig.post(body)
        sim.inject(Fault(route="read", kind="status", status=401, times=1))  # a confirmation read that fails
        await until(lambda: rig.receiver.stats.confirmed + rig.receiver.stats.confirm_failures >= 1)
        await anyio.sleep(0.1)
        await rig.post({"id": waiter.task_id, "status": "completed"})
        await until(lambda: rig.receiver.stats.confirmed + rig.receiver.stats.confirm_failures >= 2)
        sim.complete(waiter.task_id)
    await rig.client.generate(QUICK)
    await sim.wait_callbacks_idle()

    assert caplog.records, "expected the receiver to log something at DEBUG"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
        assert record.exc_text is None or SECRET not in record.exc_text
    assert SECRET not in caplog.text
    assert rig.headers
    for headers in rig.headers:
        assert "authorization" not in headers
        assert all(SECRET not in value for value in headers.values())


async def test_the_handler_answers_before_the_confirmation_read_completes(start: StartRig, sim: FakeEvolink) -> None:
    rig = await start()
    rig.receiver.min_confirm_interval = 0.05
    async with anyio.create_task_group() as tg:
        waiter = await start_generate(tg, rig, sim)
        sim.inject(Fault(route="read", kind="slow", delay=1.0))
        status, answer = await rig.post(sim.task_view(waiter.task_id))
        answered = time.monotonic()
        confirmed_when_answered = rig.receiver.stats.confirmed
        await until(lambda: rig.receiver.stats.confirmed == 1)
        sim.complete(waiter.task_id)

    assert (status, answer) == (202, {"status": "accepted"})
    assert confirmed_when_answered == 0
    read_arrived = _reads_of(sim, waiter.task_id)[0]
    # The slow read could answer no sooner than 1 s after it reached the simulator; the 202 came before that.
    assert answered < read_arrived + 1.0


# -- the ASGI adapter ---------------------------------------------------------------------------------------


async def test_asgi_app_completes_lifespan_startup_and_shutdown(
    sim: FakeEvolink, tls: TLS, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    client = _client(sim, callback_url="https://127.0.0.1:1/cb", allow_local_callback_url=True)
    async with client, AsyncExitStack() as stack:
        sock = stack.enter_context(_listener())
        server = await serve_uvicorn(stack, client.callbacks.asgi_app, sock, tls, lifespan="on")
        assert server.started
    messages = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert "Application startup complete." in messages
    assert "Application shutdown complete." in messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("mount", MOUNTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_non_post_requests_get_405(start: StartRig, sim: FakeEvolink, mount: Mount, method: str) -> None:
    rig = await start(mount)
    async with rig.session.request(method, rig.url) as resp:
        assert resp.status == 405
    assert rig.receiver.stats.received == 0
    assert sim.stats.requests == 0


async def test_a_callback_before_anyone_waits_makes_the_later_wait_read_at_once(
    start: StartRig, sim: FakeEvolink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evolink_async")
    rig = await start()
    task = await rig.client.submit("early [duration:0.2]")
    await until(lambda: sim.stats.callbacks_delivered == 1)
    assert rig.receiver.stats.ignored == 1  # nobody waited yet: acknowledged, remembered, not read
    assert _reads_of(sim, task.id) == []
    # The safety net's first read would come ~10 s after submit: a timeout of 5 s proves it was not needed.
    done = await rig.client.wait(task, timeout=5)
    assert done.status is evo.TaskStatus.COMPLETED
    assert sim.stats.reads[task.id] == 1  # one read (batch or GET), at once
    assert _safety_net_warnings(caplog) == []
