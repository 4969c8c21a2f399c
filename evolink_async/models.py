"""Frozen data classes for what crosses the wire. They know nothing of JSON: ``_converter`` does that."""

from __future__ import annotations

import enum
import io
import ipaddress
import json
import math
import os
import posixpath
import types
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, TypeAlias, TypedDict
from urllib.parse import unquote, urlsplit

import attrs

from .errors import ValidationError, is_retryable_code

__all__ = (
    "DEFAULT_MODEL",
    "AudioRequest",
    "Cost",
    "Credits",
    "FileInfo",
    "FilePage",
    "FileQuota",
    "ImageFields",
    "ImageQuality",
    "ImageRequest",
    "ImageSize",
    "ImageSource",
    "ModelRules",
    "Request",
    "ResultItem",
    "Task",
    "TaskError",
    "TaskInfo",
    "TaskStatus",
    "TaskSummary",
    "UploadedFile",
    "Usage",
    "VideoRequest",
    "is_local_source",
    "is_retryable_code",
    "sniff_image_type",
)

DEFAULT_MODEL = "gemini-3-pro-image-preview"

_BASE_SIZES = frozenset({"auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
_BASE_QUALITIES = frozenset({"1K", "2K", "4K"})
_IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".webp"})
_MAX_CALLBACK_URL = 2048
_MB = 1024 * 1024


@attrs.frozen(kw_only=True)
class ModelRules:
    """The documented request limits of one model; ``None`` means "not checked"."""

    prompt_max: int
    sizes: frozenset[str] | None
    qualities: frozenset[str] | None
    max_image_urls: int
    max_image_bytes: int | None = None


#: Models whose documented limits are checked before sending. Other models pass through unchecked.
KNOWN_MODELS: Mapping[str, ModelRules] = {
    "gemini-3-pro-image-preview": ModelRules(
        prompt_max=2000, sizes=_BASE_SIZES, qualities=_BASE_QUALITIES, max_image_urls=10, max_image_bytes=10 * _MB
    ),
    "gemini-3.1-flash-image-preview": ModelRules(
        prompt_max=2000,
        sizes=_BASE_SIZES | {"1:4", "4:1", "1:8", "8:1"},
        qualities=_BASE_QUALITIES | {"0.5K"},
        max_image_urls=14,
        max_image_bytes=20 * _MB,
    ),
    "gemini-2.5-flash-image": ModelRules(
        prompt_max=1000, sizes=None, qualities=None, max_image_urls=10, max_image_bytes=10 * _MB
    ),
}


#: The ``extra`` of a model with no unknown keys: one shared read-only mapping, not an empty dict per object
#: (a batch holds thousands of tasks, each with several sub-objects).
NOTHING_EXTRA: Mapping[str, Any] = types.MappingProxyType({})


class TaskStatus(enum.StrEnum):
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
class ResultItem:
    """One item of ``result_data`` (audio tasks, some video tasks): a file with what describes it.

    ``audio_url``/``video_url`` are the result files (also listed in ``Task.results``); ``image_url`` is a cover
    picture and ``stream_audio_url`` a stream, neither of them a result.
    """

    result_id: str | None = None
    audio_url: str | None = None
    video_url: str | None = None
    stream_audio_url: str | None = None
    image_url: str | None = None
    title: str | None = None
    tags: str | None = None
    duration: float | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)

    @property
    def url(self) -> str | None:
        """The result file of this item: its audio, else its video."""
        return self.audio_url or self.video_url


@attrs.frozen(kw_only=True)
class Task:
    """One generation task (image, video or audio) as last seen. Every field but ``id`` and ``status`` may be missing.

    ``results`` always lists the task's result files: the API's ``results``, or, for a task that has only
    ``result_data`` (audio), each item's audio (or video) URL in order. ``type`` is ``image``, ``video`` or ``audio``.

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
    result_data: tuple[ResultItem, ...] = ()
    error: TaskError | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)
    #: The request id of the answer this state came from (``x-request-id``), for EvoLink's support; not compared.
    request_id: str | None = attrs.field(default=None, eq=False, repr=False)
    #: True on the task a create returned when the server replayed an earlier create with the same
    #: Idempotency-Key (nothing was charged again); False on reads. Not compared.
    replayed: bool = attrs.field(default=False, eq=False, repr=False)

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
        return _utc(self.created)


@attrs.frozen(kw_only=True)
class TaskSummary:
    """One task of ``client.tasks.list()`` (``GET /v1/tasks``): what the listing tells, without result links.

    Read the whole task with ``client.get_task(summary.id)`` (or await it with ``client.wait(summary.id)``).
    ``raw_status`` and ``extra`` keep what the server sent, as on :class:`Task`.
    """

    id: str
    status: TaskStatus
    raw_status: str
    model: str | None = None
    type: str | None = None
    progress: int | None = None
    created: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)

    @property
    def is_final(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_final

    @property
    def created_at(self) -> datetime | None:
        """``created_at`` as an aware UTC datetime."""
        return _utc(self.created)


def _utc(seconds: int | None) -> datetime | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
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


@attrs.frozen(kw_only=True)
class UploadedFile:
    """A file in EvoLink's files API (``client.upload``): use ``url`` in ``image_urls``. Files expire after 72 h."""

    id: str
    url: str
    download_url: str | None = None
    name: str | None = None
    original_name: str | None = None
    size: int | None = None
    mime_type: str | None = None
    upload_path: str | None = None
    uploaded_at: str | None = None
    expires_at: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class FileInfo:
    """One file of ``client.files.list()``."""

    id: str
    name: str | None = None
    size: int | None = None
    uploaded_at: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class FilePage:
    """A page of ``client.files.list()``: ``total`` files in all, ``files`` on this page."""

    total: int | None
    files: tuple[FileInfo, ...]


@attrs.frozen(kw_only=True)
class FileQuota:
    """``client.files.quota()``: how many files the account holds and may hold."""

    used_files: int | None = None
    max_files: int | None = None
    remain_files: int | None = None
    user_group: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NOTHING_EXTRA, repr=False)


#: Sizes the known models document (each model accepts its own subset; checked when a request is built).
ImageSize = Literal[
    "auto", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"
]
#: Qualities the known models document.
ImageQuality = Literal["0.5K", "1K", "2K", "4K"]

#: A reference image: a URL the API downloads, or a local file uploaded first through the files API
#: (a path, the bytes, or a binary file object) — see :meth:`AsyncClient.upload`.
ImageSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | IO[bytes]


class ImageFields(TypedDict, total=False):
    """The keyword fields of ``generate``/``submit`` (``**fields``), typed for mypy and pyright.

    A size or quality this SDK does not know yet still goes through an :class:`ImageRequest` built by hand.
    """

    model: str
    size: ImageSize
    quality: ImageQuality
    image_urls: Iterable[ImageSource]
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


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(head: bytes) -> str | None:
    """The image type the first bytes of a file show (png, jpeg, gif, webp), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    return None


#: Image types a generation accepts as a reference (the files API also takes GIF; the image models do not).
_REFERENCE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


def is_local_source(item: object) -> bool:
    """Whether an ``image_urls`` item is a local file to upload first (a path, bytes, a file object)."""
    return not isinstance(item, str)


def _check_local_file(field: str, item: os.PathLike[str], max_bytes: int | None) -> None:
    path = Path(item)
    if not path.exists():
        raise ValidationError(field, f"{str(path)!r} does not exist")
    if not path.is_file():
        raise ValidationError(field, f"{str(path)!r} is not a file")
    # Its type is read from its first bytes when it is uploaded (a name proves nothing); its size is known now.
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValidationError(field, f"{str(path)!r} is {size} bytes; the model accepts at most {max_bytes}")


def _check_local_bytes(field: str, data: bytes | bytearray, max_bytes: int | None) -> None:
    mime = sniff_image_type(bytes(data[:16]))
    if mime not in _REFERENCE_TYPES:
        raise ValidationError(field, f"{len(data)} bytes that are not a PNG, JPEG or WebP image")
    if max_bytes is not None and len(data) > max_bytes:
        raise ValidationError(field, f"is {len(data)} bytes; the model accepts at most {max_bytes}")


def _check_image_source(index: int, item: object, max_bytes: int | None = None) -> None:
    """An ``image_urls`` item: an http(s) URL, or a local file that is there and looks like an image."""
    field = f"image_urls[{index}]"
    if isinstance(item, os.PathLike):
        _check_local_file(field, item, max_bytes)
    elif isinstance(item, (bytes, bytearray)):
        _check_local_bytes(field, item, max_bytes)
    elif isinstance(item, io.TextIOBase):
        raise ValidationError(field, "is a text file object: open the image in binary mode ('rb')")
    elif hasattr(item, "read") and not isinstance(item, str):
        return  # a binary file object: its type and size are checked when it is read, before the upload
    else:
        _check_image_url(field, item)


def _check_image_url(field: str, url: object) -> None:
    if not isinstance(url, str) or not url:
        raise ValidationError(
            field, f"must be a URL, a path, bytes or a binary file object, got {type(url).__name__}: {url!r:.80}"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(
            field, f"must be an http(s) URL the API can download (or a pathlib.Path to upload), got {url[:100]!r}"
        )
    ext = posixpath.splitext(unquote(parts.path))[1].lower()
    # Only a path that names an extension can be checked; signed URLs often carry none.
    if ext and ext not in _IMAGE_EXTENSIONS:
        raise ValidationError(field, f"file type {ext!r} is not one of {', '.join(sorted(_IMAGE_EXTENSIONS))}")


def _to_source_tuple(value: Iterable[ImageSource] | ImageSource | None) -> tuple[ImageSource, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes, bytearray, os.PathLike)) or hasattr(value, "read"):
        # One source given bare: a string would otherwise become a tuple of characters.
        return (value,)  # type: ignore[return-value]  # narrowed above (file objects by duck typing)
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ValidationError("image_urls", f"must be a URL or a list of URLs or files, got {type(value).__name__}")
    return tuple(value)


def _to_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not value:
        return NOTHING_EXTRA
    if not isinstance(value, Mapping):
        raise ValidationError("extra", f"must be a mapping of body fields, got {type(value).__name__}")
    return dict(value)


def _extra_field() -> Any:
    return attrs.field(default=NOTHING_EXTRA, converter=_to_mapping, kw_only=True, repr=lambda extra: repr(dict(extra)))


def _check_model(model: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ValidationError("model", "must be a non-empty string")


def _check_prompt(prompt: object, limit: int | None, model: str, *, may_be_empty: bool = False) -> None:
    if not isinstance(prompt, str):
        raise ValidationError("prompt", f"must be a string, got {type(prompt).__name__}")
    if not prompt.strip() and not may_be_empty:
        raise ValidationError("prompt", "must not be empty")
    if limit is not None and len(prompt) > limit:
        raise ValidationError("prompt", f"is {len(prompt)} characters; {model} accepts at most {limit}")


def _check_choice(field: str, value: object, choices: Iterable[str] | None, model: str | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if choices is not None and value not in choices:
        where = f" for {model}" if model else ""
        raise ValidationError(field, f"{value!r} is not one of {', '.join(sorted(choices))}{where}")


def _check_type(field: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    # bool is an int: a number field given True is refused too.
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind,))):
        raise ValidationError(field, f"must be {what}, got {type(value).__name__}")


def _check_text(field: str, value: object, limit: int) -> None:
    _check_type(field, value, str, "a string")
    if isinstance(value, str) and len(value) > limit:
        raise ValidationError(field, f"is {len(value)} characters; at most {limit}")


def _check_common(request: Any) -> None:
    """What every request shares: image sources, callback URL, JSON bodies, and extra keys that shadow fields."""
    max_bytes = getattr(request, "_max_image_bytes", None)
    for i, item in enumerate(getattr(request, "image_urls", ())):
        _check_image_source(i, item, max_bytes)
    if request.callback_url is not None:
        if not isinstance(request.callback_url, str):
            raise ValidationError("callback_url", "must be a string")
        _check_callback_url(request.callback_url)
    params = getattr(request, "model_params", None)
    if params is not None and not isinstance(params, Mapping):
        raise ValidationError("model_params", "must be a mapping")
    for field, body in (("model_params", params), ("extra", request.extra)):
        if body:  # checked here, not when it is sent: nothing is spent on a body that cannot be written
            try:
                json.dumps(body, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise ValidationError(field, f"must be JSON: {exc}") from None
    clash = set(request.extra) & {f.name for f in attrs.fields(type(request))}
    if clash:
        name = sorted(clash)[0]
        raise ValidationError(f"extra[{name!r}]", f"duplicates the {name} argument; set it there instead")


@attrs.frozen
class ImageRequest:
    """A request to generate images (``POST /v1/images/generations``). Documented limits of known models are
    checked on creation.

    ``image_urls`` items are URLs, or local files (a ``pathlib.Path``, bytes, a binary file object) that the
    client uploads through the files API before the create. ``extra`` carries body fields this SDK does not
    know; unknown models are not checked. Raises :class:`~evolink_async.ValidationError` (a ``ValueError``)
    naming the field at fault.
    """

    kind: ClassVar[str] = "image"
    endpoint: ClassVar[str] = "/v1/images/generations"

    prompt: str
    model: str = attrs.field(default=DEFAULT_MODEL, kw_only=True)
    size: str | None = attrs.field(default=None, kw_only=True)
    quality: str | None = attrs.field(default=None, kw_only=True)
    image_urls: tuple[ImageSource, ...] = attrs.field(default=(), converter=_to_source_tuple, kw_only=True)
    callback_url: str | None = attrs.field(default=None, kw_only=True)
    model_params: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = _extra_field()

    @property
    def _max_image_bytes(self) -> int | None:
        rules = KNOWN_MODELS.get(self.model)
        return rules.max_image_bytes if rules is not None else None

    def __attrs_post_init__(self) -> None:
        _check_model(self.model)
        rules = KNOWN_MODELS.get(self.model)
        _check_prompt(self.prompt, rules.prompt_max if rules else None, self.model)
        _check_choice("size", self.size, rules.sizes if rules else None, self.model)
        _check_choice("quality", self.quality, rules.qualities if rules else None, self.model)
        if rules is not None and len(self.image_urls) > rules.max_image_urls:
            raise ValidationError(
                "image_urls", f"has {len(self.image_urls)} URLs; {self.model} accepts at most {rules.max_image_urls}"
            )
        _check_common(self)


VIDEO_QUALITIES = frozenset({"480p", "720p", "1080p", "4k"})
VIDEO_ASPECT_RATIOS = frozenset({"16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"})
_VIDEO_PROMPT_MAX = 5000
_VIDEO_MAX_IMAGES = 9


@attrs.frozen
class VideoRequest:
    """A request to generate a video (``POST /v1/videos/generations``): Sora, Veo, Kling, Seedance, Hailuo, Wan….

    ``model`` is required (prices differ widely). ``duration`` is in seconds (each model has its own range,
    checked by the API); ``image_urls`` (up to 9, URLs or local files) make it image-to-video. Fields this SDK
    does not know go in ``extra``.
    """

    kind: ClassVar[str] = "video"
    endpoint: ClassVar[str] = "/v1/videos/generations"

    prompt: str
    model: str = attrs.field(kw_only=True)
    duration: float | None = attrs.field(default=None, kw_only=True)
    quality: str | None = attrs.field(default=None, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    image_urls: tuple[ImageSource, ...] = attrs.field(default=(), converter=_to_source_tuple, kw_only=True)
    generate_audio: bool | None = attrs.field(default=None, kw_only=True)
    callback_url: str | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = _extra_field()

    def __attrs_post_init__(self) -> None:
        _check_model(self.model)
        _check_prompt(self.prompt, _VIDEO_PROMPT_MAX, self.model)
        _check_type("duration", self.duration, (int, float), "a number of seconds")
        if self.duration is not None and not 0 < self.duration < math.inf:
            raise ValidationError("duration", f"must be a finite number > 0 of seconds, got {self.duration!r}")
        _check_choice("quality", self.quality, VIDEO_QUALITIES)
        _check_choice("aspect_ratio", self.aspect_ratio, VIDEO_ASPECT_RATIOS)
        _check_type("generate_audio", self.generate_audio, bool, "True or False")
        if len(self.image_urls) > _VIDEO_MAX_IMAGES:
            raise ValidationError("image_urls", f"has {len(self.image_urls)} images; at most {_VIDEO_MAX_IMAGES}")
        _check_common(self)


_AUDIO_SIMPLE_PROMPT_MAX = 500
_AUDIO_LYRICS_MAX = 5000


@attrs.frozen
class AudioRequest:
    """A request to generate music (``POST /v1/audios/generations``, Suno models).

    Simple mode: ``prompt`` describes the song (≤ 500 characters). ``custom_mode=True``: ``prompt`` holds the
    lyrics (``[Verse]``/``[Chorus]`` tags; may be empty when ``instrumental``), and ``style`` and ``title`` are
    required. ``model`` is required. Fields this SDK does not know go in ``extra``.
    """

    kind: ClassVar[str] = "audio"
    endpoint: ClassVar[str] = "/v1/audios/generations"

    prompt: str
    model: str = attrs.field(kw_only=True)
    custom_mode: bool | None = attrs.field(default=None, kw_only=True)
    instrumental: bool | None = attrs.field(default=None, kw_only=True)
    style: str | None = attrs.field(default=None, kw_only=True)
    title: str | None = attrs.field(default=None, kw_only=True)
    duration: float | None = attrs.field(default=None, kw_only=True)
    negative_tags: str | None = attrs.field(default=None, kw_only=True)
    vocal_gender: Literal["m", "f"] | None = attrs.field(default=None, kw_only=True)
    callback_url: str | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = _extra_field()

    def __attrs_post_init__(self) -> None:
        _check_model(self.model)
        for field in ("custom_mode", "instrumental"):
            _check_type(field, getattr(self, field), bool, "True or False")
        custom = bool(self.custom_mode)
        limit = _AUDIO_LYRICS_MAX if custom else _AUDIO_SIMPLE_PROMPT_MAX
        _check_prompt(self.prompt, limit, self.model, may_be_empty=custom and bool(self.instrumental))
        _check_text("style", self.style, 1000)
        _check_text("title", self.title, 80)
        _check_text("negative_tags", self.negative_tags, 1000)
        if custom:
            for field in ("style", "title"):
                if not getattr(self, field):
                    raise ValidationError(field, "is required in custom mode (custom_mode=True)")
        _check_type("duration", self.duration, (int, float), "a number of seconds")
        if self.duration is not None and not 30 <= self.duration <= 240:
            raise ValidationError("duration", f"must be between 30 and 240 seconds, got {self.duration!r}")
        _check_choice("vocal_gender", self.vocal_gender, ("m", "f"))
        if self.vocal_gender is not None and not custom:
            raise ValidationError("vocal_gender", "applies in custom mode only (custom_mode=True)")
        _check_common(self)


#: Any generation request; its type picks the endpoint (``Request.endpoint``) and the task kind.
Request: TypeAlias = ImageRequest | VideoRequest | AudioRequest
#: The request class of each task kind (``Task.type``), e.g. for a batch file's ``"type": "video"``.
REQUEST_KINDS: Mapping[str, type[ImageRequest] | type[VideoRequest] | type[AudioRequest]] = {
    "image": ImageRequest,
    "video": VideoRequest,
    "audio": AudioRequest,
}
