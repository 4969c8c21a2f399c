"""Frozen data classes for what crosses the wire. They know nothing of JSON: ``_converter`` does that."""

from __future__ import annotations

import enum
import ipaddress
import json
import posixpath
import types
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TypedDict
from urllib.parse import unquote, urlsplit

import attrs

from .errors import ValidationError, is_retryable_code

__all__ = (
    "DEFAULT_MODEL",
    "Cost",
    "Credits",
    "ImageFields",
    "ImageQuality",
    "ImageRequest",
    "ImageSize",
    "ModelRules",
    "Task",
    "TaskError",
    "TaskInfo",
    "TaskStatus",
    "Usage",
    "is_retryable_code",
)

DEFAULT_MODEL = "gemini-3-pro-image-preview"

_BASE_SIZES = frozenset({"auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
_BASE_QUALITIES = frozenset({"1K", "2K", "4K"})
_IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".webp"})
_MAX_CALLBACK_URL = 2048


@attrs.frozen(kw_only=True)
class ModelRules:
    """The documented request limits of one model; ``None`` means "not checked"."""

    prompt_max: int
    sizes: frozenset[str] | None
    qualities: frozenset[str] | None
    max_image_urls: int


#: Models whose documented limits are checked before sending. Other models pass through unchecked.
KNOWN_MODELS: Mapping[str, ModelRules] = {
    "gemini-3-pro-image-preview": ModelRules(
        prompt_max=2000, sizes=_BASE_SIZES, qualities=_BASE_QUALITIES, max_image_urls=10
    ),
    "gemini-3.1-flash-image-preview": ModelRules(
        prompt_max=2000,
        sizes=_BASE_SIZES | {"1:4", "4:1", "1:8", "8:1"},
        qualities=_BASE_QUALITIES | {"0.5K"},
        max_image_urls=14,
    ),
    "gemini-2.5-flash-image": ModelRules(prompt_max=1000, sizes=None, qualities=None, max_image_urls=10),
}


#: The ``extra`` of a model with no unknown keys: one shared read-only mapping, not an empty dict per object
#: (a batch holds thousands of tasks, each with several sub-objects).
NOTHING_EXTRA: Mapping[str, Any] = types.MappingProxyType({})


class TaskStatus(str, enum.Enum):
    """A task's state. ``UNKNOWN`` stands for a status this SDK does not know (see ``Task.raw_status``)."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Completed, failed and cancelled are final; everything else may still change."""
        return self in _FINAL_STATUSES

    def __str__(self) -> str:
        return self.value


_FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


@attrs.frozen(kw_only=True)
class TaskInfo:
    """``task_info``: what the server predicts about the task."""

    can_cancel: bool | None = None
    estimated_time: float | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class Cost:
    """``usage.cost``: the settled charge of a finished task."""

    credits: float | None = None
    usd: float | None = None
    cny: float | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class Usage:
    """``usage``: credits reserved at creation and, once settled, used."""

    billing_rule: str | None = None
    credits_reserved: float | None = None
    credits_used: float | None = None
    user_group: str | None = None
    cost: Cost | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class TaskError:
    """``error`` of a failed task. ``code`` is always a string (integer codes are converted)."""

    code: str | None = None
    message: str | None = None
    type: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)

    @property
    def retryable(self) -> bool:
        """Whether resubmitting may succeed, per EvoLink's table of codes."""
        return is_retryable_code(self.code)


@attrs.frozen(kw_only=True)
class Task:
    """One generation task as last seen. Every field but ``id`` and ``status`` may be missing.

    ``raw_status`` keeps the status exactly as the server sent it (useful when ``status`` is
    ``UNKNOWN``); ``extra`` keeps every key this SDK does not know.
    """

    id: str
    status: TaskStatus
    raw_status: str
    progress: int | None = None
    model: str | None = None
    created: int | None = None
    object: str | None = None
    type: str | None = None
    task_info: TaskInfo | None = None
    usage: Usage | None = None
    results: tuple[str, ...] = ()
    error: TaskError | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)

    @property
    def is_final(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_final

    @property
    def estimated_time(self) -> float | None:
        """The server's estimate of the task's duration in seconds, if it gave one."""
        return self.task_info.estimated_time if self.task_info is not None else None

    @property
    def created_at(self) -> datetime | None:
        """``created`` as an aware UTC datetime."""
        if self.created is None:
            return None
        try:
            return datetime.fromtimestamp(self.created, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # absurd timestamps: lenient, like every other field
            return None


@attrs.frozen(kw_only=True)
class Credits:
    """``GET /v1/credits``: the account's balance (``remaining``) and the key's own counters."""

    remaining: float | None = None
    used: float | None = None
    key_remaining: float | None = None
    key_used: float | None = None
    key_unlimited: bool | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


#: Sizes the known models document (each model accepts its own subset; checked when a request is built).
ImageSize = Literal[
    "auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"
]
#: Qualities the known models document.
ImageQuality = Literal["0.5K", "1K", "2K", "4K"]


class ImageFields(TypedDict, total=False):
    """The keyword fields of ``generate``/``submit`` (``**fields``), typed for mypy and pyright.

    A size or quality this SDK does not know yet still goes through an :class:`ImageRequest` built by hand.
    """

    model: str
    size: ImageSize
    quality: ImageQuality
    image_urls: Iterable[str]
    callback_url: str
    model_params: Mapping[str, Any]
    extra: Mapping[str, Any]


def _check_callback_url(url: str) -> None:
    if len(url) > _MAX_CALLBACK_URL:
        raise ValidationError("callback_url", f"must be at most {_MAX_CALLBACK_URL} characters, got {len(url)}")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValidationError("callback_url", f"must use https://, got {parts.scheme or 'no'} scheme")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValidationError("callback_url", "has no host")
    if host == "localhost" or host.endswith(".localhost"):
        raise ValidationError("callback_url", f"must not point at loopback host {host!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return  # a DNS name: the API resolves it, we do not
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_reserved:
        raise ValidationError("callback_url", f"must not point at a private or loopback address ({host})")


def _check_image_url(index: int, url: object) -> None:
    field = f"image_urls[{index}]"
    if not isinstance(url, str) or not url:
        raise ValidationError(field, f"must be a non-empty URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(field, f"must be an http(s) URL the API can download, got {url[:100]!r}")
    ext = posixpath.splitext(unquote(parts.path))[1].lower()
    # Only a path that names an extension can be checked; signed URLs often carry none.
    if ext and ext not in _IMAGE_EXTENSIONS:
        raise ValidationError(field, f"file type {ext!r} is not one of {', '.join(sorted(_IMAGE_EXTENSIONS))}")


def _to_url_tuple(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        # A bare string would otherwise become a tuple of characters.
        return (value,)
    if isinstance(value, (Mapping, bytes)) or not isinstance(value, Iterable):
        raise ValidationError("image_urls", f"must be a URL or a list of URLs, got {type(value).__name__}")
    return tuple(value)


def _to_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not value:
        return NOTHING_EXTRA
    if not isinstance(value, Mapping):
        raise ValidationError("extra", f"must be a mapping of body fields, got {type(value).__name__}")
    return dict(value)


@attrs.frozen
class ImageRequest:
    """A request to generate images. Documented limits of known models are checked on creation.

    ``extra`` carries body fields this SDK does not know; unknown models are not checked.
    Raises :class:`~evolink_async.ValidationError` (a ``ValueError``) naming the field at fault.
    """

    prompt: str
    model: str = attrs.field(default=DEFAULT_MODEL, kw_only=True)
    size: str | None = attrs.field(default=None, kw_only=True)
    quality: str | None = attrs.field(default=None, kw_only=True)
    image_urls: tuple[str, ...] = attrs.field(default=(), converter=_to_url_tuple, kw_only=True)
    callback_url: str | None = attrs.field(default=None, kw_only=True)
    model_params: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(
        default=NOTHING_EXTRA, converter=_to_mapping, kw_only=True, repr=lambda extra: repr(dict(extra))
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValidationError("model", "must be a non-empty string")
        if not isinstance(self.prompt, str):
            raise ValidationError("prompt", f"must be a string, got {type(self.prompt).__name__}")
        if not self.prompt.strip():
            raise ValidationError("prompt", "must not be empty")
        rules = KNOWN_MODELS.get(self.model)
        if rules is not None:
            if len(self.prompt) > rules.prompt_max:
                raise ValidationError(
                    "prompt",
                    f"is {len(self.prompt)} characters; {self.model} accepts at most {rules.prompt_max}",
                )
            if self.size is not None and rules.sizes is not None and self.size not in rules.sizes:
                raise ValidationError(
                    "size", f"{self.size!r} is not one of {', '.join(sorted(rules.sizes))} for {self.model}"
                )
            if self.quality is not None and rules.qualities is not None and self.quality not in rules.qualities:
                raise ValidationError(
                    "quality",
                    f"{self.quality!r} is not one of {', '.join(sorted(rules.qualities))} for {self.model}",
                )
            if len(self.image_urls) > rules.max_image_urls:
                raise ValidationError(
                    "image_urls",
                    f"has {len(self.image_urls)} URLs; {self.model} accepts at most {rules.max_image_urls}",
                )
        for field, value in (("size", self.size), ("quality", self.quality)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(field, f"must be a string, got {type(value).__name__}")
        for i, url in enumerate(self.image_urls):
            _check_image_url(i, url)
        if self.callback_url is not None:
            if not isinstance(self.callback_url, str):
                raise ValidationError("callback_url", "must be a string")
            _check_callback_url(self.callback_url)
        if self.model_params is not None and not isinstance(self.model_params, Mapping):
            raise ValidationError("model_params", "must be a mapping")
        for field, body in (("model_params", self.model_params), ("extra", self.extra)):
            if body:  # checked here, not when it is sent: nothing is spent on a body that cannot be written
                try:
                    json.dumps(body, allow_nan=False)
                except (TypeError, ValueError, RecursionError) as exc:
                    raise ValidationError(field, f"must be JSON: {exc}") from None
        clash = set(self.extra) & {f.name for f in attrs.fields(ImageRequest)}
        if clash:
            name = sorted(clash)[0]
            raise ValidationError(f"extra[{name!r}]", f"duplicates the {name} argument; set it there instead")
