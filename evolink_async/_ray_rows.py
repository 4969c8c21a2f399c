"""A block's rows to batch inputs with their derived Idempotency-Keys, and outcomes back to columns.

Plain Python on lists of dicts (the Ray face converts Arrow tables): the identity of an input, and so its key,
is a pure function of the job's name and the rows, which is what lets a block that Ray runs again (after its
actor or node died) send the creates it sent before with the same keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from . import errors
from ._batch import Outcome
from ._converter import request_to_wire
from .models import AudioRequest, ImageRequest, VideoRequest

__all__ = (
    "CUSTOM_ID",
    "OUTCOME_COLUMNS",
    "ROWS",
    "BlockInputs",
    "RowSource",
    "block_inputs",
    "outcome_row",
    "safe_file_stem",
)

#: The column that names an input (its identity across runs, and its files' names).
CUSTOM_ID = "custom_id"
#: ``requests=ROWS``: every row is a request in the batch file's JSON shape (its columns are request fields).
ROWS = "*"
#: The columns the outcome adds to each input row, in order.
OUTCOME_COLUMNS = (
    "ok",
    "status",
    "task_id",
    "result_urls",
    "credits",
    "error_class",
    "error_code",
    "error_message",
    "idempotency_key",
    "files",
)

#: Where an input comes from: a column of prompts (its name), ``ROWS``, or a function of the row.
RowSource = str | Callable[[dict[str, Any]], Any]

_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_CUSTOM_ID = 256


@attrs.frozen
class BlockInputs:
    """A block's inputs: for row ``i``, ``inputs[i]`` (None when the row was refused, ``errors[i]`` saying why)
    and its key ``keys[i]``."""

    inputs: list[Any]
    keys: list[str]
    errors: list[Exception | None]
    custom_ids: list[str | None]


def safe_file_stem(custom_id: str) -> bool:
    """Whether a custom_id may name files as it is (no separators, no leading dot, bounded)."""
    return bool(_SAFE_STEM.fullmatch(custom_id)) and ".." not in custom_id


def _custom_id(row: Mapping[str, Any]) -> str | None:
    value = row.get(CUSTOM_ID)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise errors.ValidationError(CUSTOM_ID, f"must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text or len(text) > _MAX_CUSTOM_ID:
        raise errors.ValidationError(CUSTOM_ID, f"must be 1-{_MAX_CUSTOM_ID} characters, got {len(text)}")
    return text


def _input_of(row: dict[str, Any], source: RowSource) -> Any:
    if callable(source):
        return source(row)
    if source == ROWS:
        return {k: v for k, v in row.items() if k != CUSTOM_ID and v is not None}
    prompt = row.get(source)
    if not isinstance(prompt, str):
        raise errors.ValidationError(source, f"each row needs a string prompt in column {source!r}")
    return prompt


def _content(item: Any, fields: Mapping[str, Any]) -> str:
    """A digest of what an input asks for (with the batch-wide fields): equal requests, equal digests."""
    if isinstance(item, (ImageRequest, VideoRequest, AudioRequest)):
        body: Any = {"kind": type(item).__name__, **request_to_wire(item)}
    elif isinstance(item, Mapping):
        body = dict(item)
    else:
        body = {"prompt": item}
    text = json.dumps({"input": body, "fields": dict(fields)}, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _key(*parts: str) -> str:
    return "evr-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:48]


def block_inputs(
    job: str, rows: Sequence[dict[str, Any]], source: RowSource, fields: Mapping[str, Any], *, names_files: bool
) -> BlockInputs:
    """The inputs of a block and their keys.

    With a ``custom_id``, an input's key comes from the job, its custom_id and its content (an edited row is a
    new task). Without one, from the job, its content and its position in the block, with a digest of the
    whole block: Ray runs a block again with the same rows in the same order, so the keys are the same; two
    identical rows of a block are two tasks. ``names_files``: custom_ids must be usable as file names.
    """
    inputs: list[Any] = []
    digests: list[str] = []
    errs: list[Exception | None] = []
    ids: list[str | None] = []
    seen: set[str] = set()
    for row in rows:
        try:
            custom_id = _custom_id(row)
            if custom_id is not None and custom_id in seen:
                raise errors.ValidationError(CUSTOM_ID, f"{custom_id!r} names more than one row of this block")
            if custom_id is not None and names_files and not safe_file_stem(custom_id):
                raise errors.ValidationError(
                    CUSTOM_ID, "names the downloaded files: use 1-128 characters of A-Z a-z 0-9 . _ - (no leading dot)"
                )
            item = _input_of(row, source)
            digest = _content(item, fields)
        except Exception as exc:  # a bad row is an outcome of its own, never the block's failure
            custom_id, item, digest = None, None, ""
            errs.append(exc)
        else:
            errs.append(None)
        if custom_id is not None:
            seen.add(custom_id)
        ids.append(custom_id)
        inputs.append(item)
        digests.append(digest)
    block = hashlib.sha256("\0".join(f"{c or ''}:{d}" for c, d in zip(ids, digests, strict=True)).encode()).hexdigest()
    keys = [
        _key(job, "id", c, d) if c is not None else _key(job, "position", block, str(i), d)
        for i, (c, d) in enumerate(zip(ids, digests, strict=True))
    ]
    return BlockInputs(inputs=inputs, keys=keys, errors=errs, custom_ids=ids)


def _status(outcome: Outcome | None, error: Exception | None) -> str:
    if outcome is not None and outcome.task is not None:
        return outcome.task.status.value
    if isinstance(error, (errors.NotSubmittedError, errors.ValidationError)):
        return "not_submitted"
    return "error"


def outcome_row(outcome: Outcome | None, error: Exception | None, key: str, files: Sequence[str]) -> dict[str, Any]:
    """The outcome columns of one input (``error``: the outcome's, or why the row never became an input)."""
    task = outcome.task if outcome is not None else None
    usage = task.usage if task is not None else None
    return {
        "ok": outcome is not None and outcome.ok and error is None,
        "status": _status(outcome, error),
        "task_id": outcome.task_id if outcome is not None else getattr(error, "task_id", None),
        "result_urls": list(task.results) if task is not None else [],
        "credits": usage.credits_used if usage is not None else None,
        "error_class": type(error).__name__ if error is not None else None,
        "error_code": getattr(error, "code", None) if error is not None else None,
        "error_message": str(error) if error is not None else None,
        "idempotency_key": key,
        "files": list(files),
    }
