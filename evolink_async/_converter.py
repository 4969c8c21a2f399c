"""The only cattrs converter: JSON-shaped data in and out of the models, configured in one function.

Reading is lenient the way the API needs: every field but ``id`` and ``status`` may be missing, unknown
keys are kept in ``extra``, unknown statuses are kept (``UNKNOWN`` + ``raw_status``), ``error.code`` may
be a string or an integer. An optional sub-object of the wrong shape is kept raw in ``extra`` rather than
crashing; what cannot be read at all raises :class:`MalformedResponseError`, never a bare ``KeyError``.
Writing is the mirror image: ``unstructure(structure(x))`` gives back the API's shape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from .errors import MalformedResponseError
from .models import NOTHING_EXTRA, Cost, Credits, ImageRequest, Task, TaskError, TaskInfo, TaskStatus, Usage

__all__ = (
    "batch_items",
    "converter",
    "make_converter",
    "request_to_wire",
    "structure_credits",
    "structure_task",
    "task_to_wire",
)

log = logging.getLogger("evolink_async")

T = TypeVar("T")

_TASK_KNOWN = frozenset(
    {"id", "status", "progress", "model", "created", "object", "type", "task_info", "usage", "results", "error"}
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


def _structure_task(parts: Mapping[str, Callable[[Any, type], Any]], data: Any) -> Task:
    """``parts``: the structure hook of each optional sub-object, looked up once (not per task)."""
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"expected a task object, got {type(data).__name__}")
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MalformedResponseError(f"task object has no string id: {str(data)[:200]}")
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
            log.debug("task %s: could not read %s (%s); kept in Task.extra", task_id, key, exc)
            extra = {**(extra or {}), key: value}
    created = _lenient_float(data.get("created"))
    return Task(
        id=task_id,
        status=status,
        raw_status=raw_status,
        progress=_progress(data.get("progress")),
        model=_lenient_str(data.get("model")),
        created=int(created) if created is not None else None,
        object=_lenient_str(data.get("object")),
        type=_lenient_str(data.get("type")),
        results=_results(data, task_id),
        extra=NOTHING_EXTRA if extra is None else extra,
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


def _unstructure_request(req: ImageRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt}
    if req.size is not None:
        body["size"] = req.size
    if req.quality is not None:
        body["quality"] = req.quality
    if req.image_urls:
        body["image_urls"] = list(req.image_urls)
    if req.callback_url is not None:
        body["callback_url"] = req.callback_url
    if req.model_params is not None:
        body["model_params"] = dict(req.model_params)
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
    parts = {key: conv.get_structure_hook(cls) for key, cls in _OPTIONAL_OBJECTS}
    conv.register_structure_hook(Task, lambda data, _: _structure_task(parts, data))
    conv.register_structure_hook(Credits, _structure_credits)
    conv.register_unstructure_hook(ImageRequest, _unstructure_request)
    conv.register_unstructure_hook(Task, _unstructure_task)
    return conv


converter = make_converter()
# Looked up once: a task is read per status read, and the converter's dispatch would cost each time.
_task_hook = converter.get_structure_hook(Task)


# -- the functions the rest of the package calls -------------------------------------------------------------


def structure_task(data: Any, *, request_id: str | None = None) -> Task:
    """A ``Task`` from one decoded task object; raises MalformedResponseError if it has no id/status."""
    try:
        task: Task = _task_hook(data, Task)
        return task
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


def batch_items(data: Any, *, request_id: str | None = None) -> list[Any]:
    """The raw task objects of a ``/v1/tasks/batch`` answer (``{"data": [...]}``), to be read one by one."""
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponseError("batch answer has no 'data' list", request_id=request_id)
    return items


def request_to_wire(req: ImageRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/images/generations`` for ``req``."""
    body: dict[str, Any] = converter.unstructure(req)
    return body


def task_to_wire(task: Task) -> dict[str, Any]:
    """A task back in the API's JSON shape (for the batch journal); ``structure_task`` reads it again."""
    body: dict[str, Any] = converter.unstructure(task)
    return body
