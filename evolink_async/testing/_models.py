"""Value types of the simulator: task plans, faults, statistics and the simulated tasks themselves."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = (
    "FINAL_STATUSES",
    "CallbackRecord",
    "Fault",
    "FaultKind",
    "FaultRoute",
    "Outcome",
    "RequestRecord",
    "SimStats",
    "SimTask",
    "TaskPlan",
    "directive_plan",
)

Outcome = Literal["completed", "failed", "cancelled", "never"]
FaultKind = Literal["status", "html", "drop", "drop_after_create", "slow", "malformed", "truncated"]
FaultRoute = Literal["create", "read", "batch", "list", "credits", "files", "uploads", "callback", "any"]

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

_OUTCOMES = ("completed", "failed", "cancelled", "never")
_FAULT_KINDS = ("status", "html", "drop", "drop_after_create", "slow", "malformed", "truncated")
_FAULT_ROUTES = ("create", "read", "batch", "list", "credits", "files", "uploads", "callback", "any")
_CALLBACK_FAULT_KINDS = ("drop", "slow")
#: Routes that are not ``/v1`` endpoints, so ``route="any"`` does not reach them.
_NOT_ANY = ("files", "uploads", "callback")

#: Exchange rates used for ``usage.cost`` of completed tasks (made up; EvoLink does not publish them).
USD_PER_CREDIT = 0.1
CNY_PER_USD = 7.1


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _optional_str(value: str | float | None) -> str | None:
    return None if value is None else str(value)


@attrs.frozen(kw_only=True)
class TaskPlan:
    """The scripted fate of one simulated task.

    ``duration`` is real (monotonic) seconds from creation to the final state. The task is ``pending`` for the
    first ``min(0.5, duration / 10)`` s, then ``processing`` with rising ``progress``, then ends as ``outcome``.
    ``"never"`` stays ``processing`` (progress stuck at 99) until :meth:`FakeEvolink.complete` is called.
    """

    duration: float = attrs.field(default=1.0, validator=_non_negative)
    estimated_time: int | None = None
    outcome: Outcome = attrs.field(default="completed", validator=attrs.validators.in_(_OUTCOMES))
    error_code: str | int = "generation_failed_no_content"
    error_message: str = "The model returned no image for this prompt."
    include_error: bool = True
    minimal: bool = False
    status_override: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    num_results: int = attrs.field(default=1, validator=_non_negative)

    @property
    def reported_estimated_time(self) -> int:
        """``task_info.estimated_time`` as reported: ``estimated_time`` or ``ceil(duration)``."""
        if self.estimated_time is not None:
            return self.estimated_time
        return math.ceil(self.duration)


def _default_fault_status(fault: Fault) -> int:
    return 502 if fault.kind == "html" else 500


@attrs.frozen(kw_only=True)
class Fault:
    """A fault to inject into the next request(s) of ``route`` (see :meth:`FakeEvolink.inject`).

    Kinds: ``status`` answers the JSON error envelope for ``status`` (with ``Retry-After: retry_after`` if
    set); ``html`` answers ``status`` (default 502) with a proxy's HTML page; ``drop`` closes the connection
    without answering, before doing anything; ``drop_after_create`` does the work (creates and charges the
    task, records the idempotency key) and then closes the connection without answering (on other routes:
    answers nothing after doing the work); ``slow`` sleeps
    ``delay`` seconds and then answers normally; ``malformed`` answers 200 with truncated JSON; ``truncated``
    (result files) sends the headers of the whole file, half of its bytes, and closes the connection.
    A non-zero ``delay`` also delays every other kind. ``times`` is how many matching requests it hits.
    Route ``any`` matches every ``/v1`` endpoint but not result-file downloads (``files``, another host
    at EvoLink), the files API (``uploads``: upload, list, quota, delete; another host too) nor callback
    deliveries.

    Route ``callback`` hits the simulator's own outgoing callback delivery attempts (only kinds ``drop``
    and ``slow``): ``drop`` makes the attempt fail without sending anything (counted as a failed attempt and
    retried on schedule); ``slow`` waits ``delay`` seconds before sending it.
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(_FAULT_KINDS))
    route: FaultRoute = attrs.field(default="any", validator=attrs.validators.in_(_FAULT_ROUTES))
    status: int = attrs.field(
        default=attrs.Factory(_default_fault_status, takes_self=True),
        validator=[attrs.validators.ge(100), attrs.validators.le(599)],
    )
    retry_after: str | None = attrs.field(default=None, converter=_optional_str)
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    times: int = attrs.field(default=1, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.route == "callback" and self.kind not in _CALLBACK_FAULT_KINDS:
            raise ValueError(f"a callback fault must be of kind 'drop' or 'slow', got {self.kind!r}")

    def matches(self, route: str) -> bool:
        """Whether this fault applies to a request of ``route``."""
        return self.route == route or (self.route == "any" and route not in _NOT_ANY)


@attrs.frozen
class RequestRecord:
    """One HTTP request the simulator received.

    ``headers`` is a case-insensitive copy (``headers.get("authorization")`` and ``headers["Authorization"]``
    both work); ``time`` is :func:`time.monotonic` at arrival.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    time: float


@attrs.frozen
class CallbackRecord:
    """One callback delivery attempt the simulator made (see :attr:`SimStats.callback_log`).

    ``attempt`` counts from 1 (the first try) per delivery; ``status`` is the receiver's HTTP status, or
    ``None`` when no answer came (connection error, timeout, ``drop`` fault), and then ``error`` says why
    (``None`` when an answer came, 2xx or not). ``time`` is :func:`time.monotonic` when the attempt was sent
    (after the delay of a ``slow`` fault), or failed without sending.
    """

    task_id: str
    url: str
    attempt: int
    status: int | None
    error: str | None
    time: float

    @property
    def delivered(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


@attrs.define(kw_only=True)
class SimStats:
    """What the simulator saw. Mutable counters, updated as requests arrive.

    Per-route counters count every request that reached the route (replays, faulted and rejected ones
    included). ``reads`` counts, per task id, each ``GET /v1/tasks/{id}`` answered and each inclusion in a
    batch answer. ``running`` is the number of tasks created and not yet final; ``max_running`` its peak.

    Callbacks: ``callbacks_attempted`` counts every delivery attempt (first tries and retries),
    ``callbacks_delivered`` those answered 2xx, ``callbacks_failed`` the others (non-2xx, connection error,
    timeout, ``drop`` fault); ``callbacks_lost`` counts deliveries given up for good (``lose_callbacks`` or
    every retry failed). ``callback_log`` has one :class:`CallbackRecord` per attempt, in order of completion.
    """

    requests: int = 0
    create_requests: int = 0
    creates: int = 0
    replays: int = 0
    creates_without_key: int = 0
    read_requests: int = 0
    batch_requests: int = 0
    list_requests: int = 0
    credits_requests: int = 0
    file_requests: int = 0
    #: Requests to the files API (uploads, list, quota, delete).
    upload_requests: int = 0
    reads: Counter[str] = attrs.field(factory=Counter)
    rate_limited: int = 0
    auth_failures: int = 0
    faults_applied: int = 0
    running: int = 0
    max_running: int = 0
    # Kept out of the repr: thousands of records (with headers) would bury the counters.
    requests_seen: list[RequestRecord] = attrs.field(factory=list, repr=False)
    callbacks_attempted: int = 0
    callbacks_delivered: int = 0
    callbacks_failed: int = 0
    callbacks_lost: int = 0
    callback_log: list[CallbackRecord] = attrs.field(factory=list, repr=False)

    def reads_per_task(self) -> float:
        """Average task reads per created task (0.0 before any)."""
        total = sum(self.reads.values())
        tasks = self.creates or len(self.reads)
        return total / tasks if tasks else 0.0


@attrs.define(eq=False, kw_only=True)
class SimTask:
    """One task created by the simulator. Its state is a function of (monotonic) time and its plan.

    ``request`` is the create body as received; ``started`` and ``finish_at`` are :func:`time.monotonic`
    values (``finish_at`` is ``inf`` for a ``never`` task until completed); ``cost`` the credits reserved.
    """

    id: str
    request: dict[str, Any]
    plan: TaskPlan
    created: int
    started: float
    finish_at: float
    cost: float
    idempotency_key: str | None = None
    #: ``image``, ``video`` or ``audio``: the endpoint it was created at.
    kind: str = "image"
    forced: bool = False
    #: Set by the simulator once the final state is settled (billing refunded or kept).
    settled: bool = False
    last_progress: int = 0

    @property
    def model(self) -> str:
        model = self.request.get("model")
        return model if isinstance(model, str) else ""

    @property
    def size(self) -> str | None:
        size = self.request.get("size")
        return size if isinstance(size, str) else None

    @property
    def prompt(self) -> str:
        prompt = self.request.get("prompt")
        return prompt if isinstance(prompt, str) else ""

    @property
    def outcome(self) -> Literal["completed", "failed", "cancelled"]:
        """The final status this task reaches (a ``never`` task ends ``completed`` when forced)."""
        outcome = self.plan.outcome
        return "completed" if outcome == "never" else outcome

    def status_at(self, now: float) -> str:
        """The true status at monotonic time ``now`` (``status_override`` not applied)."""
        if now >= self.finish_at:
            return self.outcome
        if now - self.started < min(0.5, 0.1 * self.plan.duration):
            return "pending"
        return "processing"

    def progress_at(self, now: float, status: str) -> int:
        """Progress to report at ``now``; never lower than what was reported before."""
        if status == "completed":
            return 100
        if status != "processing":
            return self.last_progress
        duration = self.plan.duration
        base = 99 if duration <= 0 else int(100 * (now - self.started) / duration)
        progress = min(99, max(1, base + random.randint(-3, 3)))
        progress = max(progress, self.last_progress)
        self.last_progress = progress
        return progress

    def result_urls(self, files_base: str) -> list[str]:
        ext = {"video": "mp4", "audio": "mp3"}.get(self.kind, "png")
        return [f"{files_base}/files/{self.id}/{n}.{ext}" for n in range(self.plan.num_results)]

    def _results(self, obj: dict[str, Any], files_base: str) -> None:
        """Result links of a completed task: ``results``, or for audio only ``result_data`` (as Suno's)."""
        urls = self.result_urls(files_base)
        if self.kind != "audio":
            obj["results"] = urls
            return
        title = self.request.get("title")
        obj["result_data"] = [
            {
                "result_id": f"{self.id}-{n}",
                "audio_url": url,
                "stream_audio_url": f"{files_base}/files/{self.id}/{n}.wav",
                "image_url": f"{files_base}/files/{self.id}/{n}.png",
                "title": title if isinstance(title, str) else self.prompt[:40],
                "tags": self.request.get("style") or "simulated",
                "duration": 1.0,
            }
            for n, url in enumerate(urls)
        ]

    def _usage(self, status: str) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "billing_rule": "per_call",
            "credits_reserved": self.cost,
            "user_group": "default",
        }
        if status == "completed":
            usd = round(self.cost * USD_PER_CREDIT, 6)
            usage["credits_used"] = self.cost
            usage["cost"] = {"credits": self.cost, "usd": usd, "cny": round(usd * CNY_PER_USD, 6)}
        elif status in FINAL_STATUSES:
            usage["credits_used"] = 0.0  # failed and cancelled tasks are refunded
        return usage

    def render_created(self) -> dict[str, Any]:
        """The create response: always the full shape, ``pending`` (or ``status_override``) at 0 %."""
        plan = self.plan
        obj: dict[str, Any] = {
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "object": f"{self.kind}.generation.task",
            "progress": 0,
            "status": plan.status_override or "pending",
            "task_info": {"can_cancel": True, "estimated_time": plan.reported_estimated_time},
            "type": self.kind,
            "usage": self._usage("pending"),
        }
        obj.update(plan.extra)
        return obj

    def render(self, now: float, files_base: str) -> dict[str, Any]:
        """The task object as ``GET /v1/tasks/{id}`` returns it at monotonic time ``now``."""
        plan = self.plan
        status = self.status_at(now)
        final = status in FINAL_STATUSES
        progress = self.progress_at(now, status)
        shown = status if final or plan.status_override is None else plan.status_override
        obj: dict[str, Any]
        if plan.minimal:
            obj = {"id": self.id, "status": shown, "progress": progress}
        else:
            obj = {
                "created": self.created,
                "id": self.id,
                "model": self.model,
                "object": f"{self.kind}.generation.task",
                "progress": progress,
                "status": shown,
                "task_info": {"can_cancel": not final, "estimated_time": plan.reported_estimated_time},
                "type": self.kind,
                "usage": self._usage(status),
            }
        if status == "completed":
            self._results(obj, files_base)
        elif final and plan.include_error:
            if status == "cancelled":
                obj["error"] = {
                    "code": "request_cancelled",
                    "message": "The task was cancelled.",
                    "type": "task_error",
                }
            else:
                obj["error"] = {"code": plan.error_code, "message": plan.error_message, "type": "task_error"}
        obj.update(plan.extra)
        return obj

    def summary(self, now: float) -> dict[str, Any]:
        """The entry of this task in ``GET /v1/tasks`` (no result links)."""
        status = self.status_at(now)
        progress = self.progress_at(now, status)
        if status not in FINAL_STATUSES and self.plan.status_override is not None:
            status = self.plan.status_override
        return {
            "id": self.id,
            "model": self.model,
            "type": self.kind,
            "status": status,
            "progress": progress,
            "created_at": self.created,
        }


_DIRECTIVE = re.compile(r"\[([A-Za-z_]+)(?::([^\[\]]*))?\]")


def directive_plan(body: Mapping[str, Any], *, default_duration: float = 1.0) -> TaskPlan:
    """The default plan: read directives written in the prompt, so demos can script outcomes without code.

    ``[fail]`` / ``[fail:CODE]`` fail (default code ``generation_failed_no_content``); ``[cancel]`` ends
    cancelled; ``[never]`` never finishes on its own; ``[duration:2.5]`` seconds until final; ``[eta:10]``
    reported ``estimated_time``; ``[minimal]`` bare task objects; ``[noerror]`` failure without ``error``;
    ``[results:3]`` number of result images; ``[status:queued_upstream]`` raw status while running.
    Unknown or malformed directives are ignored. Without any: completed after ``default_duration`` s.
    """
    prompt = body.get("prompt")
    changes: dict[str, Any] = {}
    if isinstance(prompt, str):
        for match in _DIRECTIVE.finditer(prompt):
            name, arg = match.group(1).lower(), match.group(2)
            value = arg.strip() if arg is not None else ""
            try:
                if name == "fail":
                    changes["outcome"] = "failed"
                    if value:
                        changes["error_code"] = value
                        changes["error_message"] = f"Simulated failure: {value}."
                elif name == "cancel":
                    changes["outcome"] = "cancelled"
                elif name == "never":
                    changes["outcome"] = "never"
                elif name == "duration":
                    duration = float(value)
                    if duration >= 0 and math.isfinite(duration):
                        changes["duration"] = duration
                elif name == "eta":
                    eta = int(value)
                    if eta >= 0:
                        changes["estimated_time"] = eta
                elif name == "minimal":
                    changes["minimal"] = True
                elif name == "noerror":
                    changes["include_error"] = False
                elif name == "results":
                    count = int(value)
                    if count >= 0:
                        changes["num_results"] = count
                elif name == "status" and value:
                    changes["status_override"] = value
            except ValueError:
                continue
    changes.setdefault("duration", default_duration)
    return TaskPlan(**changes)
