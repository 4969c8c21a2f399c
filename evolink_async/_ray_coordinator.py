"""The coordinator and the batch journal that live in Ray: limits for the whole account, a ledger per job.

:func:`shared_state` finds (or starts) the named async actor that holds :class:`~._ray_state.SharedState` for one
API key; :class:`RayCoordinator` is the engine's coordinator over it (pace, in-flight leases), and
:class:`RayJournal` a block's journal over a job's ledger (keys, task ids, the shared budget).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc

from . import errors
from ._coordinator import OnRelayed
from ._journal import JournalEntry
from ._ray_state import SharedState

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("evolink_async.ray needs the ray extra: pip install 'evolink-async[ray]'") from exc

__all__ = ("NAMESPACE", "RayCoordinator", "RayJournal", "coordinator_name", "shared_state")

log = logging.getLogger("evolink_async")
T = TypeVar("T")

#: The Ray namespace of the coordinator actors: every job on the cluster finds them there.
NAMESPACE = "evolink"
# Ledger writes sent together (see RayJournal._record).
_FLUSH_EVERY = 32


def coordinator_name(api_key: str, base_url: str) -> str:
    """The actor's name for one account at one API: a hash, never the key itself."""
    digest = hashlib.sha256(f"evolink-async\0{base_url}\0{api_key}".encode()).hexdigest()
    return f"evolink-coordinator-{digest[:24]}"


def shared_state(name: str) -> Any:
    """The handle of the named coordinator actor, started on first use (detached: it outlives any one job)."""
    actor = ray.remote(SharedState)
    return actor.options(
        name=name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,  # bookkeeping only: it must never wait for a CPU the map actors hold
        max_restarts=-1,
        # Callers waiting for a slot wait inside it (a freed slot wakes them): room for many at once.
        max_concurrency=10_000,
    ).remote()


async def _awaited(ref: Any) -> Any:
    return await ref


async def _call(name: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except RayError as exc:
        raise errors.CoordinatorError(
            f"the Ray coordinator {name} cannot {what}: {type(exc).__name__}: {exc}"
        ) from None


class RayCoordinator:
    """The engine's coordinator over the shared actor: one pace and one in-flight cap for every actor of every
    job that uses the same API key. Leases are renewed while tasks run and expire ``lease_seconds`` after the
    process holding them dies. Callbacks are not relayed: a Ray batch polls (it sets no callback URL)."""

    def __init__(self, handle: Any, name: str, *, lease_seconds: float = 15.0) -> None:
        self._handle = handle
        self.name = name
        self.lease_seconds = float(lease_seconds)
        self._held: set[str] = set()

    def __repr__(self) -> str:
        return f"<RayCoordinator {self.name} leases={len(self._held)}>"

    async def take_token(self, *, rate: float, burst: int, needed: float) -> float:
        """One token of the shared bucket, or the seconds to wait for one."""
        wait = await _call(self.name, "pace a request", lambda: self._handle.take_token.remote(rate, burst, needed))
        return float(wait)

    async def rate_limited(self, *, rate: float, retry_after: float | None) -> None:
        """Slow every actor down after a 429."""
        await _call(self.name, "share a slow-down", lambda: self._handle.rate_limited.remote(rate, retry_after or 0.0))

    async def acquire_slot(self, limit: int) -> str:
        """Wait for one of ``limit`` slots shared by every actor; the lease id."""
        while True:
            lease = await _call(
                self.name,
                "take an in-flight slot",
                lambda: self._handle.acquire_slot.remote(limit, self.lease_seconds),
            )
            if lease:
                self._held.add(lease)
                return str(lease)

    async def _renew(self, held: list[str]) -> None:
        try:
            await _call(self.name, "renew leases", lambda: self._handle.renew.remote(held, self.lease_seconds))
        except errors.CoordinatorError as exc:
            log.warning("%s (the leases expire after %g s)", exc, self.lease_seconds)

    def release_slot(self, lease: str) -> None:
        """Give a slot back (sent at once, not awaited: it also expires on its own)."""
        if lease in self._held:
            self._held.discard(lease)
            self._handle.release.remote([lease])

    async def expect(self, task_id: str) -> None:
        """Nothing to record: a Ray batch sets no callback URL."""

    async def is_expected(self, task_id: str) -> bool:
        """No callback is relayed between actors."""
        return False

    async def publish(self, task: Mapping[str, Any]) -> None:
        """Nothing to relay (see ``is_expected``)."""

    async def run(self, on_relayed: OnRelayed, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Renew this process's leases until cancelled; give them back when it ends."""
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.lease_seconds / 3)
                if self._held:
                    await self._renew(sorted(self._held))
        finally:
            held, self._held = sorted(self._held), set()
            if held:
                self._handle.release.remote(held)


class RayJournal:
    """One block's journal over its job's ledger: ``generate_many(rows, journal=RayJournal(...))``.

    Each input's Idempotency-Key is given (``keys``, derived from the input: see ``evolink_async._ray_rows``), so a
    block that Ray runs again sends the same keys. An input the ledger knows is resumed (awaited by its task id,
    or its create resent with its key) and never counted against the budget twice; the budget is one counter
    per job for every actor. Each input belongs to its block (Ray gives a block to one actor at a time): there
    are no claims to take.
    """

    shared = True

    def __init__(self, handle: Any, name: str, job: str, keys: Sequence[str], *, lease_seconds: float) -> None:
        self._handle = handle
        self._name = name
        self.job = job
        self.path = f"Ray job {job!r}"  # named so in errors, like a journal file
        self.lease_seconds = lease_seconds
        self._keys = list(keys)
        self._known: list[dict[str, Any] | None] = []
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._sent: list[Any] = []

    def __repr__(self) -> str:
        return f"<RayJournal job={self.job!r} inputs={len(self._keys)}>"

    def _ledger(self, what: str, method: str, *args: Any) -> Awaitable[Any]:
        return _call(self._name, what, lambda: getattr(self._handle, method).remote(self.job, *args))

    def key_for(self, index: int) -> str:
        """The Idempotency-Key of input ``index`` of the block (derived, the same on every run)."""
        return self._keys[index]

    async def open(self) -> None:
        """Read what the ledger knows of the block's inputs, in one call."""
        self._known = await self._ledger("read the ledger", "entries", self._keys)

    async def close(self) -> None:
        """The block's last writes, sent and confirmed (its outcomes are returned after them)."""
        self._flush()
        sent, self._sent = self._sent, []
        for ref in sent:
            await _call(self._name, "write the ledger", functools.partial(_awaited, ref))

    def _record(self, index: int, changes: dict[str, Any]) -> None:
        # Written in batches, not awaited one by one: the ledger saves reads and budget on a rerun, but no create
        # depends on it (the keys are derived), so a write lost with a dead actor costs at most a replayed create.
        self._pending.append((self._keys[index], changes))
        if len(self._pending) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            records, self._pending = self._pending, []
            self._sent.append(self._handle.record.remote(self.job, records))

    async def claim(self, index: int) -> bool:
        return True

    async def let_go(self, index: int) -> None:
        """Nothing held."""

    async def finished_among(self, indices: list[int]) -> set[int]:
        return set()  # never asked: no input is left to another worker

    async def get(self, index: int) -> JournalEntry | None:
        entry = self._known[index] if index < len(self._known) else None
        if entry is None or "fingerprint" not in entry:
            return None
        # A final task is awaited again by its id (one read): its outcome is this block's to report.
        state = "submitted" if entry.get("task_id") else "planned"
        sources = entry.get("sources")
        return JournalEntry(
            index=index,
            fingerprint=entry["fingerprint"],
            idempotency_key=self._keys[index],
            task_id=entry.get("task_id"),
            state=state,
            task_json=None,
            files=(),
            credits=entry.get("credits"),
            sources=tuple(sources) if sources is not None else None,
        )

    async def plan(self, index: int, fp: str, key: str, sources: list[str] | None = None) -> bool:
        self._record(index, {"fingerprint": fp, "sources": sources})
        return True

    async def submitted(self, index: int, task_id: str, credits: float | None) -> None:
        self._record(index, {"task_id": task_id, "credits": credits})

    async def finished(
        self,
        index: int,
        *,
        state: str,
        task_json: dict[str, Any] | None,
        files: Sequence[str] = (),
        credits: float | None = None,
    ) -> None:
        self._record(index, {"state": state, "credits": credits})

    async def first_index(self) -> int | None:
        return None  # each input is checked against its own entry

    async def committed(self) -> float:
        return 0.0  # the budget is kept by the job's shared counter (see reserve)

    async def reserve(self, amount: float, budget: float) -> bool:
        return bool(await self._ledger("reserve credits", "reserve", amount, budget))

    async def spent(self) -> float:
        return float(await self._ledger("read credits", "spent"))

    async def known_price(self, price_class: str) -> float | None:
        price = await self._ledger("read prices", "known_price", price_class)
        return float(price) if price is not None else None

    async def learn_price(self, price_class: str, price: float) -> None:
        await self._ledger("share a price", "learn_price", price_class, price)

    async def adjust(self, delta: float) -> None:
        if delta:
            await self._ledger("adjust credits", "adjust", delta)
