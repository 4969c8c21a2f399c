"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY: the client's requests go through the proxy the environment names, and
the key still goes only to the API's hosts. The proxy is a small forwarding server on loopback, written here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import attrs
import pytest
from aiohttp import web

import evolink_async as evo
from evolink_async._proxy import proxy_for
from evolink_async.testing import FakeEvolink

MakeClient = Callable[..., evo.AsyncClient]


@attrs.define
class Proxy:
    url: str
    seen: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)  # method, absolute URL, headers


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    """A plain HTTP forward proxy: takes absolute-form requests, forwards them, records what it saw."""
    state = Proxy(url="")
    async with aiohttp.ClientSession(auto_decompress=False) as upstream:

        async def forward(request: web.Request) -> web.StreamResponse:
            target = str(request.url)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-authorization")}
            state.seen.append((request.method, target, dict(request.headers)))
            body = await request.read()
            async with upstream.request(
                request.method, target, headers=headers, data=body or None, allow_redirects=False
            ) as resp:
                payload = await resp.read()
                passed = {k: v for k, v in resp.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
                return web.Response(status=resp.status, body=payload, headers=passed)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield state
        finally:
            await runner.cleanup()


@pytest.fixture(autouse=True)
def no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def test_api_calls_and_downloads_go_through_http_proxy(
    fake: FakeEvolink, make_client: MakeClient, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with make_client(fake) as client:
        task = await client.generate("a cat [duration:0.1]")
        await client.download(task, tmp_path)
        assert (await client.result_bytes(task)).startswith(b"\x89PNG")
    api = [(m, u, h) for m, u, h in proxy.seen if "/v1/" in u]
    files = [(m, u, h) for m, u, h in proxy.seen if "/files/" in u]
    assert api[0][:2] == ("POST", f"{fake.base_url}/v1/images/generations")
    assert len(api) == fake.stats.requests - fake.stats.file_requests  # every API call, none around it
    assert len(files) == fake.stats.file_requests == 2
    assert all(h.get("Authorization") == f"Bearer {fake.api_key}" for _, _, h in api)
    # The result host never gets the key, through the proxy or not.
    assert all("authorization" not in {k.lower() for k in h} for _, _, h in files)


async def test_no_proxy_sends_a_host_directly(
    fake: FakeEvolink, make_client: MakeClient, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)  # lower case works too
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with make_client(fake) as client:
        task = await client.generate("a cat [duration:0.1]")
        await client.download(task, tmp_path)
    assert proxy.seen == []
    assert fake.stats.creates == 1


async def test_https_proxy_is_for_https_urls_only(
    fake: FakeEvolink, make_client: MakeClient, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # the simulator is plain http on loopback
    async with make_client(fake) as client:
        await client.submit("a cat")
    assert proxy.seen == []
    assert proxy_for("https://api.evolink.ai") == proxy.url


async def test_a_session_of_the_callers_keeps_its_own_settings(
    fake: FakeEvolink, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with (
        aiohttp.ClientSession() as session,
        evo.AsyncClient(fake.api_key, base_url=fake.base_url, session=session) as client,
    ):
        await client.submit("a cat")
    assert proxy.seen == []


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "https://api.evolink.ai", "http://proxy.corp:3128"),
        ({"HTTPS_PROXY": "http://u:p@proxy:8080"}, "https://files.evolink.ai/x.png", "http://u:p@proxy:8080"),
        ({"HTTPS_PROXY": "http://proxy:8080", "NO_PROXY": ".evolink.ai"}, "https://api.evolink.ai", None),
        ({"HTTPS_PROXY": "http://proxy:8080", "NO_PROXY": "*"}, "https://api.evolink.ai", None),
        ({"HTTP_PROXY": "http://proxy:8080"}, "https://api.evolink.ai", None),
        ({"HTTP_PROXY": "http://proxy:8080", "REQUEST_METHOD": "GET"}, "http://x.test", None),  # CGI: httpoxy
    ],
)
def test_proxy_for_reads_the_environment_as_requests_does(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


def test_a_socks_proxy_is_a_configuration_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(evo.ConfigurationError, match="HTTPS_PROXY names a socks5 proxy"):
        evo.AsyncClient("sk-test")


def test_proxy_credentials_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret-pw@proxy:8080")
    client = evo.AsyncClient("sk-test")
    assert "secret-pw" not in repr(client)
    assert "secret-pw" not in repr(client._api.transport)
