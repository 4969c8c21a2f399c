"""The receiver of EvoLink's completion callbacks, and its aiohttp and ASGI adapters.

EvoLink signs nothing, so a callback is only a hint: the receiver never trusts its body. It looks the id up
among the tasks this client is waiting on (others are acknowledged and ignored), answers at once, and then
confirms the state with one ``GET /v1/tasks/{id}`` using our own key; only that read resolves the waiter.
Duplicates, retries and out-of-order deliveries are harmless; a forged body cannot reach the caller; junk
costs no memory (nothing is stored for ids we are not waiting on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._callbacks import CallbackStats
from ._engine import Engine
from ._text import id_problem

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ("CallbackEndpoint", "CallbackReceiver")

log = logging.getLogger("evolink_async")

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]

# The registry's verdict on a callback, as the HTTP answer EvoLink gets.
_ANSWERS = {"ignored": 202, "duplicate": 202, "deferred": 202, "accepted": 202, "closing": 503}


class CallbackReceiver:
    """Receives EvoLink callbacks for one :class:`AsyncClient` (get it as ``client.callbacks``).

    Mount one of: ``receiver.aiohttp_handler`` (a handler for a POST route), ``receiver.aiohttp_app()``
    (a sub-app answering POST at its root), or ``receiver.asgi_app`` (a plain ASGI app, e.g. as the endpoint of
    a Starlette ``Route``; see examples/fastapi_app.py), at the URL given to the client as ``callback_url``.
    """

    def __init__(self, engine: Engine, *, max_body_bytes: int = 256 * 1024) -> None:
        self._engine = engine
        self._registry = engine.callback_registry
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        s = self.stats
        return f"<CallbackReceiver received={s.received} confirmed={s.confirmed} ignored={s.ignored}>"

    @property
    def stats(self) -> CallbackStats:
        """What the receiver has seen (shared with the client's callback registry)."""
        return self._registry.stats

    @property
    def min_confirm_interval(self) -> float:
        """Seconds between two confirmation reads of one task (callbacks sooner than that wait for it)."""
        return self._registry.min_confirm_interval

    @min_confirm_interval.setter
    def min_confirm_interval(self, seconds: float) -> None:
        self._registry.min_confirm_interval = seconds

    # -- the framework-free core -----------------------------------------------------------------

    def handle(self, body: bytes) -> tuple[int, dict[str, str]]:
        """Judge one delivery; returns (HTTP status, JSON answer). Confirmation runs after the reply."""
        self.stats.received += 1
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
            return self._reject("body is not JSON")
        task_id = data.get("id") if isinstance(data, dict) else None
        # A task id goes into a URL path and log lines: checked before anything else.
        if not isinstance(task_id, str) or id_problem(task_id) is not None:
            return self._reject("body has no task id")
        verdict = self._engine.on_callback(task_id)
        return _ANSWERS[verdict], {"status": verdict}

    def _reject(self, why: str) -> tuple[int, dict[str, str]]:
        self.stats.rejected += 1
        log.info("rejected a callback: %s", why)
        return 400, {"error": why}

    # -- aiohttp ----------------------------------------------------------------------------------

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp.web handler: ``app.router.add_post("/evolink/callback", receiver.aiohttp_handler)``."""
        from aiohttp import web

        if request.content_length is not None and request.content_length > self.max_body_bytes:
            self.stats.received += 1
            return web.json_response(self._reject("body too large")[1], status=413)
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.max_body_bytes:
                self.stats.received += 1
                return web.json_response(self._reject("body too large")[1], status=413)
        status, answer = self.handle(bytes(body))
        return web.json_response(answer, status=status)

    def aiohttp_app(self) -> web.Application:
        """A sub-app answering POST at its root: ``app.add_subapp("/evolink/callback", receiver.aiohttp_app())``."""
        from aiohttp import web

        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post("", self.aiohttp_handler)
        app.router.add_post("/", self.aiohttp_handler)
        return app

    # -- ASGI -------------------------------------------------------------------------------------

    @property
    def asgi_app(self) -> _ASGIApp:
        """A plain ASGI (3) app answering POST: mount it as a route at the callback path, e.g. in FastAPI
        ``app.router.routes.append(starlette.routing.Route("/evolink/callback", client.callbacks.asgi_app))``.
        (Not ``app.mount``: a Mount redirects ``POST /evolink/callback`` to ``.../`` and EvoLink follows
        no redirects.)"""
        return _ASGIApp(self)

    async def _asgi(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """A plain ASGI app. Route it at ``callback_url`` exactly: a Starlette/FastAPI ``mount()`` answers its
        bare path (``/evolink/callback``) with a 307 redirect, which EvoLink does not follow. Served on its own by
        uvicorn, pass ``interface="asgi3"`` (uvicorn takes a bound method for an ASGI2 app)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _asgi_json(send, 405, {"error": "POST only"})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                self.stats.received += 1
                await _asgi_json(send, 413, self._reject("body too large")[1])
                return
            if not message.get("more_body", False):
                break
        status, answer = self.handle(bytes(body))
        await _asgi_json(send, status, answer)


class CallbackEndpoint:
    """A place to mount the callback receiver before its client exists: bind it when the client starts.

    Web apps make their client at startup (a lifespan, a ``cleanup_ctx``), after their routes are declared::

        callbacks = evo.CallbackEndpoint()
        app.router.routes.append(Route("/evolink/callback", callbacks))    # an ASGI app itself (Starlette)

        async with evo.AsyncClient(callback_url=...) as client:            # in the lifespan
            callbacks.bind(client.callbacks)

    Until it is bound (and after :meth:`unbind`), a delivery is answered 503, which EvoLink retries (1, 2, 4 s);
    the client's polling catches any it gives up. Adapters: the object itself (ASGI), ``aiohttp_handler``,
    and ``handle(body)`` for any other framework.
    """

    def __init__(self) -> None:
        self._receiver: CallbackReceiver | None = None
        #: Deliveries answered 503 because no receiver was bound.
        self.unbound_deliveries = 0

    def __repr__(self) -> str:
        return f"<CallbackEndpoint bound={self._receiver is not None} unbound_deliveries={self.unbound_deliveries}>"

    @property
    def receiver(self) -> CallbackReceiver | None:
        """The bound receiver (``client.callbacks``), or None."""
        return self._receiver

    def bind(self, receiver: CallbackReceiver) -> None:
        """Route deliveries to ``receiver`` (``client.callbacks``) from now on."""
        if not isinstance(receiver, CallbackReceiver):
            raise TypeError(f"bind() takes client.callbacks (a CallbackReceiver), got {type(receiver).__name__}")
        self._receiver = receiver

    def unbind(self) -> None:
        """Answer 503 again (the client is closing)."""
        self._receiver = None

    def handle(self, body: bytes) -> tuple[int, dict[str, str]]:
        """See :meth:`CallbackReceiver.handle`; (503, ...) while unbound."""
        if self._receiver is None:
            self.unbound_deliveries += 1
            return 503, {"status": "starting"}
        return self._receiver.handle(body)

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp.web handler for a POST route (see :meth:`CallbackReceiver.aiohttp_handler`)."""
        if self._receiver is None:
            from aiohttp import web

            self.unbound_deliveries += 1
            return web.json_response({"status": "starting"}, status=503)
        return await self._receiver.aiohttp_handler(request)

    @property
    def asgi_app(self) -> CallbackEndpoint:
        """The endpoint itself: it is a plain ASGI (3) app, routed as :attr:`CallbackReceiver.asgi_app` is."""
        return self

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        receiver = self._receiver
        if receiver is not None:
            await receiver._asgi(scope, receive, send)
        elif scope["type"] == "http":
            self.unbound_deliveries += 1
            await _asgi_json(send, 503, {"status": "starting"})


class _ASGIApp:
    """The receiver as an ASGI 3 application object."""

    def __init__(self, receiver: CallbackReceiver) -> None:
        self.receiver = receiver

    def __repr__(self) -> str:
        return f"<evolink callback ASGI app of {self.receiver!r}>"

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        await self.receiver._asgi(scope, receive, send)


async def _asgi_json(send: ASGISend, status: int, answer: dict[str, str]) -> None:
    payload = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
