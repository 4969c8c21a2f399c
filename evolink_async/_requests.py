"""Building requests: a request from a prompt and keywords, Idempotency-Keys, checks of call options."""

from __future__ import annotations

import difflib
import os
import random
import re
from collections.abc import Mapping
from typing import Any

import attrs

from . import errors
from .models import REQUEST_KINDS, ImageRequest, Request

__all__ = (
    "BATCH_OPTIONS",
    "GENERATE_OPTIONS",
    "SUBMIT_OPTIONS",
    "build_request",
    "check_field_names",
    "check_idempotency_key",
    "check_timeout",
    "request_fields",
    "new_idempotency_key",
)

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


_REQUEST_FIELDS = frozenset(f.name for f in attrs.fields(ImageRequest))
_FIELDS_OF: dict[type, frozenset[str]] = {
    cls: frozenset(f.name for f in attrs.fields(cls)) for cls in REQUEST_KINDS.values()
}
_REQUEST_TYPES = tuple(REQUEST_KINDS.values())


#: The options of each call (not request fields): a typo of one is named as such.
SUBMIT_OPTIONS = frozenset({"idempotency_key"})
GENERATE_OPTIONS = frozenset({"idempotency_key", "timeout", "on_update"})
BATCH_OPTIONS = frozenset(
    {"max_in_flight", "budget", "cost_per_task", "download_to", "journal", "timeout", "retry_failed", "retry_delay"}
)


def check_field_names(
    fields: Mapping[str, Any], *, options: frozenset[str] = frozenset(), known: frozenset[str] = _REQUEST_FIELDS
) -> None:
    """Keyword fields must be request fields (``known``): a typo (``sise=``) fails here instead of being sent.

    ``options``: the call's own option names, so that a misspelled option is suggested as that option.
    """
    for name in fields:
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known | options), n=1)
        if close and close[0] in options:
            raise errors.ValidationError(name, f"is not an option of this call (did you mean {close[0]!r}?)")
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise errors.ValidationError(
            name, f"is not a request field ({hint}pass body fields the SDK does not know as extra={{...}})"
        )


def request_fields(kind: type[Request]) -> frozenset[str]:
    """The field names of a request class."""
    return _FIELDS_OF[kind]


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise errors.ValidationError("timeout", f"must be > 0 seconds or None, got {timeout!r}")


def _pick_request(request: Request | str | None, prompt: str | None) -> Request | str:
    """The request of a call that takes it positionally or as ``prompt=`` (the openai habit), not both."""
    if request is not None and prompt is not None:
        raise errors.ValidationError("prompt", "given twice: pass the prompt positionally or as prompt=, not both")
    chosen = request if request is not None else prompt
    if chosen is None:
        raise errors.ValidationError("prompt", "is required: pass a prompt (or an ImageRequest)")
    return chosen


def build_request(
    request: Request | str | None,
    fields: Mapping[str, Any],
    *,
    strict: bool = True,
    prompt: str | None = None,
    options: frozenset[str] = frozenset(),
    kind: type[Request] = ImageRequest,
) -> Request:
    """A request from a prompt or request (or ``prompt=``) plus fields; a prompt makes a ``kind`` request.

    ``strict`` (keyword arguments): unknown names are an error. Not strict (a JSON object of request fields,
    e.g. a line of a batch file): unknown names are body fields the SDK does not know, sent as ``extra``.
    """
    request = _pick_request(request, prompt)
    if not isinstance(request, (str, *_REQUEST_TYPES)):
        raise errors.ValidationError(
            "request",
            f"must be a prompt string or an ImageRequest, VideoRequest or AudioRequest, got {type(request).__name__}",
        )
    cls = kind if isinstance(request, str) else type(request)
    known = _FIELDS_OF[cls]
    if strict:
        check_field_names(fields, options=options, known=known)
    base = {k: v for k, v in fields.items() if k in known}
    unknown = {k: v for k, v in fields.items() if k not in known}
    if unknown:
        previous = base.get("extra", request.extra if not isinstance(request, str) else {})
        base["extra"] = {**dict(previous or {}), **unknown}
    if isinstance(request, str):
        if cls is not ImageRequest and "model" not in base:
            raise errors.ValidationError("model", f"is required for a {cls.kind} request (prices differ by model)")
        return cls(request, **base)
    return attrs.evolve(request, **base) if base else request
