"""A Django service (async views under an ASGI server) that generates an image per request and is told of
completion by EvoLink's callback.

    EVOLINK_API_KEY=sk-evo-... EVOLINK_CALLBACK_URL=https://your.host/evolink/callback \\
        uvicorn examples.django_app:application --host 0.0.0.0 --port 8443 \\
            --ssl-certfile cert.pem --ssl-keyfile key.pem --timeout-graceful-shutdown 10

    curl -X POST https://your.host/generate -H 'content-type: application/json' -d '{"prompt": "a cat"}'

One file for the example (settings, views, URLs); in a project they go in settings.py, views.py, urls.py and
asgi.py. Django serves no ASGI lifespan, so ``application`` adds it: one AsyncClient opened at startup on the
server's event loop (where the async views run) and closed at shutdown. The callback endpoint is routed before
the client exists and bound to it at startup; the view hands it the body (``CallbackEndpoint.handle``).
Settings: EVOLINK_API_KEY, EVOLINK_BASE_URL, EVOLINK_CALLBACK_URL, EVOLINK_ALLOW_LOCAL_CALLBACKS=1 (local
testing only) — as in examples/aiohttp_app.py.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32),
    MIDDLEWARE=[],  # no session, no CSRF: these endpoints take JSON from machines
    INSTALLED_APPS=[],
    DATA_UPLOAD_MAX_MEMORY_SIZE=256 * 1024,  # a callback body is a task object: a few kB
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings, as Django requires)
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

import evolink_async as evo  # noqa: E402

callbacks = evo.CallbackEndpoint()
_state: dict[str, evo.AsyncClient] = {}


async def generate(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "send a JSON object"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return JsonResponse({"error": "'prompt' (a string) is required"}, status=400)
    client = _state["client"]
    try:
        task = await client.generate(body["prompt"], size=body.get("size"), quality=body.get("quality"), timeout=600)
    except evo.ValidationError as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=400)
    except evo.TaskFailedError as exc:
        return JsonResponse({"error": exc.code, "task_id": exc.task_id}, status=502)
    except evo.EvolinkError as exc:
        return JsonResponse({"error": type(exc).__name__, "task_id": exc.task_id}, status=502)
    return JsonResponse({"task_id": task.id, "urls": list(task.results)})


async def evolink_callback(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    status, answer = callbacks.handle(request.body)  # answers at once; the confirming read runs in the client
    return JsonResponse(answer, status=status)


urlpatterns = [path("generate", generate), path("evolink/callback", evolink_callback)]

django_application = get_asgi_application()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django's ASGI app, plus the lifespan it does not serve: the client's lifetime is the server's."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await django_application(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    await receive()  # lifespan.startup
    try:
        client = evo.AsyncClient(
            timeouts=evo.Timeouts(wait=600),  # every wait bounded: no slot held forever by a task that never ends
            callback_url=os.environ.get("EVOLINK_CALLBACK_URL") or None,
            allow_local_callback_url=os.environ.get("EVOLINK_ALLOW_LOCAL_CALLBACKS") == "1",
        )
    except evo.ConfigurationError as exc:  # no key, a bad callback URL: the server does not start
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        return
    async with client:
        _state["client"] = client
        callbacks.bind(client.callbacks)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        callbacks.unbind()
    await send({"type": "lifespan.shutdown.complete"})
