"""The API defects a new user found (issue 7, part 5), pinned through the public API against the simulator.

- the prompt as a keyword (``generate(prompt=...)``, openai style), beside the positional form and an ImageRequest;
- typed keyword fields (``tests/typing/keywords.py`` under ``mypy --strict --warn-unused-ignores``);
- a misspelled batch option is named as such, with a suggestion;
- a batch's ``max_in_flight`` above the client's ``Limits.max_in_flight`` is an error, never silently capped;
- ``base_url`` ending in ``/v1`` (openai habit) works;
- an answer for another task than the one asked for is a MalformedResponseError, never another waiter's result
  (a caching proxy gone wrong, played by a small reverse proxy on loopback in front of the simulator);
- ``Task.created_at`` is ``None``, not an exception, for absurd ``created`` values.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from conftest import FAST_POLL, FAST_RETRY, UNPACED, until

import evolink_async as evo
from evolink_async.testing import FakeEvolink

MakeClient = Callable[..., evo.AsyncClient]

ROOT = Path(__file__).resolve().parents[1]
TYPED_USER_CODE = Path(__file__).resolve().parent / "typing" / "keywords.py"

# eta 0: the poller reads at once, then every min_interval; the task ends after 50 ms.
QUICK = "[duration:0.05] [eta:0] a cat"
NEVER = "[never] [eta:0] a cat that never finishes"


# -- 1. the prompt as a keyword ---------------------------------------------------------------------------


async def test_generate_accepts_the_prompt_as_a_keyword_like_openai(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.generate(prompt=QUICK, size="16:9")
    assert task.status is evo.TaskStatus.COMPLETED
    sent = fake.tasks[task.id].request
    assert sent["prompt"] == QUICK
    assert sent["size"] == "16:9"


async def test_submit_accepts_the_prompt_as_a_keyword_like_openai(fake: FakeEvolink, client: evo.AsyncClient) -> None:
    task = await client.submit(prompt=QUICK, quality="1K")
    assert task.id in fake.tasks
    sent = fake.tasks[task.id].request
    assert sent["prompt"] == QUICK
    assert sent["quality"] == "1K"


@pytest.mark.parametrize("method", ["generate", "submit"])
@pytest.mark.parametrize("form", ["positional-prompt", "image-request"])
async def test_positional_prompt_and_image_request_still_work_beside_the_keyword(
    fake: FakeEvolink, client: evo.AsyncClient, method: str, form: str
) -> None:
    request: str | evo.ImageRequest = QUICK if form == "positional-prompt" else evo.ImageRequest(QUICK)
    task = await getattr(client, method)(request, size="1:1")
    sent = fake.tasks[task.id].request
    assert sent["prompt"] == QUICK
    assert sent["size"] == "1:1"


@pytest.mark.parametrize("method", ["generate", "submit"])
@pytest.mark.parametrize("form", ["positional-prompt", "image-request"])
async def test_both_a_request_and_prompt_keyword_raise_validation_error_naming_prompt_and_send_nothing(
    fake: FakeEvolink, client: evo.AsyncClient, method: str, form: str
) -> None:
    request: str | evo.ImageRequest = QUICK if form == "positional-prompt" else evo.ImageRequest(QUICK)
    with pytest.raises(evo.ValidationError, match="prompt"):
        await getattr(client, method)(request, prompt="[duration:0.05] a dog")
    assert fake.stats.create_requests == 0


@pytest.mark.parametrize("method", ["generate", "submit"])
async def test_neither_a_request_nor_a_prompt_raises_validation_error_naming_prompt_and_sends_nothing(
    fake: FakeEvolink, client: evo.AsyncClient, method: str
) -> None:
    with pytest.raises(evo.ValidationError, match="prompt"):
        await getattr(client, method)(size="16:9")
    assert fake.stats.create_requests == 0


# -- 2. typed keyword fields ---------------------------------------------------------------------------------


def test_mypy_accepts_known_fields_and_rejects_a_misspelled_field_and_an_int_size(tmp_path: Path) -> None:
    # Every `# type: ignore[...]` in the file marks a line that must be rejected: with --warn-unused-ignores
    # an ignore that is not needed fails the run, so exit 0 proves each of those lines is an error.
    assert TYPED_USER_CODE.is_file()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(TYPED_USER_CODE),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- 3. a misspelled batch option -------------------------------------------------------------------------


async def test_a_misspelled_batch_option_suggests_max_in_flight_and_is_not_called_a_body_field(
    fake: FakeEvolink, client: evo.AsyncClient
) -> None:
    with pytest.raises(evo.ValidationError) as info:
        await client.generate_all([QUICK], max_in_flitght=3)
    message = str(info.value)
    assert "did you mean" in message.lower()
    assert "max_in_flight" in message
    assert "extra=" not in message
    assert "body field" not in message
    assert fake.stats.create_requests == 0


# -- 4. a batch's max_in_flight above the client's -----------------------------------------------------------

# The rule pinned here: a batch's own cap applies within the client's, so it must be <= the client's
# Limits.max_in_flight; a larger one is a ValidationError before anything is sent (never silently capped).
CLIENT_CAP = 7


async def test_batch_max_in_flight_above_the_clients_limit_raises_validation_error_before_sending(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    limits = evo.Limits(max_in_flight=CLIENT_CAP, requests_per_second=None)
    async with make_client(fake, limits=limits) as client:

        async def run_batch() -> None:
            # Raised when the run is made or when it is entered: both come before anything is sent.
            async with client.generate_many([QUICK] * 3, max_in_flight=CLIENT_CAP + 1) as run:
                async for _ in run:
                    pass

        with pytest.raises(evo.ValidationError) as info:
            await run_batch()
    err = info.value
    assert err.field == "max_in_flight"
    assert "Limits(max_in_flight" in str(err)
    assert str(CLIENT_CAP) in err.message
    assert fake.stats.create_requests == 0


async def test_batch_max_in_flight_equal_to_the_clients_limit_is_accepted(
    fake: FakeEvolink, make_client: MakeClient
) -> None:
    limits = evo.Limits(max_in_flight=CLIENT_CAP, requests_per_second=None)
    async with make_client(fake, limits=limits) as client:
        outcomes = await client.generate_all([QUICK] * 3, max_in_flight=CLIENT_CAP)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert fake.stats.creates == 3


# -- 5. base_url ending in /v1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_base_url_with_a_trailing_v1_works_and_the_v1_is_stripped(fake: FakeEvolink, suffix: str) -> None:
    client = evo.AsyncClient(
        fake.api_key, base_url=fake.base_url + suffix, retry=FAST_RETRY, poll=FAST_POLL, limits=UNPACED
    )
    async with client:
        task = await client.generate(QUICK)
    assert task.status is evo.TaskStatus.COMPLETED
    assert fake.stats.creates == 1
    assert client.base_url == fake.base_url
    assert not client.base_url.rstrip("/").endswith("/v1")


# -- 6. an answer for another task -------------------------------------------------------------------------


class WrongTaskProxy:
    """A reverse proxy on loopback in front of the simulator that can answer for the wrong task.

    ``read_as[a] = b``: ``GET /v1/tasks/a`` is answered with task b's body. ``hide_from_batch``: ids left out of
    ``POST /v1/tasks/batch`` answers (legit: the SDK then reads them directly). ``add_to_batch``: items put in
    every batch answer that did not ask for their id. ``created``: if set, replaces ``created`` in single-task answers.
    Everything else is passed through unchanged.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.read_as: dict[str, str] = {}
        self.hide_from_batch: set[str] = set()
        self.add_to_batch: list[dict[str, Any]] = []
        self.created: Any = None
        self.batches_with_added_items = 0
        self.swapped_reads = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        path = request.path
        single_read = request.method == "GET" and path.startswith("/v1/tasks/") and path.count("/") == 3
        if single_read:
            asked = path.rsplit("/", 1)[1]
            if asked in self.read_as:
                self.swapped_reads += 1
                path = f"/v1/tasks/{self.read_as[asked]}"
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + path, params=request.query, data=body or None, headers=headers
        ) as upstream:
            status, payload = upstream.status, await upstream.read()
            content_type = upstream.headers.get("Content-Type", "application/json")
            extra = {k: v for k, v in upstream.headers.items() if k.lower() in _RETURNED_HEADERS}
        if status == 200 and single_read and self.created is not None:
            data = json.loads(payload)
            data["created"] = self.created
            payload = json.dumps(data).encode()
        if status == 200 and request.method == "POST" and path == "/v1/tasks/batch":
            data = json.loads(payload)
            data["data"] = [item for item in data["data"] if item.get("id") not in self.hide_from_batch]
            asked = set(json.loads(body).get("task_ids", []))
            added = [item for item in self.add_to_batch if item.get("id") not in asked]
            if added:
                data["data"] += added
                self.batches_with_added_items += 1
            payload = json.dumps(data).encode()
        return web.Response(status=status, body=payload, headers={**extra, "Content-Type": content_type})


_FORWARDED_HEADERS = frozenset({"authorization", "content-type", "idempotency-key", "accept"})
_RETURNED_HEADERS = frozenset({"retry-after", "idempotency-replayed", "x-request-id"})


@pytest.fixture
async def proxy(fake: FakeEvolink) -> AsyncIterator[WrongTaskProxy]:
    p = WrongTaskProxy(fake.base_url)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def proxied_client(fake: FakeEvolink, proxy: WrongTaskProxy, poll: evo.PollPolicy = FAST_POLL) -> evo.AsyncClient:
    return evo.AsyncClient(fake.api_key, base_url=proxy.base_url, retry=FAST_RETRY, poll=poll, limits=UNPACED)


PER_TASK_POLL = evo.PollPolicy(batch=False, min_interval=0.01, max_interval=0.1, default_estimate=0.05)
# Batch reads; a task with a long estimate is first read ~30 s out, far past the 2 s a batch looks ahead.
BATCH_POLL = evo.PollPolicy(
    batch=True, min_interval=0.01, max_interval=30.0, default_estimate=0.05, batch_interval=0.02, jitter=0.0
)


async def test_get_task_answered_for_another_task_raises_malformed_response_with_the_asked_id(
    fake: FakeEvolink, proxy: WrongTaskProxy
) -> None:
    async with proxied_client(fake, proxy) as client:
        a = await client.submit(NEVER)
        b = await client.submit(QUICK)
        proxy.read_as[a.id] = b.id
        with pytest.raises(evo.MalformedResponseError) as info:
            await client.get_task(a.id)
    assert proxy.swapped_reads >= 1
    assert info.value.task_id == a.id


async def test_wait_with_per_task_reads_answered_for_another_task_raises_malformed_response_never_its_result(
    fake: FakeEvolink, proxy: WrongTaskProxy
) -> None:
    results: dict[str, evo.Task | Exception] = {}

    async def wait(name: str, task_id: str) -> None:
        try:
            results[name] = await client.wait(task_id)
        except evo.EvolinkError as exc:
            results[name] = exc

    async with proxied_client(fake, proxy, PER_TASK_POLL) as client:
        a = await client.submit(NEVER)
        b = await client.submit(QUICK)
        proxy.read_as[a.id] = b.id
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, "a", a.id)
                tg.start_soon(wait, "b", b.id)
    assert proxy.swapped_reads >= 1
    got_a = results["a"]
    assert isinstance(got_a, evo.MalformedResponseError), f"wait(A) gave {got_a!r}"
    assert got_a.task_id == a.id
    got_b = results["b"]  # B's own waiter is not disturbed
    assert isinstance(got_b, evo.Task), got_b
    assert got_b.id == b.id
    assert got_b.status is evo.TaskStatus.COMPLETED


async def test_batch_mode_direct_read_of_a_task_the_batch_left_out_answered_for_another_task_is_malformed(
    fake: FakeEvolink, proxy: WrongTaskProxy
) -> None:
    async with proxied_client(fake, proxy, BATCH_POLL) as client:
        a = await client.submit(NEVER)
        b = await client.submit(QUICK)
        proxy.hide_from_batch.add(a.id)  # the batch answer leaves A out: the SDK reads A directly...
        proxy.read_as[a.id] = b.id  # ...and that read answers with B's body
        with anyio.fail_after(10):
            try:
                got = await client.wait(a.id)
            except evo.MalformedResponseError as exc:
                err = exc
            else:
                pytest.fail(f"wait(A) returned {got!r}")
    assert fake.stats.batch_requests >= 1
    assert proxy.swapped_reads >= 1
    assert err.task_id == a.id


async def test_batch_mode_an_item_not_asked_for_is_ignored_not_delivered_to_any_waiter(
    fake: FakeEvolink, proxy: WrongTaskProxy
) -> None:
    results: dict[str, evo.Task | Exception] = {}

    async with proxied_client(fake, proxy, BATCH_POLL) as client:
        a = await client.submit(QUICK)
        c = await client.submit("[never] [eta:60] a cat nobody asks about yet")
        # Every batch answer leaves A out and carries C, not asked for, as completed (C never completes).
        forged = {**fake.task_view(c.id), "status": "completed", "progress": 100, "results": [fake.base_url + "/x"]}
        proxy.hide_from_batch.add(a.id)
        proxy.add_to_batch.append(forged)

        async def wait(name: str, task: evo.Task | str) -> None:
            try:
                results[name] = await client.wait(task)
            except evo.EvolinkError as exc:
                results[name] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # C's waiter: its first read is ~30 s away, so C is in none of the batches asked meanwhile.
                tg.start_soon(wait, "c", c)
                tg.start_soon(wait, "a", a.id)
                await until(lambda: "a" in results)
                await anyio.sleep(0.05)  # time for a wrongly delivered item to wake C's waiter
                c_when_a_was_done = results.get("c")
                tg.cancel_scope.cancel()
    assert c_when_a_was_done is None, f"C's waiter got {c_when_a_was_done!r} from an item nobody asked for"
    assert fake.stats.batch_requests >= 1
    assert proxy.batches_with_added_items >= 1
    got_a = results["a"]
    assert isinstance(got_a, evo.Task), got_a
    assert got_a.id == a.id
    assert got_a.status is evo.TaskStatus.COMPLETED


# -- 7. absurd created -------------------------------------------------------------------------------------


@pytest.mark.parametrize("created", [10**20, -(10**20), int(1e300), 1e300], ids=["1e20", "-1e20", "int-1e300", "1e300"])
def test_task_created_at_is_none_for_an_absurd_created(created: Any) -> None:
    task = evo.Task(id="t", status=evo.TaskStatus.COMPLETED, raw_status="completed", created=created)
    assert task.created_at is None


async def test_task_read_through_the_client_with_an_absurd_created_has_created_at_none(
    fake: FakeEvolink, proxy: WrongTaskProxy
) -> None:
    proxy.created = 10**20
    async with proxied_client(fake, proxy) as client:
        submitted = await client.submit(QUICK)
        task = await client.get_task(submitted.id)
    assert task.id == submitted.id
    assert task.created_at is None


# -- misspelled options of single calls ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "typo", "meant"),
    [
        ("generate", "timout", "timeout"),
        ("generate", "idempotency_kay", "idempotency_key"),
        ("submit", "idempotency_kye", "idempotency_key"),
    ],
)
async def test_a_misspelled_call_option_is_named_as_an_option_not_a_body_field(
    fake: FakeEvolink, client: evo.AsyncClient, method: str, typo: str, meant: str
) -> None:
    with pytest.raises(evo.ValidationError) as info:
        await getattr(client, method)(QUICK, **{typo: 5})
    message = str(info.value)
    assert meant in message
    assert "not an option" in message
    assert "extra=" not in message
    assert fake.stats.create_requests == 0


@pytest.mark.parametrize("bad", ["3", 0, 2.5, True])
async def test_a_batch_max_in_flight_that_is_not_a_positive_int_is_a_validation_error(
    fake: FakeEvolink, client: evo.AsyncClient, bad: Any
) -> None:
    with pytest.raises(evo.ValidationError, match="max_in_flight"):
        client.generate_many([QUICK], max_in_flight=bad)
    assert fake.stats.create_requests == 0


def test_the_typed_field_names_are_exported() -> None:
    assert "size" in evo.ImageFields.__annotations__
    assert "16:9" in typing.get_args(evo.ImageSize)
    assert typing.get_args(evo.ImageQuality) == ("0.5K", "1K", "2K", "4K")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://v1", "https://v1"),
        ("https://api.example.com/v1/", "https://api.example.com"),
        ("https://api.example.com/proxy/v1", "https://api.example.com/proxy"),
    ],
)
def test_only_a_trailing_v1_path_is_dropped_never_a_host_named_v1(given: str, kept: str) -> None:
    assert evo.AsyncClient("sk-test-key-123456", base_url=given).base_url == kept
