"""A FastAPI service that generates an image per request and is told of completion by EvoLink's callback.

    EVOLINK_API_KEY=sk-evo-... EVOLINK_CALLBACK_URL=https://your.host/evolink/callback \\
        uvicorn examples.fastapi_app:app --host 0.0.0.0 --port 8443 --ssl-certfile cert.pem --ssl-keyfile key.pem \\
            --timeout-graceful-shutdown 10

    curl -X POST https://your.host/generate -H 'content-type: application/json' -d '{"prompt": "a cat"}'

One AsyncClient lives for the app's lifespan; the callback endpoint (a plain ASGI app, no FastAPI import in
the SDK) is routed at /evolink/callback when the module loads, and bound to the client when the lifespan starts.
Settings: EVOLINK_API_KEY, EVOLINK_BASE_URL, EVOLINK_CALLBACK_URL,
EVOLINK_ALLOW_LOCAL_CALLBACKS=1 (local testing only), EVOLINK_REDIS_URL (several workers: `uvicorn --workers 4`,
or replicas behind a load balancer, share limits and callbacks; docs/deploying.md) — as in examples/aiohttp_app.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.routing import Route

import evolink_async as evo

if TYPE_CHECKING:
    import evolink_async.redis


def _coordinator() -> evo.redis.RedisCoordinator | None:
    """``EVOLINK_REDIS_URL`` set: a coordinator (the ``redis`` extra), one per client."""
    url = os.environ.get("EVOLINK_REDIS_URL")
    if not url:
        return None
    from evolink_async.redis import RedisCoordinator

    return RedisCoordinator(url)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with evo.AsyncClient(
        # Every wait bounded: uvicorn does not cancel a handler whose client hung up, and on shutdown it waits
        # for running handlers (run it with --timeout-graceful-shutdown 10 to cancel them after 10 s).
        timeouts=evo.Timeouts(wait=600),
        callback_url=os.environ.get("EVOLINK_CALLBACK_URL") or None,
        allow_local_callback_url=os.environ.get("EVOLINK_ALLOW_LOCAL_CALLBACKS") == "1",
        # Several workers or replicas behind one callback URL: share the key's limits and callbacks through Redis.
        coordinator=_coordinator(),
    ) as client:
        app.state.evolink = client
        callbacks.bind(client.callbacks)
        try:
            yield
        finally:
            callbacks.unbind()


app = FastAPI(lifespan=lifespan)
# Mounted before the client exists; bound in the lifespan. A route, not ``app.mount(...)``: a Mount answers
# ``POST /evolink/callback`` with a 307 redirect to ``/evolink/callback/``, and EvoLink does not follow redirects.
# (A plain ``async def (scope, receive, send)`` would not do either: Starlette takes a function for an endpoint
# of a Request, and answers every callback 405.)
callbacks = evo.CallbackEndpoint()
app.router.routes.append(Route("/evolink/callback", callbacks))


class GenerateIn(BaseModel):
    prompt: str
    size: str | None = None
    quality: str | None = None


class GenerateOut(BaseModel):
    task_id: str
    urls: list[str]


@app.post("/generate")
async def generate(body: GenerateIn) -> GenerateOut:
    client: evo.AsyncClient = app.state.evolink
    try:
        task = await client.generate(body.prompt, size=body.size, quality=body.quality, timeout=600)
    except evo.ValidationError as exc:
        raise HTTPException(400, {"error": str(exc), "field": exc.field}) from exc
    except evo.TaskFailedError as exc:
        raise HTTPException(502, {"error": exc.code, "task_id": exc.task_id}) from exc
    except evo.EvolinkError as exc:
        raise HTTPException(502, {"error": type(exc).__name__, "task_id": exc.task_id}) from exc
    return GenerateOut(task_id=task.id, urls=list(task.results))
