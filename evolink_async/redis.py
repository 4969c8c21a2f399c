"""Limits shared by every process that uses one API key, through Redis (``pip install 'evolink-async[redis]'``).

::

    coordinator = RedisCoordinator("redis://localhost:6379/0")
    async with AsyncClient(coordinator=coordinator) as client:   # in each worker, replica or machine
        ...

All clients with the same Redis and ``namespace`` share one request pace (a token bucket in Lua, with a 429's
slow-down shared by all), one in-flight cap (``Limits.max_in_flight`` counts tasks across all processes, under
leases renewed while a task runs and expiring ``lease_seconds`` after a process dies), and the callback relay (a
replica that receives a callback for a task it does not wait on confirms it with one read and publishes the
final task; the replica that waits is woken within milliseconds). Redis unreachable: calls raise
``CoordinatorError`` naming it, or, with ``fallback="local"``, go on under each process's own limits with a
warning. Every Redis call has a timeout: nothing hangs on a dead Redis.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc

from . import errors
from ._coordinator import OnRelayed
from ._shared_journal import SharedJournal

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("evolink_async.redis needs the redis extra: pip install 'evolink-async[redis]'") from exc

__all__ = ("RedisCoordinator",)

log = logging.getLogger("evolink_async")
T = TypeVar("T")

# Redis's own clock (TIME) in every script: processes on several machines share one time line.
_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
_LOAD = """
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate', 'paused')
local nominal = tonumber(ARGV[1]); local burst = tonumber(ARGV[2])
local tokens = tonumber(h[1]) or burst; local ts = tonumber(h[2]) or now
local rate = math.min(tonumber(h[3]) or nominal, nominal); local paused = tonumber(h[4]) or 0
local elapsed = math.max(0, now - ts)
if rate < nominal then rate = math.min(nominal, rate + elapsed * nominal / 20) end
tokens = math.min(burst, tokens + elapsed * rate)
"""
_SAVE = """
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now), 'rate', tostring(rate),
  'paused', tostring(paused))
redis.call('EXPIRE', KEYS[1], 3600)
"""
# ARGV: nominal rate, burst, tokens needed (1, or 1 + the reserve a create leaves to reads). Returns the wait.
_TAKE = (
    _NOW
    + _LOAD
    + """
if paused > now then return tostring(paused - now) end
local wait = 0
if tokens >= tonumber(ARGV[3]) then tokens = tokens - 1 else wait = (tonumber(ARGV[3]) - tokens) / rate end
"""
    + _SAVE
    + "return tostring(wait)"
)
# ARGV: nominal rate, burst, retry_after (0: none). Halves the shared rate (down to 1/16), empties the bucket.
_SLOW = (
    _NOW
    + _LOAD
    + """
rate = math.max(nominal / 16, rate / 2); tokens = math.min(tokens, 0)
if tonumber(ARGV[3]) > 0 then paused = math.max(paused, now + tonumber(ARGV[3])) end
"""
    + _SAVE
)
# KEYS: the slots' sorted set (lease id -> expiry). ARGV: limit, lease seconds, lease id. 1: granted.
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3]); return 1
end
return 0
"""
)
# ARGV: lease seconds, lease ids... Renews the leases still there (XX); returns how many were.
_RENEW = (
    _NOW
    + """
local renewed = 0
for i = 2, #ARGV do renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i]) end
return renewed
"""
)


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for reprs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisCoordinator:
    """Shares the pace, the in-flight cap and callbacks of every client with the same Redis and ``namespace``.

    Pass it as ``AsyncClient(coordinator=...)`` (or ``Client(coordinator=...)``); one coordinator per client.
    ``lease_seconds``: how soon the slots of a process that died come back (leases are renewed every third of
    it while tasks run). ``timeout``: seconds for any Redis call. ``fallback="local"``: when Redis cannot be
    reached, go on under local limits (with a warning) instead of raising ``CoordinatorError``.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "evolink",
        lease_seconds: float = 15.0,
        timeout: float = 5.0,
        fallback: Literal["error", "local"] = "error",
    ) -> None:
        if fallback not in ("error", "local"):
            raise errors.ConfigurationError(f"fallback must be 'error' or 'local', got {fallback!r}")
        if not lease_seconds > 0 or not timeout > 0:
            raise errors.ConfigurationError("lease_seconds and timeout must be > 0")
        self.url = _safe_url(url)
        self.namespace = namespace
        self.lease_seconds = float(lease_seconds)
        self.fallback_local = fallback == "local"
        self._redis = aioredis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._pace_key = f"{namespace}:pace"
        self._slots_key = f"{namespace}:slots"
        self._channel = f"{namespace}:tasks"
        self._take = self._redis.register_script(_TAKE)
        self._slow = self._redis.register_script(_SLOW)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._held: set[str] = set()
        self._to_release: list[str] = []
        # Made in the event loop that runs the client (events need one), by run() and acquire_slot().
        self._release_wanted: anyio.Event | None = None
        self._slot_freed: anyio.Event | None = None
        self._warned = False
        self._down = False  # an outage already told (the local fallback logs it once, not per request)
        self._journals: list[SharedJournal] = []

    def journal(self, name: str) -> SharedJournal:
        """The journal of a batch that several workers share: ``generate_many(inputs, journal=...)`` in each.

        Each input is claimed by one worker (a lease like the slots'), its Idempotency-Key stored before its
        create: each input is created once across all workers, a dead worker's inputs are taken over, and a
        rerun skips what is done. Use it with a client that has this coordinator.
        """
        journal = SharedJournal(
            self._redis, name, namespace=self.namespace, lease_seconds=self.lease_seconds, call=self._call
        )
        self._journals.append(journal)
        return journal

    def __repr__(self) -> str:
        return f"<RedisCoordinator {self.url} namespace={self.namespace!r} leases={len(self._held)}>"

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await fn()
        except (RedisError, OSError) as exc:
            raise errors.CoordinatorError(
                f"the coordinator {self.url} (namespace {self.namespace!r}) cannot {what}: {type(exc).__name__}: {exc}"
            ) from None
        self._down = False  # reached again: the next outage is told again
        return result

    def _falling_back(self, exc: errors.CoordinatorError) -> bool:
        """With ``fallback="local"``: warn once, log once per outage (not once per request), and let the caller
        go on under local limits."""
        if not self.fallback_local:
            return False
        if not self._warned:
            self._warned = True
            warnings.warn(f"{exc}; going on under this process's own limits", RuntimeWarning, stacklevel=3)
        if not self._down:
            self._down = True
            log.warning("%s; going on under this process's own limits until it answers again", exc)
        else:
            log.debug("%s; still under this process's own limits", exc)
        return True

    async def aclose(self) -> None:
        """Close the connection to Redis (a client using this coordinator closes it when it closes)."""
        await self._redis.aclose()

    # -- the pace --------------------------------------------------------------------------------------

    async def take_token(self, *, rate: float, burst: int, needed: float) -> float:
        """One token of the shared bucket, or the seconds to wait for one (see ``Coordinator``)."""
        args = [repr(rate), str(burst), repr(needed)]
        try:
            wait = await self._call("pace a request", lambda: self._take(keys=[self._pace_key], args=args))
        except errors.CoordinatorError as exc:
            if self._falling_back(exc):
                return -1.0  # the caller's local bucket decides
            raise
        return _number(wait, "pace a request")

    async def rate_limited(self, *, rate: float, retry_after: float | None) -> None:
        """Slow every process down after a 429."""
        args = [repr(rate), "1", repr(retry_after or 0.0)]
        try:
            await self._call("share a slow-down", lambda: self._slow(keys=[self._pace_key], args=args))
        except errors.CoordinatorError as exc:
            if not self._falling_back(exc):
                raise

    # -- the in-flight cap ------------------------------------------------------------------------------

    async def acquire_slot(self, limit: int) -> str:
        """Wait for one of ``limit`` slots shared by all processes; the lease id (``""``: a local fallback)."""
        lease = secrets.token_hex(8)
        args = [str(limit), repr(self.lease_seconds), lease]
        pause = 0.02
        while True:
            try:
                granted = await self._call(
                    "take an in-flight slot", lambda: self._acquire(keys=[self._slots_key], args=args)
                )
            except errors.CoordinatorError as exc:
                if self._falling_back(exc):
                    return ""
                raise
            if granted:
                self._held.add(lease)
                return lease
            # Full: a slot freed here wakes us at once; one freed elsewhere is seen on the next try.
            if self._slot_freed is None:
                self._slot_freed = anyio.Event()
            freed = self._slot_freed
            with anyio.move_on_after(pause * (0.5 + random.random())):
                await freed.wait()
            pause = min(0.1, pause * 1.5)

    def release_slot(self, lease: str) -> None:
        """Give a slot back; removed from Redis in the background (it also expires on its own)."""
        if not lease or lease not in self._held:
            return
        self._held.discard(lease)
        self._to_release.append(lease)
        if self._release_wanted is not None:
            self._release_wanted.set()

    # -- the relay -------------------------------------------------------------------------------------

    async def expect(self, task_id: str) -> None:
        """Record a task created with the callback URL (for a day: callbacks come when tasks end)."""
        key = f"{self._channel}:expected:{task_id}"
        await self._call("record a task", lambda: self._redis.set(key, "1", ex=86400))

    async def is_expected(self, task_id: str) -> bool:
        """Whether any process created this task with the callback URL."""
        key = f"{self._channel}:expected:{task_id}"
        return bool(await self._call("look a task up", lambda: self._redis.exists(key)))

    async def publish(self, task: Mapping[str, Any]) -> None:
        """Tell every process that this confirmed task is final."""
        data = json.dumps(task, separators=(",", ":"))
        try:
            await self._call("relay a task", lambda: self._redis.publish(self._channel, data))
        except errors.CoordinatorError as exc:
            if not self._falling_back(exc):
                raise

    # -- background work -------------------------------------------------------------------------------

    async def run(self, on_relayed: OnRelayed, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Renew and release leases, and listen to the relay, until cancelled."""
        try:
            try:
                # Reached before any background work starts: Redis down at start is a CoordinatorError of its
                # own, not one wrapped in a task group's ExceptionGroup.
                await self._call("be reached", self._redis.ping)
            except errors.CoordinatorError as exc:
                if not self._falling_back(exc):
                    raise
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renewing)
                tg.start_soon(self._releasing)
                await tg.start(self._listening, on_relayed)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._release_now()
                await self.aclose()

    async def _renewing(self) -> None:
        while True:
            await anyio.sleep(self.lease_seconds / 3)
            for journal in self._journals:
                try:
                    await journal.renew()
                except errors.CoordinatorError as exc:
                    log.warning("%s (the claims expire after %g s)", exc, self.lease_seconds)
            if not self._held:
                continue
            args = [repr(self.lease_seconds), *sorted(self._held)]
            try:
                renewed = _number(
                    await self._call("renew leases", functools.partial(self._renew, keys=[self._slots_key], args=args)),
                    "renew leases",
                )
            except errors.CoordinatorError as exc:
                log.warning("%s (the leases expire after %g s)", exc, self.lease_seconds)
                continue
            if renewed < len(args) - 1:
                log.warning("%d in-flight leases had expired (a stall longer than the lease?)", len(args) - 1 - renewed)

    async def _releasing(self) -> None:
        while True:
            self._release_wanted = anyio.Event()
            if not self._to_release:
                await self._release_wanted.wait()
            try:
                await self._release_now()
            except errors.CoordinatorError as exc:
                log.warning("%s (the leases expire after %g s)", exc, self.lease_seconds)

    async def _release_now(self) -> None:
        leases, self._to_release = self._to_release, []
        if leases:
            await self._call("release slots", lambda: self._redis.zrem(self._slots_key, *leases))
            freed, self._slot_freed = self._slot_freed, None
            if freed is not None:
                freed.set()

    async def _listening(self, on_relayed: OnRelayed, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        pause = 0.1
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await self._call("listen to the relay", lambda: pubsub.subscribe(self._channel))
                    if not started:
                        started = True
                        task_status.started()
                    pause = 0.1
                    await self._relay_messages(pubsub, on_relayed)
            except errors.CoordinatorError as exc:
                if not started:
                    if not self._falling_back(exc):
                        raise
                    started = True
                    task_status.started()
                # Once per outage (the fallback's line, or this one): a retry every few seconds is no news.
                (log.debug if self._down else log.warning)("%s; listening again in %g s", exc, pause)
                self._down = True
            await anyio.sleep(pause)
            pause = min(5.0, pause * 2)

    async def _relay_messages(self, pubsub: Any, on_relayed: OnRelayed) -> None:
        while True:
            message = await self._call(
                "listen to the relay", lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            )
            if message is None or message.get("type") != "message":
                continue
            try:
                on_relayed(json.loads(message["data"]))
            except Exception:  # a bad message must not stop the relay
                log.exception("could not use a relayed task")


def _number(answer: object, what: str) -> float:
    """A Lua script's answer as a number (redis-py types script results loosely: check, never assume)."""
    if isinstance(answer, (int, float, str, bytes)) and not isinstance(answer, bool):
        try:
            return float(answer)
        except ValueError:
            pass
    raise errors.CoordinatorError(f"the coordinator answered {answer!r} to {what!r}, not a number")
