"""``evolink_async.generate(...)``: the one-liner for a script, on a default sync client made at first use.

The client is made from the environment (``EVOLINK_API_KEY``, ``EVOLINK_BASE_URL``), shared by every call of
the process, and closed at interpreter exit. Anything more (options, several keys, async code, a web server)
wants a client of its own: ``with evolink_async.Client(...) as client`` or ``async with AsyncClient(...)``.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from ._sync import Client
from .models import ImageFields, Request, Task

if TYPE_CHECKING:
    from typing import Unpack

__all__ = ("default_client", "generate")

_lock = threading.Lock()
_client: Client | None = None


def default_client() -> Client:
    """The process's default sync client (made at first use from the environment, closed at exit)."""
    global _client
    with _lock:
        if _client is None:
            client = Client()  # a missing key raises here, and nothing is kept
            atexit.register(_close)
            _client = client
        return _client


def _close() -> None:
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.close()


def generate(
    request: Request | str | None = None,
    *,
    prompt: str | None = None,
    timeout: float | None = None,
    **fields: Unpack[ImageFields],
) -> Task:
    """Generate and wait, without a client: ``task = evolink_async.generate("a cat", size="16:9")``.

    Runs on a default sync :class:`Client` made from ``EVOLINK_API_KEY`` (and ``EVOLINK_BASE_URL``) at first
    use and closed when the interpreter exits. The same arguments and errors as :meth:`Client.generate`.
    Graduate to a client of your own for options (limits, retries, a callback URL), batches, or async code.
    """
    return default_client().generate(request, prompt=prompt, timeout=timeout, **fields)
