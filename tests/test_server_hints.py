"""What the server says beyond the answer: fallback_suggestion on errors (and in the CLI's lines), the request id
on tasks, idempotent replays on the task and in a batch's stats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from test_cli import run_cli

import evolink_async as evo
from evolink_async.testing import FakeEvolink, Fault

MakeClient = Callable[..., evo.AsyncClient]


async def test_an_api_error_keeps_the_servers_fallback_suggestion(make_client: MakeClient) -> None:
    async with FakeEvolink(initial_credits=0) as fake, make_client(fake) as client:
        with pytest.raises(evo.InsufficientCreditsError) as info:
            await client.submit("a cat")
    assert info.value.fallback_suggestion == "Top up your credits or raise the key's limit."


@pytest.fixture
async def hinting_server() -> AsyncIterator[tuple[str, list[Any]]]:
    """An API that refuses every create with the suggestion the test puts in ``suggestions``."""
    suggestions: list[Any] = []

    async def create(request: web.Request) -> web.Response:
        error = {"code": "invalid_request", "message": "no", "fallback_suggestion": suggestions.pop(0)}
        return web.json_response({"error": error}, status=400)

    app = web.Application()
    app.router.add_post("/v1/images/generations", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", suggestions
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("Use a shorter prompt.", "Use a shorter prompt."),
        ("ring\x07 the \x1b[2Jbell", "ring  the  [2Jbell"),  # no terminal escapes
        ("x" * 1000, "x" * 300),
        (42, None),
        ("", None),
    ],
)
async def test_a_suggestion_is_kept_printable_and_bounded(
    hinting_server: tuple[str, list[Any]], sent: Any, kept: str | None
) -> None:
    url, suggestions = hinting_server
    suggestions.append(sent)
    async with evo.AsyncClient("sk-test", base_url=url) as client:
        with pytest.raises(evo.BadRequestError) as info:
            await client.submit("a cat")
    assert info.value.fallback_suggestion == kept


async def test_the_cli_error_line_shows_the_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeEvolink(initial_credits=0) as fake:
        code, _, err = await run_cli(["generate", "a cat"], fake=fake, capsys=capsys)
    assert code == 1
    assert err.count("\n") == 1
    assert "server suggests: Top up your credits" in err


async def test_a_task_carries_the_request_id_of_the_answer_it_came_from(client: evo.AsyncClient) -> None:
    created = await client.submit("a cat [duration:0.1]")
    read = await client.get_task(created)
    final = await client.wait(created)
    ids = [created.request_id, read.request_id, final.request_id]
    assert all(isinstance(i, str) and i.startswith("req-") for i in ids)
    assert len(set(ids)) == 3
    assert created == attrs.evolve(created, request_id="other")  # not compared: the same state is equal


async def test_a_replayed_create_says_so_on_its_task(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    first = await client.submit("a cat", idempotency_key="key-of-this-test-0001")
    again = await client.submit("a cat", idempotency_key="key-of-this-test-0001")
    assert again.id == first.id
    assert (first.replayed, again.replayed) == (False, True)
    assert fake.stats.creates == 1


async def test_batch_stats_count_the_creates_the_server_replayed(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    # The answer to the first create is lost after the task was made: the retry with its key is a replay.
    fake.inject(Fault(kind="drop_after_create", route="create"))
    async with client.generate_many(["a [duration:0.1]", "b [duration:0.1]"], max_in_flight=1) as run:
        outcomes = [o async for o in run]
    assert all(o.ok for o in outcomes)
    assert run.stats.replayed == 1
    assert run.stats.submitted == 2
    assert fake.stats.creates == 2
