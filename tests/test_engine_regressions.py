"""Regressions a review of the task-engine reshape (09c4259) found, pinned through the public API.

Each test states the behaviour the code before the reshape (f6455d5) had; it failed on 09c4259, passes since.
Real HTTP over loopback only: the simulator, a closed port, and (for the key test) a tiny server that answers
with a response aiohttp cannot parse — what a broken proxy or load balancer can send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import anyio
import pytest
from conftest import closed_port, until

import evolink_async as evo
from evolink_async.testing import FakeEvolink

MakeClient = Callable[..., evo.AsyncClient]

SECRET = "sk-evo-REVIEW-SECRET-4f2a8c6e1b9d3075"


def _exception_chain(err: BaseException) -> list[BaseException]:
    """The error and everything reachable from it through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    stack: list[BaseException | None] = [err]
    while stack:
        exc = stack.pop()
        if exc is None or any(exc is s for s in seen):
            continue
        seen.append(exc)
        stack += [exc.__cause__, exc.__context__]
    return seen


@pytest.fixture
async def garbled_http_url() -> AsyncIterator[str]:
    """A loopback server that answers every request with an HTTP response aiohttp refuses to parse."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


# -- 1. the API key reachable from an error's __context__ ------------------------------------------------------


@pytest.mark.parametrize("call", ["credits", "submit"])
async def test_no_exception_reachable_from_a_connection_error_holds_the_api_key(
    garbled_http_url: str, call: str
) -> None:
    # _transport.py raises the mapped error `from None` *inside* the except block: __cause__ is cleared but
    # __context__ is still aiohttp's ClientResponseError, whose request_info.headers hold "Authorization: Bearer
    # <key>". The old _http.py built the error in the except block and raised it outside, so no chain held it.
    async with evo.AsyncClient(
        SECRET, base_url=garbled_http_url, retry=evo.RetryPolicy(max_attempts=2, initial_backoff=0.01)
    ) as client:
        make_call = client.credits if call == "credits" else lambda: client.submit("a cat")
        with pytest.raises(evo.EvolinkError) as info:
            await make_call()
    for exc in _exception_chain(info.value):
        assert SECRET not in repr(vars(exc)), f"{type(exc).__name__} in the chain of {info.value!r} holds the key"


# -- 2. connection errors lost their aiohttp cause ------------------------------------------------------------


async def test_a_connection_error_keeps_the_aiohttp_error_as_its_cause() -> None:
    # Transport._connection_error sets err.__cause__ = exc on purpose; the `raise ... from None` around it then
    # clears it again, so tracebacks no longer show the OSError behind "cannot connect" (the old code kept it).
    async with evo.AsyncClient(
        SECRET, base_url=f"http://127.0.0.1:{closed_port()}", retry=evo.RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(evo.APIConnectionError) as info:
            await client.credits()
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


# -- 3. a stray callback turns an ordinary polled task into a callback task -----------------------------------


async def test_a_callback_for_a_polled_task_does_not_put_its_later_waits_on_the_slow_safety_net(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    # The client has no callback_url: its tasks are polled. A callback naming a task someone waits on (forged,
    # or sent to a URL the request carried itself) is confirmed by one read, as before. But
    # CallbackRegistry.announce() also registers the id with expect(), so every later wait of that task is
    # treated as a callback task and read only on the safety-net schedule (first at 1.5 x estimate + 10 s).
    # The old receiver kept that state on the poller's Watch, which ended with the wait.
    async with make_client(fake) as client:
        task = await client.submit("a cat [duration:1.2] [eta:1]")

        async def first_wait() -> None:
            with pytest.raises(evo.WaitTimeoutError):
                await client.wait(task, timeout=0.4)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_wait)
            await until(lambda: client.waiting == 1)
            status, answer = client.callbacks.handle(json.dumps({"id": task.id, "status": "processing"}).encode())
            assert (status, answer) == (202, {"status": "accepted"})

        # The task ends ~1.2 s after submit; polled as before, the second wait sees it well within 4 s.
        with anyio.fail_after(4):
            final = await client.wait(task)
    assert final.status is evo.TaskStatus.COMPLETED


# -- 4. a task once announced by callback is re-read on every later wait ---------------------------------------


async def test_waiting_again_on_a_final_task_announced_by_callback_costs_no_read() -> None:
    # Engine.wait drops a known task (and reads at once) whenever callbacks.announced(task_id). The registry keeps
    # `announced` for good, so once a callback confirmed a task, wait(final_task) no longer returns the final task
    # it was given but makes a fresh read (and fails if that read fails). The old code set the flag on the Watch
    # for a callback that came while someone waited, so a later wait(final_task) returned at once.
    async with FakeEvolink(allow_local_callbacks=True, callback_retry_delays=(60.0,)) as fake:
        receiver_url = f"https://127.0.0.1:{closed_port()}/evolink/callback"  # nobody there: deliveries fail
        async with evo.AsyncClient(
            fake.api_key,
            base_url=fake.base_url,
            callback_url=receiver_url,
            allow_local_callback_url=True,
            limits=evo.Limits(requests_per_second=None),
        ) as client:
            task = await client.submit("a cat [duration:0.2]")
            results: list[evo.Task] = []

            async def first_wait() -> None:
                results.append(await client.wait(task))

            async with anyio.create_task_group() as tg:
                tg.start_soon(first_wait)
                await until(lambda: client.waiting == 1)
                await until(lambda: fake.task_view(task.id)["status"] == "completed")
                # What the receiver gets from EvoLink (posted to its framework-free core here).
                status, _ = client.callbacks.handle(json.dumps({"id": task.id, "status": "completed"}).encode())
                assert status == 202
            final = results[0]
            assert final.status is evo.TaskStatus.COMPLETED
            reads = fake.stats.read_requests + fake.stats.batch_requests

            again = await client.wait(final)

            assert again is final
            assert fake.stats.read_requests + fake.stats.batch_requests == reads
