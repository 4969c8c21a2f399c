"""The only cattrs converter: JSON-shaped data in and out of the models, configured in one function.

Reading is lenient the way the API needs: every field but ``id`` and ``status`` may be missing, unknown
keys are kept in ``extra``, unknown statuses are kept (``UNKNOWN`` + ``raw_status``), ``error.code`` may
be a string or an integer. An optional sub-object of the wrong shape is kept raw in ``extra`` rather than
crashing; what cannot be read at all raises :class:`MalformedResponseError`, never a bare ``KeyError``.
Writing is the mirror image: ``unstructure(structure(x))`` gives back the API's shape.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from ._text import id_problem, printable
from .errors import MalformedResponseError
from .models import (
    NOTHING_EXTRA,
    AudioRequest,
    Cost,
    Credits,
    FileInfo,
    FilePage,
    FileQuota,
    ImageRequest,
    Request,
    ResultItem,
    Task,
    TaskError,
    TaskInfo,
    TaskStatus,
    TaskSummary,
    UploadedFile,
    Usage,
    VideoRequest,
    is_local_source,
)

__all__ = (
    "batch_items",
    "source_label",
    "converter",
    "make_converter",
    "request_to_wire",
    "structure_credits",
    "structure_file_page",
    "structure_quota",
    "structure_uploaded",
    "structure_task",
    "structure_task_page",
    "task_to_wire",
)

log = logging.getLogger("evolink_async")

T = TypeVar("T")

_TASK_KNOWN = frozenset(
    {
        "id",
        "status",
        "progress",
        "model",
        "created",
        "object",
        "type",
        "task_info",
        "usage",
        "results",
        "result_data",
        "error",
    }
)
_BIG = 10**300  # an int beyond a float's range is no count of anything
_STATUSES = {status.value: status for status in TaskStatus}
_OPTIONAL_OBJECTS: tuple[tuple[str, type], ...] = (("task_info", TaskInfo), ("usage", Usage), ("error", TaskError))


# -- lenient scalars -------------------------------------------------------------------------------------


def _lenient_float(value: Any, _: type = float) -> float | None:
    kind = type(value)
    if kind is float:  # the common cases first: this runs for several fields of every status read
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value) if -_BIG < value < _BIG else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) else None
    except (ValueError, OverflowError):
        return None
    # Infinity and NaN parse as JSON numbers but are no count of anything: treat them as absent.
    return number if number is not None and math.isfinite(number) else None


def _lenient_bool(value: Any, _: type = bool) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    return None


def _lenient_str(value: Any, _: type = str) -> str | None:
    if type(value) is str:
        return value
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _progress(value: Any) -> int | None:
    if type(value) is int:
        return max(0, min(100, value))
    number = _lenient_float(value)
    return None if number is None else max(0, min(100, int(number)))


# -- structure hooks ---------------------------------------------------------------------------------------


def _with_extra(conv: cattrs.Converter, cls: type[T]) -> Callable[[Any, type], T]:
    """A structure hook for a model with an ``extra`` field: known keys parsed, the rest kept."""
    known = {f.name for f in attrs.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
    inner = make_dict_structure_fn(cls, conv)

    def hook(value: Any, _: type) -> T:
        if not isinstance(value, Mapping):
            raise TypeError(f"{cls.__name__} must be an object, got {type(value).__name__}")
        if value.keys() <= known:  # the usual case: nothing to keep aside
            return inner(value, cls)
        obj = inner({k: v for k, v in value.items() if k in known}, cls)
        return attrs.evolve(obj, extra={k: v for k, v in value.items() if k not in known})  # type: ignore[misc]

    return hook


def _structure_error(value: Any, _: type) -> TaskError:
    if isinstance(value, str):
        return TaskError(message=value)
    if not isinstance(value, Mapping):
        raise TypeError(f"error must be an object, got {type(value).__name__}")
    code = value.get("code")
    return TaskError(
        code=None if code is None or isinstance(code, (dict, list)) else str(code),
        message=_lenient_str(value.get("message")),
        type=_lenient_str(value.get("type")),
        extra={k: v for k, v in value.items() if k not in ("code", "message", "type")},
    )


def _results(data: Mapping[str, Any], task_id: str) -> tuple[str, ...]:
    results = data.get("results")
    if results is None:
        return ()
    if isinstance(results, str):
        return (results,)
    if isinstance(results, list) and all(isinstance(u, str) for u in results):
        return tuple(results)
    # Never silently drop a result: a shape we cannot read is an error, not an empty list.
    raise MalformedResponseError(f"task results are not a list of URLs: {str(results)[:200]}", task_id=task_id)


def _result_data(
    hook: Callable[[Any, type], ResultItem], data: Mapping[str, Any], task_id: str
) -> tuple[ResultItem, ...]:
    items = data.get("result_data")
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        # Never silently drop a result: a shape we cannot read is an error, not an empty list.
        raise MalformedResponseError(f"task result_data is not a list of objects: {str(items)[:200]}", task_id=task_id)
    return tuple(hook(_joined_tags(item), ResultItem) for item in items)


def _joined_tags(item: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = item.get("tags")
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        return {**item, "tags": ", ".join(tags)}
    return item


# Parsed sub-objects by value: the task_info and usage of pending tasks repeat across a batch (and across its
# reads), and these models are frozen, so thousands of tasks in flight share a few instances instead of
# holding two each (less memory, and fewer objects for the garbage collector to walk).
_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_MAX = 1024


def _shared_part(hook: Callable[[Any, type], Any], key: str, cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        return hook(value, cls)
    try:
        # The value's type is part of the key: True == 1, yet they do not parse alike.
        ident = (key, *((k, v.__class__, v) for k, v in value.items()))
        shared = _SHARED.get(ident)
    except TypeError:  # nested objects (a settled cost): not shared
        return hook(value, cls)
    if shared is None:
        shared = hook(value, cls)
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[ident] = shared
    return shared


def _structure_task(
    parts: Mapping[str, Callable[[Any, type], Any]],
    item_hook: Callable[[Any, type], ResultItem],
    data: Any,
    request_id: str | None = None,
) -> Task:
    """``parts``: the structure hook of each optional sub-object, looked up once (not per task)."""
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"expected a task object, got {type(data).__name__}")
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MalformedResponseError(f"task object has no string id: {str(data)[:200]}")
    problem = id_problem(task_id)
    if problem is not None:
        # It becomes a URL path, a file name and a log word: one that cannot be read back is no id.
        raise MalformedResponseError(f"task id {problem}")
    raw_status = data.get("status")
    if not isinstance(raw_status, str):
        raise MalformedResponseError(f"task object has no string status: {str(data)[:200]}", task_id=task_id)
    status = _STATUSES.get(raw_status) or _STATUSES.get(raw_status.lower(), TaskStatus.UNKNOWN)
    extra: dict[str, Any] | None = (
        None if data.keys() <= _TASK_KNOWN else {k: v for k, v in data.items() if k not in _TASK_KNOWN}
    )
    parsed: dict[str, Any] = {}
    for key, cls in _OPTIONAL_OBJECTS:
        value = data.get(key)
        if value is None:
            continue
        try:
            parsed[key] = _shared_part(parts[key], key, cls, value)
        except Exception as exc:  # an optional part we cannot read is kept raw, not fatal
            log.debug("task %s: could not read %s (%s); kept in Task.extra", task_id, key, printable(str(exc)))
            extra = {**(extra or {}), key: value}
    created = _lenient_float(data.get("created"))
    results = _results(data, task_id)
    result_data = _result_data(item_hook, data, task_id) if "result_data" in data else ()
    if not results and result_data:
        # An audio task lists its files only in result_data: they are its results all the same.
        results = tuple(item.url for item in result_data if item.url)
    return Task(
        id=task_id,
        status=status,
        raw_status=raw_status,
        progress=_progress(data.get("progress")),
        model=_lenient_str(data.get("model")),
        created=int(created) if created is not None else None,
        object=_lenient_str(data.get("object")),
        type=_lenient_str(data.get("type")),
        results=results,
        result_data=result_data,
        extra=NOTHING_EXTRA if extra is None else extra,
        request_id=request_id,
        **parsed,
    )


def _structure_credits(data: Any, _: type) -> Credits:
    body = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(body, Mapping):
        raise MalformedResponseError("credits answer has no 'data' object")
    user = body.get("user")
    token = body.get("token")
    user = user if isinstance(user, Mapping) else {}
    token = token if isinstance(token, Mapping) else {}
    return Credits(
        remaining=_lenient_float(user.get("remaining_credits")),
        used=_lenient_float(user.get("used_credits")),
        key_remaining=_lenient_float(token.get("remaining_credits")),
        key_used=_lenient_float(token.get("used_credits")),
        key_unlimited=_lenient_bool(token.get("unlimited_credits")),
        extra={k: v for k, v in body.items() if k not in ("user", "token")},
    )


# -- unstructure hooks -------------------------------------------------------------------------------------


def source_label(item: Any) -> str:
    """An ``image_urls`` item as text: a URL as it is; a local file as what identifies it (a batch journal's
    fingerprint). Local files never reach a create: the engine uploads them and sends their URLs."""
    if not is_local_source(item):
        return str(item)
    if isinstance(item, os.PathLike):
        return f"file:{os.path.abspath(os.fspath(item))}"
    if isinstance(item, (bytes, bytearray)):
        return f"bytes:sha256:{hashlib.sha256(item).hexdigest()}"
    name = getattr(item, "name", None)
    if isinstance(name, str) and name:
        return f"file:{os.path.abspath(name)}"
    return f"file-object:{_content_hash(item)}"


def _content_hash(item: Any) -> str:
    """A nameless file object (a BytesIO) by its content, read from where it stands and put back there."""
    try:
        start = item.tell()
        digest = hashlib.sha256(item.read()).hexdigest()
        item.seek(start)
    except (AttributeError, OSError, ValueError, TypeError):
        return f"unreadable-{id(item)}"
    return f"sha256:{digest}"


# The body fields of each request class, in order, looked up once (not per create of a large batch).
_REQUEST_FIELDS = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.name != "extra")
    for cls in (ImageRequest, VideoRequest, AudioRequest)
}


def _unstructure_request(req: Request) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in _REQUEST_FIELDS[type(req)]:
        value = getattr(req, name)
        if value is None:
            continue
        if name == "image_urls":
            if not value:
                continue
            value = [source_label(item) for item in value]
        elif name == "model_params":
            value = dict(value)
        body[name] = value
    body.update(req.extra)
    return body


def _unstructure_with_extra(obj: Any) -> dict[str, Any]:
    """A sub-object back to JSON: its ``extra`` keys merged in, absent (None) fields left out."""
    body: dict[str, Any] = dict(obj.extra)
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if field.name == "extra" or value is None:
            continue
        body[field.name] = _unstructure_with_extra(value) if attrs.has(type(value)) else value
    return body


def _unstructure_task(task: Task) -> dict[str, Any]:
    body: dict[str, Any] = dict(task.extra)
    body.update({"id": task.id, "status": task.raw_status})
    for key in ("progress", "model", "created", "object", "type"):
        value = getattr(task, key)
        if value is not None:
            body[key] = value
    for key, part in (("task_info", task.task_info), ("usage", task.usage), ("error", task.error)):
        if part is not None:
            body[key] = _unstructure_with_extra(part)
    if task.results:
        body["results"] = list(task.results)
    if task.result_data:
        body["result_data"] = [_unstructure_with_extra(item) for item in task.result_data]
    return body


def make_converter() -> cattrs.Converter:
    """The converter, configured here and nowhere else: lenient scalars, models with ``extra``, tasks."""
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(float | None, _lenient_float)
    conv.register_structure_hook(bool | None, _lenient_bool)
    conv.register_structure_hook(str | None, _lenient_str)
    for cls in (TaskInfo, Cost, Usage):
        conv.register_structure_hook(cls, _with_extra(conv, cls))
    conv.register_structure_hook(TaskError, _structure_error)
    conv.register_structure_hook(ResultItem, _with_extra(conv, ResultItem))
    parts = {key: conv.get_structure_hook(cls) for key, cls in _OPTIONAL_OBJECTS}
    item_hook = conv.get_structure_hook(ResultItem)
    conv.register_structure_hook(Task, lambda data, _: _structure_task(parts, item_hook, data))
    conv.register_structure_hook(Credits, _structure_credits)
    for request_cls in _REQUEST_FIELDS:
        conv.register_unstructure_hook(request_cls, _unstructure_request)
    conv.register_unstructure_hook(Task, _unstructure_task)
    return conv


converter = make_converter()
# Looked up once: a task is read per status read, and the converter's dispatch would cost each time.
# (With the request id of the answer, which the converter's hook has no way to pass.)
_task_parts = {key: converter.get_structure_hook(cls) for key, cls in _OPTIONAL_OBJECTS}
_item_hook = converter.get_structure_hook(ResultItem)


# -- the functions the rest of the package calls -------------------------------------------------------------


def structure_task(data: Any, *, request_id: str | None = None) -> Task:
    """A ``Task`` from one decoded task object; raises MalformedResponseError if it has no id/status."""
    try:
        return _structure_task(_task_parts, _item_hook, data, request_id)
    except MalformedResponseError as exc:
        exc.request_id = exc.request_id or request_id
        raise


def structure_credits(data: Any, *, request_id: str | None = None) -> Credits:
    """``Credits`` from a ``GET /v1/credits`` answer."""
    try:
        return converter.structure(data, Credits)
    except MalformedResponseError as exc:
        exc.request_id = exc.request_id or request_id
        raise


def _lenient_int(value: Any) -> int | None:
    number = _lenient_float(value)
    return None if number is None else int(number)


def _renamed(data: Mapping[str, Any], names: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fields by our names, the keys we do not know) of a files-API object whose keys ``names`` maps."""
    fields = {ours: data.get(theirs) for theirs, ours in names.items()}
    return fields, {k: v for k, v in data.items() if k not in names}


_UPLOADED_NAMES = {
    "file_id": "id",
    "file_url": "url",
    "download_url": "download_url",
    "file_name": "name",
    "original_name": "original_name",
    "file_size": "size",
    "mime_type": "mime_type",
    "upload_path": "upload_path",
    "upload_time": "uploaded_at",
    "expires_at": "expires_at",
}


def _check_file_id(file_id: str) -> None:
    problem = id_problem(file_id)
    if problem is not None:  # deleting it would send DELETE to another path
        raise MalformedResponseError(f"file id {problem}")


def structure_uploaded(data: Any) -> UploadedFile:
    """An ``UploadedFile`` from the ``data`` of an upload answer; it must have an id and a URL."""
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"upload answer has no 'data' object: {str(data)[:200]}")
    fields, extra = _renamed(data, _UPLOADED_NAMES)
    if not isinstance(fields["id"], str) or not isinstance(fields["url"], str) or not fields["url"]:
        raise MalformedResponseError(f"upload answer has no file_id and file_url: {str(data)[:200]}")
    _check_file_id(fields["id"])
    texts = {k: _lenient_str(v) for k, v in fields.items() if k != "size"}
    return UploadedFile(**texts, size=_lenient_int(fields["size"]), extra=extra)  # type: ignore[arg-type]


def structure_file_page(data: Any) -> FilePage:
    """A ``FilePage`` from the ``data`` of a list answer."""
    files = data.get("files") if isinstance(data, Mapping) else None
    if not isinstance(files, list):
        raise MalformedResponseError(f"file list answer has no 'files' list: {str(data)[:200]}")
    infos = []
    for item in files:
        if not isinstance(item, Mapping) or not isinstance(item.get("file_id"), str):
            raise MalformedResponseError(f"file list item has no file_id: {str(item)[:200]}")
        _check_file_id(item["file_id"])
        fields, extra = _renamed(
            item, {"file_id": "id", "file_name": "name", "file_size": "size", "upload_time": "uploaded_at"}
        )
        infos.append(
            FileInfo(
                id=fields["id"],
                name=_lenient_str(fields["name"]),
                size=_lenient_int(fields["size"]),
                uploaded_at=_lenient_str(fields["uploaded_at"]),
                extra=extra,
            )
        )
    return FilePage(total=_lenient_int(data.get("total")), files=tuple(infos))


def structure_quota(data: Any) -> FileQuota:
    """A ``FileQuota`` from the ``data`` of a quota answer."""
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"quota answer has no 'data' object: {str(data)[:200]}")
    counts = ("used_files", "max_files", "remain_files")
    return FileQuota(
        **{k: _lenient_int(data.get(k)) for k in counts},
        user_group=_lenient_str(data.get("user_group")),
        extra={k: v for k, v in data.items() if k not in (*counts, "user_group")},
    )


def batch_items(data: Any, *, request_id: str | None = None) -> list[Any]:
    """The raw task objects of a ``/v1/tasks/batch`` answer (``{"data": [...]}``), to be read one by one."""
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponseError("batch answer has no 'data' list", request_id=request_id)
    return items


_SUMMARY_KNOWN = frozenset({"id", "status", "model", "type", "progress", "created_at"})


def _structure_summary(item: Any) -> TaskSummary:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
        raise MalformedResponseError(f"task list item has no string id: {str(item)[:200]}")
    raw_status = item.get("status")
    if not isinstance(raw_status, str):
        raise MalformedResponseError(f"task list item has no string status: {str(item)[:200]}", task_id=item["id"])
    status = _STATUSES.get(raw_status) or _STATUSES.get(raw_status.lower(), TaskStatus.UNKNOWN)
    created = _lenient_float(item.get("created_at"))
    extra = {k: v for k, v in item.items() if k not in _SUMMARY_KNOWN}
    return TaskSummary(
        id=item["id"],
        status=status,
        raw_status=raw_status,
        model=_lenient_str(item.get("model")),
        type=_lenient_str(item.get("type")),
        progress=_progress(item.get("progress")),
        created=int(created) if created is not None else None,
        extra=extra or NOTHING_EXTRA,
    )


def structure_task_page(data: Any, *, request_id: str | None = None) -> tuple[list[TaskSummary], int | None]:
    """The items and ``total`` of a ``GET /v1/tasks`` answer; an unreadable item is a MalformedResponseError
    (skipping it would hide a paid task from a recovery)."""
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponseError("task list answer has no 'data' list", request_id=request_id)
    try:
        summaries = [_structure_summary(item) for item in items]
    except MalformedResponseError as exc:
        exc.request_id = exc.request_id or request_id
        raise
    return summaries, _lenient_int(data.get("total"))


def request_to_wire(req: Request) -> dict[str, Any]:
    """The JSON body of the create of ``req`` (at ``req.endpoint``); local files appear as their labels."""
    body: dict[str, Any] = converter.unstructure(req)
    return body


def task_to_wire(task: Task) -> dict[str, Any]:
    """A task back in the API's JSON shape (for the batch journal); ``structure_task`` reads it again."""
    body: dict[str, Any] = converter.unstructure(task)
    return body
