"""Frozen, keyword-only option values. Change one by copying: ``attrs.evolve(Timeouts(), poll=5)``."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError

__all__ = ("DEFAULT_BASE_URL", "Limits", "PollPolicy", "RetryPolicy", "Timeouts", "is_loopback_host")

DEFAULT_BASE_URL = "https://api.evolink.ai"
ENV_API_KEY = "EVOLINK_API_KEY"
ENV_BASE_URL = "EVOLINK_BASE_URL"
DEFAULT_FILES_BASE_URL = "https://files-api.evolink.ai"
ENV_FILES_BASE_URL = "EVOLINK_FILES_BASE_URL"


def _positive(_: object, attribute: attrs.Attribute[float], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Timeouts:
    """Seconds: ``connect`` for opening a connection, ``request`` for one whole API request,
    ``poll`` for one status read by the poller (shorter: a slow read is retried, not waited on).
    ``wait``: the bound of every wait (``generate``, ``wait``, each task of a batch) that passes no
    ``timeout`` of its own; None waits as long as the task takes. A web server sets it, since most servers
    do not cancel a handler whose client went away (see docs/callbacks.md)."""

    connect: float = attrs.field(default=10.0, validator=_positive)
    request: float = attrs.field(default=60.0, validator=_positive)
    poll: float = attrs.field(default=15.0, validator=_positive)
    wait: float | None = attrs.field(default=None, validator=_positive)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Retries of one request on connection errors, timeouts, 429 and 5xx.

    Delays grow ``initial_backoff * multiplier**n`` up to ``max_backoff``, jittered over their upper half; a
    ``Retry-After`` from the server is honoured up to ``max_retry_after`` seconds.
    ``max_attempts`` counts the first try. Creates are retried only with their Idempotency-Key.
    """

    max_attempts: int = attrs.field(default=4)
    initial_backoff: float = attrs.field(default=0.5, validator=_positive)
    max_backoff: float = attrs.field(default=8.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    max_retry_after: float = attrs.field(default=30.0, validator=_non_negative)

    # pyright reads an attrs field as its default's type, so it knows no `.validator` on it (mypy's attrs plugin does).
    @max_attempts.validator  # pyright: ignore[reportAttributeAccessIssue]
    def _check_attempts(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the shared poller schedules status reads.

    The first read comes at ``first_check`` times the task's ``estimated_time`` (or, when it gives none,
    ``default_estimate``, ``video_estimate`` or ``audio_estimate`` by its kind); later reads aim just past
    the finish predicted from progress, never sooner than ``min_interval`` nor later than
    ``max_interval`` apart, with ±``jitter`` (a fraction). ``batch`` chooses ``POST /v1/tasks/batch``:
    ``None`` detects it once, ``False`` never uses it. Tasks whose completion a callback announces are
    read only as a safety net: first at ``callback_grace`` times the estimate + ``callback_slack`` seconds, then at
    most every ``callback_max_interval``.
    """

    min_interval: float = attrs.field(default=0.5, validator=_positive)
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    default_estimate: float = attrs.field(default=30.0, validator=_positive)
    #: The estimate of a video / audio task that gives none (videos take minutes; EvoLink's client assumes 180 s).
    video_estimate: float = attrs.field(default=180.0, validator=_positive)
    audio_estimate: float = attrs.field(default=90.0, validator=_positive)
    first_check: float = attrs.field(default=0.5, validator=_positive)
    finish_margin: float = attrs.field(default=0.03, validator=_non_negative)
    overdue_factor: float = attrs.field(default=0.2, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_non_negative)
    batch: bool | None = None
    batch_size: int = attrs.field(default=50)
    batch_interval: float = attrs.field(default=0.5, validator=_non_negative)
    #: Status reads in flight at once; None: bounded only by the connection pool and the pace (reads go first).
    max_concurrent_reads: int | None = attrs.field(default=None)
    callback_grace: float = attrs.field(default=1.5, validator=_positive)
    callback_slack: float = attrs.field(default=10.0, validator=_non_negative)
    callback_max_interval: float = attrs.field(default=120.0, validator=_positive)

    @batch_size.validator  # pyright: ignore[reportAttributeAccessIssue]
    def _check_batch_size(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 1 <= value <= 50:
            raise ConfigurationError(f"batch_size must be between 1 and 50, got {value!r}")

    @max_concurrent_reads.validator  # pyright: ignore[reportAttributeAccessIssue, reportOptionalMemberAccess]
    def _check_reads(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and value < 1:
            raise ConfigurationError(f"max_concurrent_reads must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class Limits:
    """``max_in_flight``: tasks of this client running on the server at once (each ``generate`` and each
    batch input holds one slot from its create until it is seen final).
    ``requests_per_second`` / ``burst``: the client-wide request pace (``None``: unpaced; it still backs
    off on 429). ``max_connections``: the API connection pool size. Downloads of results use a pool of
    their own (``max_download_connections``) and refuse files over ``max_download_bytes``."""

    max_in_flight: int = attrs.field(default=16)
    requests_per_second: float | None = attrs.field(default=10.0, validator=_positive)
    burst: int = attrs.field(default=10)
    max_connections: int = attrs.field(default=32)
    max_download_connections: int = attrs.field(default=8)
    max_download_bytes: int = attrs.field(default=1024 * 1024 * 1024)

    @max_in_flight.validator  # pyright: ignore[reportAttributeAccessIssue]
    def _check_in_flight(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"max_in_flight must be >= 1, got {value!r}")

    @burst.validator  # pyright: ignore[reportAttributeAccessIssue]
    def _check_burst(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"burst must be >= 1, got {value!r}")

    @max_connections.validator  # pyright: ignore[reportAttributeAccessIssue]
    @max_download_connections.validator  # pyright: ignore[reportAttributeAccessIssue]
    @max_download_bytes.validator  # pyright: ignore[reportAttributeAccessIssue]
    def _check_connections(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"{attribute.name} must be >= 1, got {value!r}")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals; not for other names (``*.localhost`` may go to DNS)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":  # exactly: "localhost." is a name the resolver may send to DNS too
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(api_key: str | None) -> str:
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    if not key or not key.strip():
        raise ConfigurationError(f"no API key: pass api_key=... or set {ENV_API_KEY}")
    key = key.strip()
    if any(c.isspace() or not c.isprintable() for c in key):
        # It goes into a header: CR/LF would be header injection. Never echo the key itself.
        raise ConfigurationError("the API key contains whitespace or control characters")
    return key


def resolve_base_url(base_url: str | None) -> str:
    """The API's root URL: ``base_url``, ``EVOLINK_BASE_URL`` or the default; a trailing ``/v1`` is dropped
    (the openai habit: the SDK's paths carry ``/v1`` themselves)."""
    url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.path.endswith("/v1"):  # the path only: a host named v1 stays
        url = url[: -len("/v1")]
    return _checked_root(url, "base_url")


def resolve_files_base_url(files_base_url: str | None, base_url: str) -> str:
    """The files API's root URL: ``files_base_url``, ``EVOLINK_FILES_BASE_URL``, EvoLink's files host when
    ``base_url`` is EvoLink's, else ``base_url`` itself (a simulator or a proxy serves both)."""
    fallback = DEFAULT_FILES_BASE_URL if base_url == DEFAULT_BASE_URL else base_url
    url = (files_base_url or os.environ.get(ENV_FILES_BASE_URL) or fallback).rstrip("/")
    return _checked_root(url, "files_base_url")


def _checked_root(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        # The key would cross the network in clear text.
        raise ConfigurationError(
            f"refusing to send the API key over plain http:// to {parts.hostname}; use https:// "
            "(plain http is allowed only to loopback, e.g. the simulator)"
        )
    return url
