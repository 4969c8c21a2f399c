"""The journal of a batch shared by several workers (processes, machines), in Redis: ``coordinator.journal(name)``.

Each input is claimed by one worker under a lease (renewed while the worker lives, gone ``lease_seconds`` after
it dies); its Idempotency-Key is stored before its create is sent, so a worker that takes over a dead worker's
input resends that create with the same key and EvoLink replays it: each input is created once across all
workers. Committed credits are one counter for all workers, reserved atomically against the budget.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from . import errors
from ._journal import JournalEntry

__all__ = ("SharedJournal",)

T = TypeVar("T")

# KEYS: the claim key. ARGV: worker id, lease ms. 1: the input is this worker's (new, kept, or taken over).
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1
"""
# KEYS: claim keys. ARGV: worker id, lease ms. Renews the claims this worker still holds.
_RENEW = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('PEXPIRE', KEYS[i], ARGV[2]); n = n + 1 end
end
return n
"""
# KEYS: claim keys. ARGV: worker id. Gives up the claims this worker holds.
_RELEASE = """
for i = 1, #KEYS do if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end end
return 1
"""
# KEYS: the claim key, the items hash. ARGV: worker id, index, entry JSON. Writes the entry only while this worker
# holds the claim: a worker that stalled past its lease (another took the input over) must not plan a second key.
_PLAN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]); return 1
"""
# KEYS: the committed-credits counter. ARGV: amount, budget. 1: reserved; 0: it would exceed the budget.
_RESERVE = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + tonumber(ARGV[1]) > tonumber(ARGV[2]) + 1e-9 then return 0 end
redis.call('SET', KEYS[1], tostring(now + tonumber(ARGV[1]))); return 1
"""


class SharedJournal:
    """A batch journal in Redis for several workers running the same ordered inputs.

    Pass it as ``generate_many(..., journal=coordinator.journal("name"))`` in every worker. An input finished by
    any worker is skipped by the others (and by a rerun); an input another live worker holds is skipped too, and
    taken over if that worker dies. Outcomes are reported by the worker that finished them.
    """

    shared = True

    def __init__(
        self, redis: Any, name: str, *, namespace: str, lease_seconds: float, call: Callable[..., Awaitable[Any]]
    ) -> None:
        if not isinstance(name, str) or not name:
            raise errors.ValidationError("journal", "a shared journal needs a non-empty name")
        self.path = f"redis journal {namespace}:batch:{name}"  # named so in errors, like a journal file
        self.lease_seconds = lease_seconds
        self._prefix = f"{namespace}:batch:{name}"
        self._items = f"{self._prefix}:items"
        self._committed = f"{self._prefix}:committed"
        self._prices = f"{self._prefix}:prices"
        self._worker = secrets.token_hex(8)
        self._call = call
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._reserve = redis.register_script(_RESERVE)
        self._plan = redis.register_script(_PLAN)
        self._redis = redis
        self.held: set[int] = set()

    def __repr__(self) -> str:
        return f"<SharedJournal {self._prefix} held={len(self.held)}>"

    def _claim_key(self, index: int) -> str:
        return f"{self._prefix}:claim:{index}"

    async def open(self) -> None:
        """Nothing to open: the journal lives in Redis (reached through the coordinator)."""

    async def close(self) -> None:
        """Give up this worker's claims at once (the others take them over without waiting for the leases)."""
        held, self.held = sorted(self.held), set()
        if held:
            keys = [self._claim_key(i) for i in held]
            await self._call("release claims", lambda: self._release(keys=keys, args=[self._worker]))

    async def claim(self, index: int) -> bool:
        """Whether this worker has input ``index`` now (new, already its own, or taken over from a dead worker)."""
        lease_ms = str(int(self.lease_seconds * 1000))
        key = self._claim_key(index)
        mine = await self._call("claim an input", lambda: self._claim(keys=[key], args=[self._worker, lease_ms]))
        if mine:
            self.held.add(index)
        return bool(mine)

    async def let_go(self, index: int) -> None:
        """Give up the claim of an input this worker decided without recording it final (a bad input)."""
        if index in self.held:
            self.held.discard(index)
            key = self._claim_key(index)
            await self._call("release a claim", lambda: self._release(keys=[key], args=[self._worker]))

    async def renew(self) -> None:
        """Renew this worker's claims (the coordinator calls it every third of the lease)."""
        if self.held:
            keys = [self._claim_key(i) for i in sorted(self.held)]
            lease_ms = str(int(self.lease_seconds * 1000))
            await self._call("renew claims", lambda: self._renew(keys=keys, args=[self._worker, lease_ms]))

    async def get(self, index: int) -> JournalEntry | None:
        raw = await self._call("read the journal", lambda: self._redis.hget(self._items, str(index)))
        if raw is None:
            return None
        data = json.loads(raw)
        return JournalEntry(
            index=index,
            fingerprint=data["fingerprint"],
            idempotency_key=data["key"],
            task_id=data.get("task_id"),
            state=data["state"],
            task_json=data.get("task"),
            files=tuple(data.get("files") or ()),
            credits=data.get("credits"),
            sources=tuple(data["sources"]) if data.get("sources") is not None else None,
            custom_id=data.get("custom_id"),
        )

    async def finished_among(self, indices: list[int]) -> set[int]:
        """Which of these inputs are final (read in chunks: a worker may wait on many)."""
        done: set[int] = set()
        for start in range(0, len(indices), 1000):
            chunk = indices[start : start + 1000]
            fields = [str(i) for i in chunk]
            raws = await self._call("read the journal", lambda f=fields: self._redis.hmget(self._items, f))
            for index, raw in zip(chunk, raws, strict=True):
                if raw is not None and json.loads(raw).get("state") in ("completed", "failed"):
                    done.add(index)
        return done

    async def _update(self, index: int, **changes: Any) -> None:
        raw = await self._call("read the journal", lambda: self._redis.hget(self._items, str(index)))
        data = json.loads(raw) if raw else {}
        data.update(changes, updated=time.time())
        text = json.dumps(data)
        await self._call("write the journal", lambda: self._redis.hset(self._items, str(index), text))

    async def plan(
        self, index: int, fp: str, key: str, sources: list[str] | None = None, custom_id: str | None = None
    ) -> bool:
        """Store the key before the create is sent; False (nothing stored) if this worker no longer holds the
        input's claim — another worker took it over, and only its key may be sent."""
        entry = {"fingerprint": fp, "key": key, "state": "planned", "sources": sources, "updated": time.time()}
        if custom_id is not None:
            entry["custom_id"] = custom_id
        keys = [self._claim_key(index), self._items]
        args = [self._worker, str(index), json.dumps(entry)]
        planned = await self._call("write the journal", lambda: self._plan(keys=keys, args=args))
        if not planned:
            self.held.discard(index)
        return bool(planned)

    async def submitted(self, index: int, task_id: str, credits: float | None) -> None:
        await self._update(index, task_id=task_id, state="submitted", credits=credits)

    async def finished(
        self,
        index: int,
        *,
        state: str,
        task_json: dict[str, Any] | None,
        files: Sequence[str] = (),
        credits: float | None = None,
    ) -> None:
        await self._update(index, state=state, task=task_json, files=list(files), credits=credits)
        self.held.discard(index)
        key = self._claim_key(index)
        await self._call("release a claim", lambda: self._release(keys=[key], args=[self._worker]))

    async def first_index(self) -> int | None:
        """None: workers write concurrently, so each input is checked against its own entry instead."""
        return None

    async def committed(self) -> float:
        """This worker counts only its own; the budget is kept by the shared counter (see ``reserve``)."""
        return 0.0

    async def reserve(self, amount: float, budget: float) -> bool:
        """Add ``amount`` to the credits all workers committed, unless that would exceed ``budget``."""
        args = [repr(amount), repr(budget)]
        return bool(await self._call("reserve credits", lambda: self._reserve(keys=[self._committed], args=args)))

    async def spent(self) -> float:
        """The credits all workers committed so far."""
        raw = await self._call("read credits", lambda: self._redis.get(self._committed))
        return float(raw or 0.0)

    async def known_price(self, price_class: str) -> float | None:
        """The price a worker of this batch learned for a price class (see ``_batch._price_class``), if any."""
        raw = await self._call("read prices", lambda: self._redis.hget(self._prices, price_class))
        return float(raw) if raw is not None else None

    async def learn_price(self, price_class: str, price: float) -> None:
        """Tell the other workers (and reruns) what a task of this class costs: they need no probe of their own."""
        await self._call("share a price", lambda: self._redis.hset(self._prices, price_class, repr(price)))

    async def adjust(self, delta: float) -> None:
        """Correct the shared committed credits (a price learned, a refund)."""
        if delta:
            await self._call("adjust credits", lambda: self._redis.incrbyfloat(self._committed, delta))
