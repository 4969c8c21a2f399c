"""The only cattrs converter: JSON-shaped data in and out of the models.

Reading is lenient the way the API needs: every field but ``id`` and ``status`` may be missing, unknown
keys are kept in ``extra``, unknown statuses are kept (``UNKNOWN`` + ``raw_status``), ``error.code`` may
be a string or an integer. An optional sub-object of the wrong shape is kept raw in ``extra`` rather than
crashing; what cannot be read at all raises :class:`MalformedResponseError`, never a bare ``KeyError``.
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
from .models import Cost, Credits, ImageRequest, Task, TaskError, TaskInfo, TaskStatus, Usage

__all__ = (
    "batch_items",
    "converter",
    "request_to_wire",
    "structure_credits",
    "structure_task",
    "structure_tasks",
    "task_to_wire",
)

log = logging.getLogger("evolink_async")

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=False)


def _lenient_float(value: Any, _: type) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) else None
    except (ValueError, OverflowError):
        return None
    # Infinity and NaN parse as JSON numbers but are no count of anything: treat them as absent.
    return number if number is not None and math.isfinite(number) else None


def _lenient_bool(value: Any, _: type) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    return None


def _lenient_str(value: Any, _: type) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


converter.register_structure_hook(float | None, _lenient_float)
converter.register_structure_hook(bool | None, _lenient_bool)
converter.register_structure_hook(str | None, _lenient_str)


def _with_extra(cls: type[T]) -> Callable[[Any, type], T]:
    """A structure hook for a model with an ``extra`` field: known keys parsed, the rest kept."""
    known = {f.name for f in attrs.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
    inner = make_dict_structure_fn(cls, converter)

    def hook(value: Any, _: type) -> T:
        if not isinstance(value, Mapping):
            raise TypeError(f"{cls.__name__} must be an object, got {type(value).__name__}")
        if value.keys() <= known:  # the usual case: nothing to keep aside
            return inner(value, cls)
        obj = inner({k: v for k, v in value.items() if k in known}, cls)
        extra = {k: v for k, v in value.items() if k not in known}
        return attrs.evolve(obj, extra=extra)  # type: ignore[misc]

    return hook


for _cls in (TaskInfo, Cost, Usage):
    converter.register_structure_hook(_cls, _with_extra(_cls))


def _structure_error(value: Any, _: type) -> TaskError:
    if isinstance(value, str):
        return TaskError(message=value)
    if not isinstance(value, Mapping):
        raise TypeError(f"error must be an object, got {type(value).__name__}")
    code = value.get("code")
    extra = {k: v for k, v in value.items() if k not in ("code", "message", "type")}
    return TaskError(
        code=None if code is None or isinstance(code, (dict, list)) else str(code),
        message=_lenient_str(value.get("message"), str),
        type=_lenient_str(value.get("type"), str),
        extra=extra,
    )


converter.register_structure_hook(TaskError, _structure_error)

_TASK_KNOWN = frozenset(
    {"id", "status", "progress", "model", "created", "object", "type", "task_info", "usage", "results", "error"}
)
_OPTIONAL_OBJECTS: tuple[tuple[str, type], ...] = (("task_info", TaskInfo), ("usage", Usage), ("error", TaskError))


def _progress(value: Any) -> int | None:
    number = _lenient_float(value, float)
    if number is None or number != number:  # NaN
        return None
    return max(0, min(100, int(number)))


def structure_task(data: Any, *, request_id: str | None = None) -> Task:
    """A ``Task`` from one decoded task object; raises MalformedResponseError if it has no id/status."""
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"expected a task object, got {type(data).__name__}", request_id=request_id)
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MalformedResponseError(f"task object has no string id: {str(data)[:200]}", request_id=request_id)
    raw_status = data.get("status")
    if not isinstance(raw_status, str):
        raise MalformedResponseError(
            f"task object has no string status: {str(data)[:200]}", request_id=request_id, task_id=task_id
        )
    try:
        status = TaskStatus(raw_status.lower())
    except ValueError:
        status = TaskStatus.UNKNOWN
    extra: dict[str, Any] = {k: v for k, v in data.items() if k not in _TASK_KNOWN}
    parsed: dict[str, Any] = {}
    for key, cls in _OPTIONAL_OBJECTS:
        value = data.get(key)
        if value is None:
            continue
        try:
            parsed[key] = converter.structure(value, cls)
        except Exception as exc:  # an optional part we cannot read is kept raw, not fatal
            log.debug("task %s: could not read %s (%s); kept in Task.extra", task_id, key, exc)
            extra[key] = value
    results = data.get("results")
    if results is None:
        urls: tuple[str, ...] = ()
    elif isinstance(results, str):
        urls = (results,)
    elif isinstance(results, list) and all(isinstance(u, str) for u in results):
        urls = tuple(results)
    else:
        # Never silently drop a result: a shape we cannot read is an error, not an empty list.
        raise MalformedResponseError(
            f"task results are not a list of URLs: {str(results)[:200]}", request_id=request_id, task_id=task_id
        )
    created = _lenient_float(data.get("created"), float)
    return Task(
        id=task_id,
        status=status,
        raw_status=raw_status,
        progress=_progress(data.get("progress")),
        model=_lenient_str(data.get("model"), str),
        created=int(created) if created is not None and created == created else None,
        object=_lenient_str(data.get("object"), str),
        type=_lenient_str(data.get("type"), str),
        results=urls,
        extra=extra,
        **parsed,
    )


def batch_items(data: Any, *, request_id: str | None = None) -> list[Any]:
    """The raw task objects of a ``/v1/tasks/batch`` answer (``{"data": [...]}``), to be read one by one."""
    items = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponseError("batch answer has no 'data' list", request_id=request_id)
    return items


def structure_tasks(data: Any, *, request_id: str | None = None) -> list[Task]:
    """Tasks from a ``/v1/tasks/batch`` answer (``{"data": [...]}``)."""
    return [structure_task(item, request_id=request_id) for item in batch_items(data, request_id=request_id)]


def structure_credits(data: Any, *, request_id: str | None = None) -> Credits:
    """``Credits`` from a ``GET /v1/credits`` answer."""
    body = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(body, Mapping):
        raise MalformedResponseError("credits answer has no 'data' object", request_id=request_id)
    user = body.get("user") if isinstance(body.get("user"), Mapping) else {}
    token = body.get("token") if isinstance(body.get("token"), Mapping) else {}
    assert isinstance(user, Mapping)
    assert isinstance(token, Mapping)
    return Credits(
        remaining=_lenient_float(user.get("remaining_credits"), float),
        used=_lenient_float(user.get("used_credits"), float),
        key_remaining=_lenient_float(token.get("remaining_credits"), float),
        key_used=_lenient_float(token.get("used_credits"), float),
        key_unlimited=_lenient_bool(token.get("unlimited_credits"), bool),
        extra={k: v for k, v in body.items() if k not in ("user", "token")},
    )


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


converter.register_unstructure_hook(ImageRequest, _unstructure_request)


def request_to_wire(req: ImageRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v1/images/generations`` for ``req``."""
    body: dict[str, Any] = converter.unstructure(req)
    return body


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def task_to_wire(task: Task) -> dict[str, Any]:
    """A task back in the API's JSON shape (for the batch journal); ``structure_task`` reads it again."""
    body: dict[str, Any] = dict(task.extra)
    body.update(
        {
            "id": task.id,
            "status": task.raw_status,
            "progress": task.progress,
            "model": task.model,
            "created": task.created,
            "object": task.object,
            "type": task.type,
        }
    )
    for key, part in (("task_info", task.task_info), ("usage", task.usage), ("error", task.error)):
        if part is not None:
            value = attrs.asdict(part, recurse=True)
            extra = value.pop("extra", {})
            if isinstance(value.get("cost"), dict):
                value["cost"] = {**value["cost"].pop("extra", {}), **value["cost"]}
            body[key] = {**extra, **value}
    if task.results:
        body["results"] = list(task.results)
    return _drop_none(body)  # type: ignore[no-any-return]
