"""Which failed batch inputs are worth another, new task: the explicit retry of ``generate_many(retry_failed=)``.

A failed task is an answer, not a transport error: it is resubmitted only when asked for, only when EvoLink marks
its error code as worth resubmitting (``service_error``, ``generation_timeout``, ...; never a content-policy
refusal or a bad parameter), after a delay, as a new paid task counted against the budget.
"""

from __future__ import annotations

import math

import attrs

from . import errors
from .models import Task, TaskStatus

__all__ = ("Resubmissions", "check_retry_options", "worth_resubmitting")


@attrs.define
class Resubmissions:
    """A batch's explicit retries: at most ``limit`` new tasks per input, ``delay`` seconds after a failure, and
    the failed tasks of the inputs resubmitted (by input index) until their outcome takes them."""

    limit: int = 0
    delay: float = 30.0
    earlier: dict[int, list[Task]] = attrs.field(factory=dict)

    @classmethod
    def checked(cls, retry_failed: int, retry_delay: float, *, shared: bool) -> Resubmissions:
        check_retry_options(retry_failed, retry_delay, shared)
        return cls(retry_failed, float(retry_delay))


def worth_resubmitting(task: Task, attempt: int, limit: int) -> bool:
    """Whether input's failed ``task`` (its try number ``attempt``, from 0) gets another, under ``limit`` retries."""
    if attempt >= limit or task.status is not TaskStatus.FAILED or task.error is None:
        return False
    return task.error.retryable


def check_retry_options(retry_failed: int, retry_delay: float, shared: bool) -> None:
    """``retry_failed`` a count >= 0, ``retry_delay`` finite seconds >= 0; not with a shared journal."""
    if not isinstance(retry_failed, int) or isinstance(retry_failed, bool) or retry_failed < 0:
        raise errors.ValidationError("retry_failed", f"must be an int >= 0, got {retry_failed!r}")
    if isinstance(retry_delay, bool) or not isinstance(retry_delay, (int, float)) or not 0 <= retry_delay < math.inf:
        raise errors.ValidationError("retry_delay", f"must be a finite number of seconds >= 0, got {retry_delay!r}")
    if retry_failed and shared:
        raise errors.ValidationError("retry_failed", "is not supported with a shared journal (coordinator.journal)")
