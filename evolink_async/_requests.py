"""Building requests: ImageRequest from a prompt and keywords, Idempotency-Keys, the in-flight slot."""

from __future__ import annotations

import difflib
import os
import random
import re
from collections.abc import Mapping
from typing import Any

import anyio
import attrs

from . import errors
from .models import ImageRequest

__all__ = ("Slot", "build_request", "check_field_names", "check_idempotency_key", "new_idempotency_key")

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._-]{16,96}")


# Keys must be unique, not secret: a generator seeded from the OS (again in every forked child) gives 128
# random bits without a system call per create — which a large batch notices.
_key_rng = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _key_rng.seed(os.urandom(32)))


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key (what every create gets unless the caller gives one): 128 random bits."""
    return f"evo-{_key_rng.getrandbits(128):032x}"


def check_idempotency_key(key: str) -> str:
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise errors.ValidationError("idempotency_key", "must be 16-96 characters of A-Z a-z 0-9 . _ -")
    return key


class Slot:
    """One in-flight slot, borrowed on behalf of a unique token (a task may hold several)."""

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._token = object()

    async def __aenter__(self) -> None:
        try:
            # A free slot is taken at once; only a full limiter costs a wait (and an event-loop round trip).
            self._limiter.acquire_on_behalf_of_nowait(self._token)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(self._token)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limiter.release_on_behalf_of(self._token)


_REQUEST_FIELDS = frozenset(f.name for f in attrs.fields(ImageRequest))


def check_field_names(fields: Mapping[str, Any]) -> None:
    """Keyword fields must be ImageRequest fields: a typo (``sise=``) fails here instead of being sent."""
    for name in fields:
        if name not in _REQUEST_FIELDS:
            close = difflib.get_close_matches(name, sorted(_REQUEST_FIELDS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise errors.ValidationError(
                name, f"is not a request field ({hint}pass body fields the SDK does not know as extra={{...}})"
            )


def build_request(request: ImageRequest | str, fields: Mapping[str, Any], *, strict: bool = True) -> ImageRequest:
    """An ImageRequest from a prompt or request plus fields.

    ``strict`` (keyword arguments): unknown names are an error. Not strict (a JSON object of request fields,
    e.g. a line of a batch file): unknown names are body fields the SDK does not know, sent as ``extra``.
    """
    if not isinstance(request, (ImageRequest, str)):
        raise errors.ValidationError(
            "request", f"must be a prompt string or an ImageRequest, got {type(request).__name__}"
        )
    if strict:
        check_field_names(fields)
    base = {k: v for k, v in fields.items() if k in _REQUEST_FIELDS}
    unknown = {k: v for k, v in fields.items() if k not in _REQUEST_FIELDS}
    if unknown:
        previous = base.get("extra", request.extra if isinstance(request, ImageRequest) else {})
        base["extra"] = {**dict(previous or {}), **unknown}
    if isinstance(request, ImageRequest):
        return attrs.evolve(request, **base) if base else request
    return ImageRequest(request, **base)
