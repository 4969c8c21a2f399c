"""CallbackEndpoint: a callback receiver mounted before its client exists, bound at startup; and the sync
client's ``callbacks.handle`` for sync frameworks. Over HTTP on loopback (aiohttp.web, and uvicorn + Starlette)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anyio
import anyio.from_thread
import pytest
import uvicorn
from aiohttp import web
from conftest import until
from starlette.applications import Starlette
from starlette.routing import Route

import evolink_async as evo
from evolink_async.testing import FakeEvolink

BODY = json.dumps({"id": "task-unified-1757165031-notours00", "status": "completed"}).encode()


async def _post(url: str, method: str = "POST") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, data=BODY) as resp:
        return resp.status, json.loads(await resp.text())


@pytest.fixture
async def aiohttp_endpoint() -> AsyncIterator[tuple[evo.CallbackEndpoint, str]]:
    endpoint = evo.CallbackEndpoint()
    app = web.Application()
    app.router.add_post("/evolink/callback", endpoint.aiohttp_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield endpoint, f"http://127.0.0.1:{runner.addresses[0][1]}/evolink/callback"
    finally:
        await runner.cleanup()


async def test_unbound_deliveries_are_503_until_bound_then_judged_by_the_clients_receiver(
    aiohttp_endpoint: tuple[evo.CallbackEndpoint, str], client: evo.AsyncClient
) -> None:
    endpoint, url = aiohttp_endpoint
    assert await _post(url) == (503, {"status": "starting"})  # EvoLink retries a 503
    endpoint.bind(client.callbacks)
    assert await _post(url) == (202, {"status": "ignored"})  # a task this client did not create
    assert client.callbacks.stats.received == 1
    endpoint.unbind()
    assert (await _post(url))[0] == 503
    assert endpoint.unbound_deliveries == 2


async def test_bind_takes_a_receiver_and_handle_works_without_a_framework(client: evo.AsyncClient) -> None:
    endpoint = evo.CallbackEndpoint()
    with pytest.raises(TypeError, match=r"client\.callbacks"):
        endpoint.bind(client)  # type: ignore[arg-type]
    assert endpoint.handle(BODY) == (503, {"status": "starting"})
    endpoint.bind(client.callbacks)
    assert endpoint.handle(b"not json") == (400, {"error": "body is not JSON"})
    assert endpoint.receiver is client.callbacks


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_as_a_starlette_route_before_the_client_exists_it_is_an_asgi_app_not_a_405(
    client: evo.AsyncClient,
) -> None:
    # A plain `async def (scope, receive, send)` routed here gets every callback answered 405 by Starlette,
    # which takes a function for an endpoint of a Request; the endpoint is an object, so it gets the ASGI call.
    endpoint = evo.CallbackEndpoint()
    app = Starlette(routes=[Route("/evolink/callback", endpoint)])
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await until(lambda: server.started)
        url = f"http://127.0.0.1:{port}/evolink/callback"
        try:
            assert await _post(url) == (503, {"status": "starting"})
            endpoint.bind(client.callbacks)
            assert await _post(url) == (202, {"status": "ignored"})
            assert (await _post(url, "GET"))[0] == 405  # the receiver's own answer to a non-POST
        finally:
            server.should_exit = True


@pytest.fixture
def sim() -> Iterator[FakeEvolink]:
    with anyio.from_thread.start_blocking_portal() as portal, portal.wrap_async_context_manager(FakeEvolink()) as fake:
        yield fake


def test_the_sync_clients_callbacks_judge_a_body_from_any_thread(sim: FakeEvolink) -> None:
    with evo.Client(sim.api_key, base_url=sim.base_url) as client:
        task = client.submit("a cat [duration:0.1]")
        assert client.callbacks.handle(BODY) == (202, {"status": "ignored"})
        assert client.callbacks.handle(b"[]") == (400, {"error": "body has no task id"})
        assert client.wait(task).status is evo.TaskStatus.COMPLETED
