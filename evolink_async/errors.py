"""The one error tree of evolink_async.

Every exception the SDK raises on purpose derives from :class:`EvolinkError`::

    EvolinkError
    ├── ValidationError (ValueError)            a request or option is invalid; nothing was sent
    ├── ConfigurationError (ValueError)         the client's own settings are unusable
    ├── ClientStateError (RuntimeError)         used after close, or wait() on a client never entered
    ├── APIError                                the API answered with an error (status, code, message, ...)
    │   ├── BadRequestError                     400, 413, 422
    │   ├── AuthenticationError                 401
    │   ├── InsufficientCreditsError            402
    │   ├── PermissionDeniedError               403
    │   ├── NotFoundError                       404
    │   ├── ConflictError                       409 (e.g. idempotency_conflict)
    │   ├── RateLimitError                      429 (retry_after)
    │   └── ServerError                         5xx, including non-JSON proxy pages
    ├── MalformedResponseError                  a 2xx answer that is not the JSON we expect
    ├── APIConnectionError                      no usable answer: refused, reset, dropped
    │   └── APITimeoutError (TimeoutError)      the request took longer than its timeout
    ├── SubmissionUnknownError                  a create's outcome is unknown after retries
    ├── TaskFailedError                         the task ended ``failed``
    │   └── TaskCancelledError                  the task ended ``cancelled``
    ├── WaitTimeoutError (TimeoutError)         wait() gave up; the task may still finish
    ├── UploadError                             a request's local file could not be uploaded (field)
    ├── DownloadError                           a result could not be saved (task_id, url)
    ├── NotSubmittedError                       generate_many did not send this input's create
    │   └── BudgetExceededError                 ... because the credit budget is spent
    ├── JournalError                            a batch journal cannot be used (other batch, unreadable)
    └── CoordinatorError                        the coordinator (Redis) that shares limits cannot be reached

Every error that concerns a task carries ``task_id``. Errors raised by a create carry the
``idempotency_key`` it was sent with, so the same request can be resubmitted without paying twice.
"""

from __future__ import annotations

from typing import Any

from ._text import printable

__all__ = (
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "ConfigurationError",
    "BudgetExceededError",
    "NotSubmittedError",
    "ConflictError",
    "CoordinatorError",
    "DownloadError",
    "UploadError",
    "EvolinkError",
    "InsufficientCreditsError",
    "JournalError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "SubmissionUnknownError",
    "TaskCancelledError",
    "TaskFailedError",
    "ValidationError",
    "WaitTimeoutError",
)

# Server-side task error codes for which EvoLink says resubmitting may succeed.
_RETRYABLE_CODES = frozenset(
    {
        "generation_failed_no_content",
        "service_error",
        "generation_timeout",
        "resource_exhausted",
        "quota_exceeded",
        "service_unavailable",
        "unknown_error",
        "upstream_error",
        "rate_limited",
        "model_unavailable",
    }
)


def is_retryable_code(code: str | None) -> bool:
    """Whether EvoLink documents a task error ``code`` as worth resubmitting."""
    return code in _RETRYABLE_CODES


class EvolinkError(Exception):
    """Root of every error the SDK raises on purpose."""

    #: The task this error concerns, when there is one.
    task_id: str | None = None
    #: The Idempotency-Key of the create this error concerns, when there is one.
    idempotency_key: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        extras = []
        if self.task_id:
            extras.append(f"task_id={self.task_id}")
        if self.idempotency_key and self.task_id is None:
            extras.append(f"idempotency_key={self.idempotency_key}")
        request_id = getattr(self, "request_id", None)
        if request_id:
            extras.append(f"request_id={request_id}")
        # Escaped here, once for every error: messages carry server text and end up in terminals and log lines.
        return printable(f"{text} ({', '.join(extras)})" if extras else text)


class ValidationError(EvolinkError, ValueError):
    """A request field is invalid; raised before anything is sent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigurationError(EvolinkError, ValueError):
    """The client's settings cannot be used (missing key, key over plain HTTP, ...)."""


class ClientStateError(EvolinkError, RuntimeError):
    """The client is closed, or a call needs ``async with AsyncClient()`` first."""


class APIError(EvolinkError):
    """The API answered with an HTTP error."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | int | None = None,
        type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        body: Any = None,
        fallback_suggestion: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}" + (f" [code={code}]" if code not in (None, "") else ""))
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.request_id = request_id
        self.task_id = task_id
        self.idempotency_key = idempotency_key
        #: The decoded error body (or the first bytes of a non-JSON body), for debugging.
        self.body = body
        #: What the server suggests doing instead (its ``fallback_suggestion``), when it says.
        self.fallback_suggestion = fallback_suggestion


class BadRequestError(APIError):
    """400 / 413 / 422: the API rejected the request's content."""


class AuthenticationError(APIError):
    """401: the key is missing, invalid or expired."""


class InsufficientCreditsError(APIError):
    """402: not enough credits (account balance, key total or daily limit; see ``code``)."""


class PermissionDeniedError(APIError):
    """403: model not allowed for this key, or the task is another account's."""


class NotFoundError(APIError):
    """404: no such task or model."""


class ConflictError(APIError):
    """409: e.g. the same Idempotency-Key was sent with a different body."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: server, upstream or gateway trouble (also non-JSON proxy pages)."""


class MalformedResponseError(EvolinkError):
    """A successful HTTP answer whose body is not the JSON shape the API documents."""

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.task_id = task_id


class APIConnectionError(EvolinkError):
    """No usable answer: connection refused, reset or dropped mid-request.

    ``maybe_sent`` is False when the request certainly never reached the server (the connection was not made).
    """

    def __init__(
        self, message: str, *, task_id: str | None = None, idempotency_key: str | None = None, maybe_sent: bool = True
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.idempotency_key = idempotency_key
        self.maybe_sent = maybe_sent


class APITimeoutError(APIConnectionError, TimeoutError):
    """A request took longer than its timeout."""


class SubmissionUnknownError(EvolinkError):
    """A create was sent but its outcome is unknown after all retries.

    The task may or may not exist. Resubmit with ``idempotency_key=err.idempotency_key``: the API
    then returns the original task instead of charging twice. The body must be the same: for a request whose
    ``image_urls`` held local files, resubmit ``err.request`` (the request as sent, with the URLs of the uploads).
    """

    #: The request as it was sent (local files replaced by their URLs), when known.
    request: Any = None

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class TaskFailedError(EvolinkError):
    """The task ended ``failed``. ``task`` is its last state (a :class:`~evolink_async.Task`), ``code`` its
    error code (may be None)."""

    # Typed loosely on purpose: this module is the leaf of the package and imports none of it.
    task: Any

    def __init__(self, task: Any) -> None:
        err = task.error
        self.task = task
        self.task_id = task.id
        self.code: str | None = err.code if err is not None else None
        self.error_message: str | None = err.message if err is not None else None
        detail = f"{self.code}: {self.error_message}" if err is not None else "no error detail given"
        super().__init__(f"task {task.status.value}: {detail}")

    @property
    def retryable(self) -> bool:
        """Whether resubmitting may succeed (server-side codes), per EvoLink's table."""
        return is_retryable_code(self.code)


class TaskCancelledError(TaskFailedError):
    """The task ended ``cancelled``."""


class WaitTimeoutError(EvolinkError, TimeoutError):
    """wait() gave up before the task ended. The task may still finish: wait again with ``task_id``."""

    def __init__(self, task_id: str, timeout: float, last: Any = None) -> None:
        super().__init__(f"task not finished after {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout
        #: The last state seen (a :class:`~evolink_async.Task`), if any.
        self.last = last


class UploadError(EvolinkError):
    """A local file of a request (``field``, e.g. ``image_urls[0]``) could not be uploaded; nothing was created.
    ``__cause__`` is the files API's error (an ``APIError`` such as a quota refusal, or a connection error)."""

    def __init__(self, field: str, cause: Exception) -> None:
        super().__init__(f"{field}: the upload failed: {cause}")
        self.field = field
        self.__cause__ = cause


class DownloadError(EvolinkError):
    """A result could not be saved: not an image, too large, gone (links live 24 h), or the host failed."""

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        url: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.url = url
        #: Worth another attempt (the host failed or cut the file short); ``retry_after``: what the host asked.
        self.transient = transient
        self.retry_after = retry_after


class NotSubmittedError(EvolinkError):
    """``generate_many`` did not send this input's create (nothing was paid). ``refusal``: the account-level
    refusal (401, 402, 403) of an earlier create that every later one would get too, if that is why."""

    def __init__(self, message: str, *, refusal: APIError | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


class BudgetExceededError(NotSubmittedError):
    """``generate_many`` did not submit this input: its credits would have exceeded the budget."""

    def __init__(self, message: str, *, budget: float, committed: float) -> None:
        super().__init__(message)
        self.budget = budget
        self.committed = committed


class JournalError(EvolinkError):
    """A batch journal cannot be used: unreadable, or written by a different batch."""


class CoordinatorError(EvolinkError):
    """The coordinator shared by several processes (``evolink_async.redis.RedisCoordinator``) cannot be used:
    a call that needs the shared limits fails rather than ignore them."""


class task_context:  # lower case: used like a function, ``with task_context(task_id):``
    """The one place a task id is attached to an error escaping work on that task.

    An EvolinkError without a ``task_id`` gets this one; any other exception (a user's ``on_update``
    callback failing, say) gets a note, so the id of a paid task is never lost from a traceback.
    (A class, not a generator-based context manager: it wraps every wait and read of a large batch.)
    """

    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.attach(exc)
        # Returns None: never swallows; the exception goes on, with its task id.

    def attach(self, exc: BaseException) -> BaseException:
        """Give ``exc`` this task id (an error handed over rather than raised, e.g. to a batch); return it."""
        if isinstance(exc, EvolinkError):
            if exc.task_id is None:
                exc.task_id = self.task_id
        elif not isinstance(exc, GeneratorExit):  # Ctrl-C and cancellation name the task too
            note = f"evolink task_id={self.task_id}"
            if note not in getattr(exc, "__notes__", ()):
                exc.add_note(note)
        return exc
