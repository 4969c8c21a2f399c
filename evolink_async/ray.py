"""Batches on a Ray cluster, through Ray Data (``pip install 'evolink-async[ray]'``)::

    import ray
    from evolink_async.ray import generate

    ds = ray.data.read_json("prompts.jsonl")               # a "prompt" column, and "custom_id" if you have one
    out = generate(ds, job="posters-2026-12", size="16:9", download_to="s3://bucket/posters")
    out.write_parquet("s3://bucket/posters-outcomes")      # one row per input: task id, status, URLs, errors

Each actor of the pool has one :class:`~evolink_async.AsyncClient` and runs a block's rows concurrently through
``generate_many``. The pace, the in-flight cap (``Limits``) and the budget hold for every actor of every job on
the cluster that uses the same API key: they live in one named Ray actor (or in Redis, ``coordinator=``). Each
input's Idempotency-Key is derived from the job's name and the input (its ``custom_id`` and content), so a block
that Ray runs again after an actor or a node died replays its creates instead of paying twice, and a rerun of a
finished job creates nothing. Outcomes are columns, errors included: one bad row never fails the job.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

import attrs

from . import errors
from ._batch import Outcome
from ._client import AsyncClient
from ._config import Limits, PollPolicy, RetryPolicy, Timeouts, resolve_api_key, resolve_base_url
from ._coordinator import Coordinator
from ._download import safe_stem
from ._ray_coordinator import RayCoordinator, RayJournal, coordinator_name, shared_state
from ._ray_rows import CUSTOM_ID, OUTCOME_COLUMNS, ROWS, RowSource, block_inputs, outcome_row
from ._requests import BATCH_OPTIONS, check_field_names, check_timeout

try:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import ray.data
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("evolink_async.ray needs the ray extra: pip install 'evolink-async[ray]'") from exc

__all__ = ("CUSTOM_ID", "OUTCOME_COLUMNS", "ROWS", "GenerateBatch", "RaySettings", "default_compute", "generate")

#: How the shared limits are kept: ``"ray"`` (a named actor), ``"local"`` (each actor its own), or a function
#: that makes a coordinator in each actor (e.g. ``functools.partial(RedisCoordinator, "redis://...")``).
CoordinatorChoice = Literal["ray", "local"] | Callable[[], Coordinator]

_OUTCOME_TYPES = {
    "ok": pa.bool_(),
    "status": pa.string(),
    "task_id": pa.string(),
    "result_urls": pa.list_(pa.string()),
    "credits": pa.float64(),
    "error_class": pa.string(),
    "error_code": pa.string(),
    "error_message": pa.string(),
    "idempotency_key": pa.string(),
    "files": pa.list_(pa.string()),
}


class _Secret:
    """The API key on its way to the actors: pickled with them, never shown in a repr or a log line."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>" if self.value is not None else "None"

    def __getstate__(self) -> str | None:
        return self.value

    def __setstate__(self, state: str | None) -> None:
        self.value = state


def _secret(key: str | _Secret | None) -> _Secret:
    return key if isinstance(key, _Secret) else _Secret(key)


def _check_job(job: object) -> str:
    if not isinstance(job, str) or not job.strip() or len(job) > 200:
        raise errors.ValidationError("job", "must be a non-empty name of at most 200 characters (the same for a rerun)")
    return job


def _check_source(requests: object) -> RowSource:
    if callable(requests) or (isinstance(requests, str) and requests):
        return cast(RowSource, requests)
    raise errors.ValidationError("requests", f"must be a column name, ROWS or a function of a row, got {requests!r}")


@attrs.frozen(kw_only=True)
class RaySettings:
    """Everything an actor needs to run blocks (what :func:`generate` passes to :class:`GenerateBatch`).

    ``api_key`` None: ``EVOLINK_API_KEY`` in each actor's environment. ``download_to``: a directory, local or
    any pyarrow file system URI (``s3://...``), or a path in ``filesystem``.
    """

    job: str = attrs.field(converter=_check_job)
    api_key: _Secret = attrs.field(default=None, converter=_secret)
    base_url: str | None = None
    files_base_url: str | None = None
    requests: RowSource = attrs.field(default="prompt", converter=_check_source)
    fields: Mapping[str, Any] = attrs.field(factory=dict)
    limits: Limits = Limits()
    poll: PollPolicy = PollPolicy()
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()
    coordinator: CoordinatorChoice = "ray"
    lease_seconds: float = 15.0
    budget: float | None = None
    cost_per_task: float | None = None
    timeout: float | None = None
    download_to: str | None = None
    filesystem: Any = None

    def __attrs_post_init__(self) -> None:
        check_field_names(self.fields, options=BATCH_OPTIONS)
        check_timeout(self.timeout)
        if self.budget is not None and not self.budget >= 0:
            raise errors.ValidationError("budget", f"must be >= 0 credits, got {self.budget!r}")
        if not (callable(self.coordinator) or self.coordinator in ("ray", "local")):
            raise errors.ValidationError("coordinator", "must be 'ray', 'local' or a function that makes one")
        if not self.lease_seconds > 0:
            raise errors.ValidationError("lease_seconds", f"must be > 0, got {self.lease_seconds!r}")


class GenerateBatch:
    """The callable class for ``ds.map_batches``: one client per actor, a block's rows through ``generate_many``::

        ds.map_batches(GenerateBatch, fn_constructor_kwargs={"settings": RaySettings(job="j")},
                       batch_format="pyarrow", compute=default_compute(4))

    Returns the block's columns plus :data:`OUTCOME_COLUMNS`, one row per input, in the block's order.
    """

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        key = resolve_api_key(settings.api_key.value)
        base_url = resolve_base_url(settings.base_url)
        self._name = coordinator_name(key, base_url)
        self._handle = shared_state(self._name)
        self._client: AsyncClient | None = None
        self._started: asyncio.Future[AsyncClient] | None = None
        self._host: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<GenerateBatch job={self.settings.job!r} coordinator={self._name}>"

    def _coordinator(self) -> Coordinator | None:
        choice = self.settings.coordinator
        if choice == "ray":
            return RayCoordinator(self._handle, self._name, lease_seconds=self.settings.lease_seconds)
        if choice == "local":
            return None
        return choice()

    async def _hosting(self, started: asyncio.Future[AsyncClient]) -> None:
        # The client lives in a task of its own for the actor's life: its task group (poller, lease renewals)
        # must be entered and left by one task, while blocks come and go in others.
        s = self.settings
        try:
            client = AsyncClient(
                s.api_key.value,
                base_url=s.base_url,
                files_base_url=s.files_base_url,
                timeouts=s.timeouts,
                retry=s.retry,
                poll=s.poll,
                limits=s.limits,
                coordinator=self._coordinator(),
            )
            async with client:
                started.set_result(client)
                await asyncio.Event().wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    async def _client_now(self) -> AsyncClient:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._host = asyncio.get_running_loop().create_task(self._hosting(self._started))
        return await asyncio.shield(self._started)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        """The block's rows with their outcome columns."""
        rows = batch.to_pylist()
        s = self.settings
        block = block_inputs(s.job, rows, s.requests, s.fields, names_files=s.download_to is not None)
        todo = [i for i, error in enumerate(block.errors) if error is None]
        outcomes: dict[int, Outcome] = {}
        files: dict[int, list[str]] = {}
        if todo:
            client = await self._client_now()
            with tempfile.TemporaryDirectory(prefix="evolink-ray-") as scratch:
                async for row, outcome in self._run(client, block.keys, block.inputs, todo, scratch):
                    outcomes[row] = outcome
                    if outcome.files:
                        files[row], error = await self._upload(outcome, block.custom_ids[row])
                        if error is not None:
                            outcomes[row] = attrs.evolve(outcome, error=error, files=())
        columns = [
            outcome_row(outcomes.get(i), _error_of(outcomes.get(i), block.errors[i]), block.keys[i], files.get(i, ()))
            for i in range(len(rows))
        ]
        return _with_outcomes(batch, columns)

    async def _run(
        self, client: AsyncClient, keys: list[str], inputs: list[Any], todo: list[int], scratch: str
    ) -> AsyncIterator[tuple[int, Outcome]]:
        s = self.settings
        journal = RayJournal(self._handle, self._name, s.job, [keys[i] for i in todo], lease_seconds=s.lease_seconds)
        run = client.generate_many(
            [inputs[i] for i in todo],
            journal=cast(Any, journal),
            budget=s.budget,
            cost_per_task=s.cost_per_task,
            download_to=scratch if s.download_to is not None else None,
            timeout=s.timeout,
            **dict(s.fields),
        )
        async with run:
            async for outcome in run:
                yield todo[outcome.index], outcome

    async def _upload(self, outcome: Outcome, custom_id: str | None) -> tuple[list[str], Exception | None]:
        """Copy a result's files to ``download_to``, named from the custom_id when there is one."""
        assert outcome.task is not None
        assert self.settings.download_to is not None
        stem = safe_stem(outcome.task.id)
        names = [(custom_id + p.name[len(stem) :]) if custom_id else p.name for p in outcome.files]
        try:
            paths = await asyncio.to_thread(
                _copy_out, self.settings.download_to, self.settings.filesystem, list(outcome.files), names
            )
        except (OSError, pa.ArrowException) as exc:
            where = self.settings.download_to
            error = errors.DownloadError(f"cannot save into {where}: {exc}", task_id=outcome.task.id)
            error.__cause__ = exc
            return [], error
        return paths, None


def _error_of(outcome: Outcome | None, row_error: Exception | None) -> Exception | None:
    if row_error is not None:
        return row_error
    if outcome is None:
        return errors.EvolinkError("no outcome was delivered for this row")  # never silently empty
    return outcome.error


def _copy_out(destination: str, filesystem: Any, files: list[Path], names: list[str]) -> list[str]:
    if filesystem is None:
        if "://" in destination:
            filesystem, destination = pafs.FileSystem.from_uri(destination)
        else:
            filesystem, destination = pafs.LocalFileSystem(), os.path.abspath(destination)
    base = destination.rstrip("/")
    filesystem.create_dir(base, recursive=True)
    saved = []
    for source, name in zip(files, names, strict=True):
        target = f"{base}/{name}"
        with open(source, "rb") as src, filesystem.open_output_stream(target) as out:
            shutil.copyfileobj(src, out)
        saved.append(target)
    return saved


def _with_outcomes(batch: pa.Table, columns: list[dict[str, Any]]) -> pa.Table:
    for name in OUTCOME_COLUMNS:
        values = [row[name] for row in columns]
        if name == "error_code":
            values = [str(v) if v is not None else None for v in values]
        batch = batch.append_column(pa.field(name, _OUTCOME_TYPES[name]), pa.array(values, type=_OUTCOME_TYPES[name]))
    return batch


def default_compute(actors: int = 2, *, calls_per_actor: int = 4) -> Any:
    """Ray's actor pool for :func:`generate`: ``actors`` actors, each running ``calls_per_actor`` blocks at once.

    An actor mostly waits on the network, so it takes several blocks at a time (Ray's default is one): while
    one block waits for its slowest task, the others keep the actor's share of the account busy.
    """
    return ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=calls_per_actor)


def generate(
    ds: ray.data.Dataset,
    *,
    job: str,
    requests: RowSource = "prompt",
    api_key: str | None = None,
    base_url: str | None = None,
    files_base_url: str | None = None,
    limits: Limits = Limits(),
    poll: PollPolicy = PollPolicy(),
    retry: RetryPolicy = RetryPolicy(),
    timeouts: Timeouts = Timeouts(),
    coordinator: CoordinatorChoice = "ray",
    budget: float | None = None,
    cost_per_task: float | None = None,
    timeout: float | None = None,
    download_to: str | None = None,
    filesystem: Any = None,
    compute: Any = None,
    num_cpus: float = 0.25,
    batch_size: int | None = 64,
    **fields: Any,
) -> ray.data.Dataset:
    """The outcomes of a Dataset of inputs: its columns plus :data:`OUTCOME_COLUMNS`, one row per input.

    ``requests``: the column of prompts (default ``"prompt"``), :data:`ROWS` (every row is a request in the batch
    file's JSON shape), or a function of a row that returns a prompt, a request or a mapping of request fields.
    ``job`` names the job: a rerun under the same name sends the same Idempotency-Keys (nothing is paid twice).
    A ``custom_id`` column names each input (its identity across reruns, and its files' names). ``limits``,
    ``budget``, ``timeout`` and ``fields`` mean what they mean for ``generate_many``, for the whole job.
    ``compute``: Ray's strategy (:func:`default_compute`); ``num_cpus`` per actor; ``batch_size`` rows per call.
    """
    settings = RaySettings(
        job=job,
        api_key=api_key,
        base_url=base_url,
        files_base_url=files_base_url,
        requests=requests,
        fields=fields,
        limits=limits,
        poll=poll,
        retry=retry,
        timeouts=timeouts,
        coordinator=coordinator,
        budget=budget,
        cost_per_task=cost_per_task,
        timeout=timeout,
        download_to=download_to,
        filesystem=filesystem,
    )
    resolve_api_key(api_key)  # a missing key fails here, not in every actor
    _check_columns(ds, requests)
    return ds.map_batches(
        GenerateBatch,
        fn_constructor_kwargs={"settings": settings},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=compute if compute is not None else default_compute(),
        num_cpus=num_cpus,
    )


def _check_columns(ds: ray.data.Dataset, requests: RowSource) -> None:
    """What the schema tells before any work (when Ray knows it without running anything)."""
    schema = ds.schema(fetch_if_missing=False)
    if schema is None:
        return
    names = set(schema.names)
    taken = names.intersection(OUTCOME_COLUMNS)
    if taken:
        raise errors.ValidationError(sorted(taken)[0], "is an outcome column: rename it in the input Dataset")
    if isinstance(requests, str) and requests != ROWS and requests not in names:
        raise errors.ValidationError("requests", f"the Dataset has no column {requests!r} (columns: {sorted(names)})")
    if CUSTOM_ID not in names:
        warnings.warn(
            f"the Dataset has no {CUSTOM_ID!r} column: each input's key comes from its content and its position in "
            "its block, which holds when Ray runs a block again but not for a rerun read into other blocks; "
            f"add a {CUSTOM_ID!r} column for exactly-once across reruns",
            RuntimeWarning,
            stacklevel=3,
        )
