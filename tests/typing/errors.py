"""User code that handles errors: the tree, and the attributes each error carries (see results.py for how
the ``# type: ignore[...]  # pyright: ignore[...]`` lines work)."""

from __future__ import annotations

import evolink_async as evo


async def handle_one_generation(client: evo.AsyncClient) -> None:
    try:
        await client.generate("a cat", size="1:1")
    except evo.ValidationError as err:  # nothing was sent
        field: str = err.field
        message: str = err.message
        as_value_error: ValueError = err  # also a ValueError
        print(field, message, as_value_error)
    except evo.RateLimitError as err:
        retry_after: float | None = err.retry_after
        status: int = err.status
        print(retry_after, status)
    except evo.APIError as err:
        print(err.status, err.code, err.message, err.type, err.param, err.request_id, err.task_id)
        code: str | int | None = err.code
        print(code)
    except evo.SubmissionUnknownError as err:
        # Resubmit with the same key: the API answers with the original task, nothing is paid twice.
        await client.submit("a cat", idempotency_key=err.idempotency_key)
    except evo.TaskCancelledError as err:  # before TaskFailedError: it is one
        print("cancelled", err.task_id, err.code)
    except evo.TaskFailedError as err:
        failed: evo.Task = err.task
        why: str | None = err.code
        again: bool = err.retryable
        print(failed.id, why, again, err.error_message)
    except evo.WaitTimeoutError as err:
        as_timeout: TimeoutError = err  # also a TimeoutError
        print(as_timeout, err.timeout)
        if err.task_id is not None:  # typed str | None, like every error's task_id (see tests/test_typing.py)
            await client.wait(err.task_id)
    except (evo.APIConnectionError, evo.MalformedResponseError, evo.ClientStateError) as err:
        print(err.task_id, err.idempotency_key)
    except evo.EvolinkError as err:  # the root: anything else the SDK raises on purpose
        task_id: str | None = err.task_id
        print(task_id)


def handle_errors_of_files_and_batches(error: Exception) -> None:
    if isinstance(error, evo.DownloadError):
        url: str | None = error.url
        transient: bool = error.transient
        print(url, transient, error.retry_after, error.task_id)
    if isinstance(error, evo.BudgetExceededError):
        budget: float = error.budget
        committed: float = error.committed
        print(budget, committed)
    if isinstance(error, evo.NotSubmittedError) and error.refusal is not None:
        refused: evo.APIError = error.refusal
        print(refused.status)


def attributes_are_typed(err: evo.ValidationError, api: evo.APIError, failed: evo.TaskFailedError) -> None:
    # The attributes have their types: a field name is no int, a task id may be missing.
    number: int = err.field  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    status: str = api.status  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    task_id: str = failed.task_id  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(number, status, task_id)
    # An attribute no error has (the unknown type it would have is reported too, by pyright).
    _nothing: str = api.nonexistent  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    # Errors are exceptions of the matching builtin, not of others.
    lookup: LookupError = err  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(lookup)
