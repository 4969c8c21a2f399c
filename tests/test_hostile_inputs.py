"""What a broken proxy, a compromised host or a careless caller can send, against small servers written here
(aiohttp.web on loopback) and the simulator: answers of any size, files that change while they are sent, ids that
are dot segments, escape sequences for the terminal, an echoed key, compressed results, names that only look local.

The table in docs/reliability.md ("Hostile inputs") lists these, one row each.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import threading
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import BodyPartReader, web
from conftest import FAST_POLL, FAST_RETRY, UNPACED

import evolink_async as evo
from evolink_async import MAX_ANSWER_BYTES, MAX_UPLOAD_BYTES, _cli
from evolink_async.testing import FakeEvolink

SECRET = "sk-evo-HOSTILE-5e7b1c9d2a4f6083"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def task_body(task_id: str, status: str = "completed", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "object": "image.generation.task", "status": status, "progress": 100, **fields}


@attrs.define
class Seen:
    """The requests a test server saw: ``(method, path)``, in order."""

    requests: list[tuple[str, str]] = attrs.field(factory=list)

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]


@asynccontextmanager
async def serve(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[tuple[str, Seen]]:
    """An aiohttp.web app on loopback with these ``(method, path pattern)`` routes; every request is recorded,
    answered or not (a request to an unknown path gets 404 and is recorded too)."""
    seen = Seen()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.requests.append((request.method, request.raw_path))
        return await handler(request)

    app = web.Application(middlewares=[record])
    for (method, pattern), handler in routes.items():
        app.router.add_route(method, pattern, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


def client_for(base_url: str, **kwargs: Any) -> evo.AsyncClient:
    options: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "limits": UNPACED}
    options.update(kwargs)
    return evo.AsyncClient(SECRET, base_url=base_url, **options)


# -- 1. API answers of any size ----------------------------------------------------------------------------


def _gzip_bomb(decoded: int) -> bytes:
    """``decoded`` bytes of JSON-ish zeros, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0" * (1024 * 1024)
    return b"".join([packer.compress(block) for _ in range(decoded // len(block))] + [packer.flush()])


@pytest.mark.parametrize("kind", ["endless", "large", "gzip_bomb"])
async def test_an_api_answer_over_the_cap_fails_naming_the_request_and_the_pool_stays_usable(kind: str) -> None:
    sent = {"bytes": 0}
    bomb = _gzip_bomb(4 * MAX_ANSWER_BYTES) if kind == "gzip_bomb" else b""

    async def hostile(request: web.Request) -> web.StreamResponse:
        if kind == "large":  # a whole body, with its length: one byte over
            return web.Response(body=b" " * (MAX_ANSWER_BYTES + 1), content_type="application/json")
        if kind == "gzip_bomb":
            sent["bytes"] += len(bomb)
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            return web.Response(body=bomb, headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)  # chunked, never ending: only the client's cap stops it
        chunk = b"[" * 65536
        try:
            while sent["bytes"] < 8 * MAX_ANSWER_BYTES:  # a guard for the test itself, far past the cap
                await resp.write(chunk)
                sent["bytes"] += len(chunk)
        except ConnectionError:
            pass  # the client hung up: what this test wants
        return resp

    async def fine(request: web.Request) -> web.StreamResponse:
        return web.json_response(task_body("task-fine"))

    routes = {("GET", "/v1/tasks/task-hostile"): hostile, ("GET", "/v1/tasks/task-fine"): fine}
    async with serve(routes) as (url, _):
        limits = attrs.evolve(UNPACED, max_connections=1)  # the next request needs the one connection back
        async with client_for(url, limits=limits, retry=attrs.evolve(FAST_RETRY, max_attempts=1)) as client:
            with anyio.fail_after(20):
                with pytest.raises(evo.MalformedResponseError) as info:
                    await client.get_task("task-hostile")
                task = await client.get_task("task-fine")
    message = str(info.value)
    assert "GET /v1/tasks/task-hostile" in message
    assert str(MAX_ANSWER_BYTES) in message
    assert info.value.task_id == "task-hostile"
    assert SECRET not in message
    assert task.id == "task-fine"
    if kind == "endless":
        assert sent["bytes"] < 4 * MAX_ANSWER_BYTES  # the client stopped reading; the server stopped sending


# -- 2. a stream that cannot seek -----------------------------------------------------------------------------


async def test_upload_of_an_endless_pipe_stops_at_the_upload_cap(fake: FakeEvolink, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    written = {"bytes": 0}

    def feed() -> None:
        # A PNG header, then bytes without end (bounded here only so that old code fails instead of hanging).
        with open(write_end, "wb") as pipe:
            try:
                pipe.write(PNG[:16])
                while written["bytes"] < MAX_UPLOAD_BYTES + 16 * 1024 * 1024:
                    pipe.write(b"\0" * 65536)
                    written["bytes"] += 65536
            except BrokenPipeError:
                pass  # the reader stopped: what this test wants

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with open(read_end, "rb") as stream:
        assert not stream.seekable()
        async with client_for(fake.base_url) as client:
            with pytest.raises(evo.ValidationError) as info:
                await client.upload(stream)
    feeder.join(5)
    assert info.value.field == "file"
    assert str(MAX_UPLOAD_BYTES) in str(info.value)
    assert fake.stats.upload_requests == 0
    assert written["bytes"] < MAX_UPLOAD_BYTES + 16 * 1024 * 1024


# -- 3. a file that changes while it is uploaded ------------------------------------------------------------


def _envelope(data: dict[str, Any]) -> web.Response:
    return web.json_response({"success": True, "code": 200, "msg": "ok", "data": data})


async def _file_part(request: web.Request) -> bytes:
    """The bytes of the upload's ``file`` field, as the server received them."""
    reader = await request.multipart()  # streamed: a body cut short leaves no temporary file behind
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader)
        data = await part.read()
        if part.name == "file":
            return bytes(data)
    raise AssertionError("no file field")


def _uploaded(name: str) -> dict[str, Any]:
    return {"file_id": f"file-{name}", "file_url": f"https://files.example/{name}", "file_name": name}


async def test_a_file_that_grows_between_attempts_is_sent_as_it_was_hashed(tmp_path: Path) -> None:
    """The first attempt is answered 503 after the file grew; the retry must send the bytes that were hashed,
    and declare their length (not the file system's new size)."""
    image = tmp_path / "grows.png"
    image.write_bytes(PNG)
    bodies: list[bytes] = []
    lengths: list[int | None] = []

    async def upload(request: web.Request) -> web.StreamResponse:
        bodies.append(await _file_part(request))
        lengths.append(request.content_length)
        if len(bodies) == 1:
            with image.open("ab") as fh:  # a writer still appending to the file
                fh.write(b"more bytes, never hashed" * 100)
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return _envelope(_uploaded("grows.png"))

    async with serve({("POST", "/api/v1/files/upload/stream"): upload}) as (url, _), client_for(url) as client:
        uploaded = await client.upload(image)
        again = await client.upload(PNG, file_name="again.png")  # the same client, the same pool: still fine
    assert uploaded.id == "file-grows.png"
    assert again.id == "file-grows.png"
    assert bodies[0] == PNG
    assert bodies[1] == PNG
    assert bodies[2] == PNG
    assert lengths[0] == lengths[1]  # the retry declared what it sent


async def test_a_file_that_grows_during_its_upload_sends_no_surplus_into_the_next_request(tmp_path: Path) -> None:
    """The file grows after the request's length was declared, before its body goes (as a writer still appending
    would): the body must hold the declared bytes only, or the surplus is read as the start of the next request
    on that keep-alive connection. A trace hook of the client's sessions (``trace_configs``, as otel uses) grows the
    file once the connection is made."""
    image = tmp_path / "grows.png"
    image.write_bytes(PNG)
    received: list[bytes] = []

    async def upload(request: web.Request) -> web.StreamResponse:
        received.append(await _file_part(request))
        return _envelope(_uploaded(f"n{len(received)}.png"))

    async def grow(*_: Any) -> None:
        with image.open("ab") as fh:
            fh.write(b"appended after the length was declared" * 1000)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(grow)
    once = attrs.evolve(FAST_RETRY, max_attempts=1)
    async with serve({("POST", "/api/v1/files/upload/stream"): upload}) as (url, _):
        limits = attrs.evolve(UNPACED, max_connections=1)  # the second upload reuses the first one's connection
        options = {"retry": once, "limits": limits, "timeouts": evo.Timeouts(request=5), "trace_configs": [trace]}
        async with client_for(url, **options) as client:
            first = await client.upload(image)
            second = await client.upload(PNG[:16] + b"second", file_name="second.png")
    assert first.id == "file-n1.png"
    assert second.id == "file-n2.png"
    assert received == [PNG, PNG[:16] + b"second"]


@pytest.mark.parametrize("change", ["rewritten", "shrunk"])
async def test_a_file_that_changes_after_it_was_hashed_is_refused_not_stored(change: str, tmp_path: Path) -> None:
    image = tmp_path / "changes.png"
    image.write_bytes(PNG)
    stored: list[bytes] = []

    async def upload(request: web.Request) -> web.StreamResponse:
        received = await _file_part(request)
        if not stored:  # the first attempt: the file changes on disk, the server answers 503
            new = PNG[:100] + b"X" * (len(PNG) - 100) if change == "rewritten" else PNG[:100]
            image.write_bytes(new)
            stored.append(b"")
            return web.json_response({"error": {"message": "busy"}}, status=503)
        stored.append(received)
        return _envelope(_uploaded("changes.png"))

    async with serve({("POST", "/api/v1/files/upload/stream"): upload}) as (url, _), client_for(url) as client:
        with pytest.raises(evo.ValidationError) as info:
            await client.upload(image)
    assert info.value.field == "file"
    assert ("changed" if change == "rewritten" else "shrank") in str(info.value)
    assert stored == [b""]  # no whole file of other content reached the server


# -- 4. ids that would leave their path ---------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["..", ".", "", "a/b", "a?b", "a#b", "a\nb", "\x1b[2J", "x" * 300])
async def test_a_task_id_that_is_no_path_segment_is_refused_before_any_request(task_id: str) -> None:
    async with serve({}) as (url, seen), client_for(url) as client:
        with pytest.raises(evo.ValidationError) as info:
            await client.get_task(task_id)
        with pytest.raises(evo.ValidationError):
            await client.wait(task_id, timeout=1)
        with pytest.raises(evo.ValidationError) as deleting:
            await client.files.delete(task_id or "..")
    assert info.value.field == "task_id"
    assert deleting.value.field == "file"
    assert seen.requests == []


@pytest.mark.parametrize("hostile_id", ["..", ".", "a/../../v1/credits", "a\r\nb"])
async def test_a_created_task_whose_id_cannot_be_read_back_is_unknown_and_never_read(hostile_id: str) -> None:
    async def create(request: web.Request) -> web.StreamResponse:
        return web.json_response(task_body(hostile_id, status="pending"))

    async with serve({("POST", "/v1/images/generations"): create}) as (url, seen), client_for(url) as client:
        with pytest.raises(evo.SubmissionUnknownError) as info:
            await client.generate("a cat")
    assert info.value.idempotency_key  # the way to find the task again without paying twice
    assert seen.paths() == ["/v1/images/generations"]  # no GET /v1/, /v1/tasks/ or anything else with the key


async def test_an_uploaded_file_id_that_is_a_dot_segment_is_a_malformed_answer() -> None:
    async def upload(request: web.Request) -> web.StreamResponse:
        await request.read()
        return _envelope({**_uploaded("x.png"), "file_id": ".."})

    once = attrs.evolve(FAST_RETRY, max_attempts=1)
    async with serve({("POST", "/api/v1/files/upload/stream"): upload}) as (url, _), client_for(url, retry=once) as c:
        with pytest.raises(evo.MalformedResponseError, match="dot segment"):
            await c.upload(PNG)


# -- 5. server text reaches no terminal raw -------------------------------------------------------------------

ESCAPES = "\x1b]0;PWNED\x07\x1b[2J"


async def test_the_cli_prints_server_text_with_control_characters_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] == "task-denied":
            return web.json_response({"error": {"message": f"no {ESCAPES} entry", "code": "x\x07"}}, status=401)
        error = {"code": f"content{ESCAPES}", "message": f"refused {ESCAPES}"}
        body = task_body("task-failed", status=f"failed{ESCAPES}", results=[f"https://r.example/{ESCAPES}"])
        return web.json_response({**body, "error": error})

    outputs = []
    async with serve({("GET", "/v1/tasks/{id}"): read}) as (url, _):
        for task_id in ("task-denied", "task-failed"):
            os.environ["EVOLINK_API_KEY"] = SECRET
            try:
                code = await anyio.to_thread.run_sync(_cli.main, ["--base-url", url, "task", "get", task_id])
            finally:
                os.environ.pop("EVOLINK_API_KEY", None)
            out, err = capsys.readouterr()
            outputs.append((code, out + err))
    for code, text in outputs:
        assert code != 0 or "failed" in text
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "\\x1b]0;PWNED\\x07\\x1b[2J" in text  # escaped, still readable
        assert SECRET not in text


async def test_an_error_from_server_text_is_one_printable_line(caplog: pytest.LogCaptureFixture) -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "busy\nERROR forged log line\x1b[2J"}}, status=503)

    twice = attrs.evolve(FAST_RETRY, max_attempts=2)
    async with serve({("GET", "/v1/tasks/{id}"): read}) as (url, _), client_for(url, retry=twice) as client:
        with caplog.at_level(logging.DEBUG, logger="evolink_async"), pytest.raises(evo.ServerError) as info:
            await client.get_task("task-1")
    assert "\n" not in str(info.value)
    assert "\x1b" not in str(info.value)
    assert "busy\\nERROR forged log line\\x1b[2J" in str(info.value)
    assert info.value.message == "busy\nERROR forged log line\x1b[2J"  # the data itself is kept as sent
    for record in caplog.records:
        assert "\n" not in record.getMessage()
        assert "\x1b" not in record.getMessage()


# -- 6. distinct tasks, distinct files ------------------------------------------------------------------------


async def test_tasks_whose_ids_sanitise_alike_get_distinct_files(tmp_path: Path) -> None:
    async def result(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG + request.match_info["name"].encode(), content_type="image/png")

    long_prefix = "t" * 130
    ids = ["dup_x", "dup:x", "dup@x", long_prefix + "-a", long_prefix + "-b", "dup_x-1"]
    async with serve({("GET", "/r/{name}"): result}) as (url, _), client_for(url) as client:
        tasks = [
            evo.Task(
                id=task_id, status=evo.TaskStatus.COMPLETED, raw_status="completed", results=(f"{url}/r/{number}",)
            )
            for number, task_id in enumerate(ids)
        ]
        paths = [(await client.download(task, tmp_path))[0] for task in tasks]
    assert len(set(paths)) == len(ids)
    for number, path in enumerate(paths):
        assert path.read_bytes() == PNG + str(number).encode()  # each task has its own picture
        assert path.parent == tmp_path
        assert len(path.name) < 160
    assert paths[0].name == "dup_x-0.png"  # an id the rule leaves alone keeps its plain name


# -- 7. a key echoed back -------------------------------------------------------------------------------------


def _renderings(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), "".join(traceback.format_exception(err)), repr(vars(err))])


@pytest.mark.parametrize("escaped", [False, True])
async def test_a_key_echoed_by_the_server_is_in_no_error_nor_log_line(
    escaped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(request: web.Request, data: Any, status: int = 200) -> web.Response:
        text = json.dumps(data).replace("{echo}", request.headers["Authorization"])
        if escaped:  # the key hidden behind JSON escapes: "\u0073k-evo-..."
            text = text.replace(SECRET, "".join(f"\\u{ord(c):04x}" for c in SECRET))
        headers = {"X-Request-Id": request.headers["Authorization"]}  # a header echoes it too
        return web.Response(text=text, status=status, content_type="application/json", headers=headers)

    async def handler(request: web.Request) -> web.StreamResponse:
        task_id = request.match_info.get("id", "")
        if request.method == "POST":
            return answer(request, {"error": {"message": "proxy saw {echo}"}}, status=500)
        if task_id == "task-denied":
            return answer(request, {"error": {"message": "bad key {echo}"}}, status=401)
        if task_id == "task-odd":
            return answer(request, {"id": "task-odd", "echo": "{echo}"})  # no status: malformed
        body = task_body("task-failed", status="failed", error={"code": "x", "message": "key {echo}"})
        return answer(request, body)

    routes = {("GET", "/v1/tasks/{id}"): handler, ("POST", "/v1/images/generations"): handler}
    collected: list[BaseException] = []
    async with serve(routes) as (url, _), client_for(url, retry=attrs.evolve(FAST_RETRY, max_attempts=2)) as client:
        with caplog.at_level(logging.DEBUG, logger="evolink_async"):
            for call in (
                lambda: client.get_task("task-denied"),
                lambda: client.get_task("task-odd"),
                lambda: client.generate("a cat"),
                lambda: client.wait("task-failed", timeout=5),
            ):
                with pytest.raises(evo.EvolinkError) as info:
                    await call()
                collected.append(info.value)
    kinds = [type(err) for err in collected]
    assert kinds == [
        evo.AuthenticationError,
        evo.MalformedResponseError,
        evo.SubmissionUnknownError,
        evo.TaskFailedError,
    ]
    for err in collected:
        assert SECRET not in _renderings(err), type(err).__name__
    assert "[redacted]" in str(collected[0])
    assert "[redacted]" in str(collected[3])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "task-failed" in logged
    assert "[redacted]" in logged
    assert SECRET not in logged


async def test_a_key_too_short_to_be_real_rewrites_no_word_of_an_answer() -> None:
    async def read(request: web.Request) -> web.StreamResponse:
        return web.json_response(task_body("task-k", model="monkey-key"))

    async with serve({("GET", "/v1/tasks/{id}"): read}) as (url, _), evo.AsyncClient("key", base_url=url) as client:
        task = await client.get_task("task-k")
    assert task.model == "monkey-key"


# -- 8. compressed results ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_result_is_saved_whole(encoding: str, tmp_path: Path) -> None:
    picture = PNG + b"\0" * 16000

    async def result(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(picture) if encoding == "gzip" else zlib.compress(picture)
        return web.Response(body=body, headers={"Content-Type": "image/png", "Content-Encoding": encoding})

    async with serve({("GET", "/r.png"): result}) as (url, _):
        task = evo.Task(id="task-z", status=evo.TaskStatus.COMPLETED, raw_status="completed", results=(f"{url}/r.png",))
        async with client_for(url) as client:
            [path] = await client.download(task, tmp_path)
    assert path.read_bytes() == picture


async def test_a_truncated_identity_result_is_still_caught(tmp_path: Path) -> None:
    async def result(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(len(PNG) + 100)})
        await resp.prepare(request)
        await resp.write(PNG)
        assert request.transport is not None
        request.transport.close()  # cut off, 100 bytes short
        return resp

    async with serve({("GET", "/r.png"): result}) as (url, _):
        task = evo.Task(id="task-t", status=evo.TaskStatus.COMPLETED, raw_status="completed", results=(f"{url}/r.png",))
        async with client_for(url, retry=attrs.evolve(FAST_RETRY, max_attempts=1)) as client:
            with pytest.raises(evo.DownloadError):
                await client.download(task, tmp_path)
    assert not any(tmp_path.iterdir())


# -- 9. plain http only to literal loopback -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.localhost", "api.localhost", "localhost.", "localhost.evil.example"])
def test_plain_http_to_a_name_that_only_looks_local_is_refused(host: str) -> None:
    with pytest.raises(evo.ConfigurationError, match="plain http"):
        evo.AsyncClient(SECRET, base_url=f"http://{host}:8080")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "[::1]"])
def test_plain_http_to_literal_loopback_is_allowed(host: str) -> None:
    client = evo.AsyncClient(SECRET, base_url=f"http://{host}:8080")
    assert client.base_url == f"http://{host}:8080"


def test_the_hashes_in_file_names_are_of_the_raw_id() -> None:
    # Pinned: a file name must not change between versions, or a rerun would download every result again.
    from evolink_async._download import safe_stem

    assert safe_stem("dup:x") == "dup_x~" + hashlib.sha256(b"dup:x").hexdigest()[:16]
