"""evolink_async: the async-first SDK for EvoLink's image-generation task API.

    import evolink_async as evo

    async with evo.AsyncClient() as client:            # key from EVOLINK_API_KEY
        task = await client.generate("a cat playing on grass", size="16:9", quality="2K")
        print(task.results)

The simulator for tests and demos lives in :mod:`evolink_async.testing`.
"""

from ._batch import BatchRun, BatchStats, Outcome
from ._callbacks import CallbackStats
from ._client import AsyncClient
from ._config import DEFAULT_BASE_URL, Limits, PollPolicy, RetryPolicy, Timeouts
from ._default import generate
from ._download import ResultStream
from ._engine import OnUpdate
from ._files import MAX_UPLOAD_BYTES, Files
from ._requests import new_idempotency_key
from ._sync import Client
from ._tasks import TaskListing, Tasks
from ._transport import MAX_ANSWER_BYTES
from ._version import __version__
from ._webhooks import CallbackEndpoint, CallbackReceiver
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ClientStateError,
    ConfigurationError,
    ConflictError,
    CoordinatorError,
    DownloadError,
    EvolinkError,
    InsufficientCreditsError,
    JournalError,
    MalformedResponseError,
    NotFoundError,
    NotSubmittedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TaskCancelledError,
    TaskFailedError,
    UploadError,
    ValidationError,
    WaitTimeoutError,
)
from .models import (
    DEFAULT_MODEL,
    AudioRequest,
    Cost,
    Credits,
    FileInfo,
    FilePage,
    FileQuota,
    ImageFields,
    ImageQuality,
    ImageRequest,
    ImageSize,
    ImageSource,
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
)

__all__ = (
    "VideoRequest",
    "UploadedFile",
    "ResultItem",
    "ResultStream",
    "Request",
    "ImageSource",
    "Files",
    "FileQuota",
    "FilePage",
    "FileInfo",
    "AudioRequest",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "MAX_ANSWER_BYTES",
    "MAX_UPLOAD_BYTES",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "BatchRun",
    "BatchStats",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CallbackEndpoint",
    "CallbackReceiver",
    "CallbackStats",
    "Client",
    "ClientStateError",
    "ConfigurationError",
    "ConflictError",
    "CoordinatorError",
    "Cost",
    "Credits",
    "DownloadError",
    "EvolinkError",
    "ImageFields",
    "ImageQuality",
    "ImageRequest",
    "ImageSize",
    "InsufficientCreditsError",
    "JournalError",
    "Limits",
    "MalformedResponseError",
    "NotFoundError",
    "NotSubmittedError",
    "OnUpdate",
    "Outcome",
    "PermissionDeniedError",
    "PollPolicy",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SubmissionUnknownError",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskInfo",
    "TaskListing",
    "TaskStatus",
    "TaskSummary",
    "Tasks",
    "Timeouts",
    "UploadError",
    "Usage",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
    "generate",
    "new_idempotency_key",
)
