"""An aiohttp.web service that generates an image per request and is told of completion by EvoLink's callback.

    EVOLINK_API_KEY=sk-evo-... EVOLINK_CALLBACK_URL=https://your.host/evolink/callback python examples/aiohttp_app.py

    curl -X POST https://your.host/generate -H 'content-type: application/json' -d '{"prompt": "a cat"}'

One AsyncClient lives as long as the app (opened and closed with it); the callback receiver is mounted at
/evolink/callback. Settings come from the environment:
  EVOLINK_API_KEY, EVOLINK_BASE_URL      the API (or a simulator)
  EVOLINK_CALLBACK_URL                   the public URL of /evolink/callback (omit to poll only)
  EVOLINK_ALLOW_LOCAL_CALLBACKS=1        accept a loopback/private callback URL (local testing only)
  EVOLINK_REDIS_URL                      replicas share the key's limits and callbacks (docs/deploying.md)
  APP_HOST, APP_PORT                     where to listen (default 127.0.0.1:8443)
  APP_TLS_CERT, APP_TLS_KEY              serve HTTPS with this certificate (EvoLink calls back over HTTPS only)
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

import evolink_async as evo

if TYPE_CHECKING:
    import evolink_async.redis

CLIENT = web.AppKey("evolink_client", evo.AsyncClient)


def _coordinator() -> evo.redis.RedisCoordinator | None:
    """``EVOLINK_REDIS_URL`` set: a coordinator (the ``redis`` extra), one per client."""
    url = os.environ.get("EVOLINK_REDIS_URL")
    if not url:
        return None
    from evolink_async.redis import RedisCoordinator

    return RedisCoordinator(url)


async def evolink_client(app: web.Application) -> AsyncIterator[None]:
    """The client's lifetime is the app's: opened at startup, closed (waits failed cleanly) at shutdown."""
    async with evo.AsyncClient(
        timeouts=evo.Timeouts(wait=600),  # every wait bounded: no slot held forever by a task that never ends
        callback_url=os.environ.get("EVOLINK_CALLBACK_URL") or None,
        allow_local_callback_url=os.environ.get("EVOLINK_ALLOW_LOCAL_CALLBACKS") == "1",
        # Several workers or replicas behind one callback URL: share the key's limits and callbacks through Redis.
        coordinator=_coordinator(),
    ) as client:
        app[CLIENT] = client
        yield


async def generate(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "send a JSON object"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return web.json_response({"error": "'prompt' (a string) is required"}, status=400)
    client = request.app[CLIENT]
    try:
        task = await client.generate(body["prompt"], size=body.get("size"), quality=body.get("quality"), timeout=600)
    except evo.ValidationError as exc:
        return web.json_response({"error": str(exc), "field": exc.field}, status=400)
    except evo.TaskFailedError as exc:
        return web.json_response({"error": exc.code, "task_id": exc.task_id}, status=502)
    except evo.EvolinkError as exc:
        return web.json_response({"error": type(exc).__name__, "task_id": exc.task_id}, status=502)
    return web.json_response({"task_id": task.id, "urls": list(task.results)})


async def evolink_callback(request: web.Request) -> web.Response:
    return await request.app[CLIENT].callbacks.aiohttp_handler(request)


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(evolink_client)
    app.router.add_post("/generate", generate)
    app.router.add_post("/evolink/callback", evolink_callback)
    return app


def main() -> None:
    ssl_context = None
    if os.environ.get("APP_TLS_CERT"):
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(os.environ["APP_TLS_CERT"], os.environ.get("APP_TLS_KEY"))
    host = os.environ.get("APP_HOST", "127.0.0.1")
    port = int(os.environ.get("APP_PORT", "8443"))
    # handler_cancellation: a client that hangs up cancels its handler, and so its wait and in-flight slot
    # (aiohttp's default, like uvicorn's, lets the handler run on; Timeouts(wait=...) bounds it then).
    # shutdown_timeout: on SIGTERM, handlers still running (a wait on a task that never ends) are cancelled
    # after 5 s, then the client closes with the app (aiohttp's default waits 60 s).
    web.run_app(
        make_app(),
        host=host,
        port=port,
        ssl_context=ssl_context,
        print=None,
        handler_cancellation=True,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
