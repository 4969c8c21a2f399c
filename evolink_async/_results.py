"""A batch's results as JSON lines, one per input, written as each outcome arrives (``evolink batch --results``).

Each line joins an output back to its input without positions: ``custom_id`` (the input's own id), the task id,
status, result URLs, saved files, credits and the error, if any.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from . import errors
from ._batch import Outcome

__all__ = ("ResultsFile", "outcome_record")


def _error_record(error: Exception | None) -> dict[str, Any] | None:
    if error is None:
        return None
    code = getattr(error, "code", None)
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if code not in (None, ""):
        record["code"] = code
    return record


def _status(outcome: Outcome) -> str:
    task = outcome.task if outcome.task is not None else getattr(outcome.error, "task", None)
    if task is not None:
        return str(task.raw_status)
    if isinstance(outcome.error, errors.NotSubmittedError):
        return "not_submitted"
    return "not_created" if outcome.task_id is None else "unknown"


def _credits(outcome: Outcome) -> float | None:
    task = outcome.task
    usage = task.usage if task is not None else None
    used = usage.credits_used if usage is not None else None
    return used if used is not None and math.isfinite(used) else None


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """One input's line: custom_id, index, task_id, status, results, files, credits, error."""
    task = outcome.task
    return {
        "custom_id": outcome.custom_id,
        "index": outcome.index,
        "task_id": outcome.task_id,
        "status": _status(outcome),
        "results": list(task.results) if task is not None else [],
        "files": [str(path) for path in outcome.files],
        "credits": _credits(outcome),
        "error": _error_record(outcome.error),
    }


class ResultsFile:
    """A JSON-lines file of outcomes, a line flushed per outcome (a crash keeps the lines written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] = path.open("w", encoding="utf-8")
        self.lines = 0

    def __repr__(self) -> str:
        return f"<ResultsFile {str(self.path)!r} lines={self.lines}>"

    def add(self, outcome: Outcome) -> None:
        self._fh.write(json.dumps(outcome_record(outcome), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        self._fh.close()
