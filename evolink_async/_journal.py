"""A SQLite record of a batch, so that a rerun resumes instead of resubmitting (stdlib sqlite3, off the loop).

One row per input, keyed by its position. The Idempotency-Key is written — and committed — *before* the
create is sent, so a crash at any moment leaves either no task or a task the saved key will find again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs

from . import errors

__all__ = ("Journal", "JournalEntry", "fingerprint")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    task_id TEXT,
    state TEXT NOT NULL,
    task_json TEXT,
    files TEXT,
    credits REAL,
    updated REAL NOT NULL,
    sources TEXT,
    custom_id TEXT
);
CREATE TABLE IF NOT EXISTS prices (
    price_class TEXT PRIMARY KEY,
    credits REAL NOT NULL
);
"""


# What a task keeps when its whole body cannot be stored (an unknown field nested deeper than the JSON encoder
# goes): enough to resume it and hand it back, never a lost task id.
_ESSENTIAL = ("id", "status", "progress", "model", "created", "results")


def _task_text(task_json: dict[str, Any]) -> str:
    try:
        return json.dumps(task_json)
    except (RecursionError, ValueError, TypeError):
        return json.dumps({k: task_json[k] for k in _ESSENTIAL if k in task_json})


def fingerprint(body: dict[str, Any]) -> str:
    """A stable digest of a request body (order of keys does not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


@attrs.frozen
class JournalEntry:
    """One input's row. ``state``: planned (key saved, create maybe sent), submitted (task id known),
    completed or failed (final)."""

    index: int
    fingerprint: str
    idempotency_key: str
    task_id: str | None
    state: str
    task_json: dict[str, Any] | None
    files: tuple[str, ...]
    credits: float | None
    #: The URLs its local ``image_urls`` were uploaded to before the create (``None``: it had none).
    sources: tuple[str, ...] | None = None
    #: The input's own ``custom_id``, when it had one.
    custom_id: str | None = None


class Journal:
    """The batch journal. Every call runs in a worker thread; one connection, used under a lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r}>"

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._conn is None:
                    raise errors.ClientStateError(f"journal {self.path} is closed")
                return fn(self._conn)

        return await anyio.to_thread.run_sync(call)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (only a power cut can lose the last commits).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
            if "sources" not in columns:  # a journal written before uploads existed
                conn.execute("ALTER TABLE items ADD COLUMN sources TEXT")
            if "custom_id" not in columns:  # ... or before inputs had their own ids
                conn.execute("ALTER TABLE items ADD COLUMN custom_id TEXT")
            return conn

        try:
            self._conn = await anyio.to_thread.run_sync(connect)
        except sqlite3.DatabaseError as exc:
            raise errors.JournalError(f"cannot open journal {self.path}: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close)

    async def get(self, index: int) -> JournalEntry | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT idx, fingerprint, idempotency_key, task_id, state, task_json, files, credits, sources, "
                "custom_id FROM items WHERE idx = ?",
                (index,),
            ).fetchone()
        )
        if row is None:
            return None
        return JournalEntry(
            index=row[0],
            fingerprint=row[1],
            idempotency_key=row[2],
            task_id=row[3],
            state=row[4],
            task_json=json.loads(row[5]) if row[5] else None,
            files=tuple(json.loads(row[6])) if row[6] else (),
            credits=row[7],
            sources=tuple(json.loads(row[8])) if row[8] else None,
            custom_id=row[9],
        )

    async def plan(
        self, index: int, fp: str, key: str, sources: list[str] | None = None, custom_id: str | None = None
    ) -> None:
        """Record the key (and the URLs of the request's uploads) before the create is sent (committed on return)."""
        text = json.dumps(sources) if sources is not None else None
        await self._run(
            lambda c: c.execute(
                "INSERT INTO items (idx, fingerprint, idempotency_key, state, updated, sources, custom_id) "
                "VALUES (?, ?, ?, 'planned', ?, ?, ?)",
                (index, fp, key, time.time(), text, custom_id),
            )
        )

    async def replan(self, index: int, key: str) -> None:
        """A failed input gets a new task (``retry_failed``): its new key, recorded before that create is sent."""
        await self._run(
            lambda c: c.execute(
                "UPDATE items SET idempotency_key = ?, task_id = NULL, state = 'planned', task_json = NULL, "
                "credits = NULL, updated = ? WHERE idx = ?",
                (key, time.time(), index),
            )
        )

    async def submitted(self, index: int, task_id: str, credits: float | None) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE items SET task_id = ?, state = 'submitted', credits = ?, updated = ? WHERE idx = ?",
                (task_id, credits, time.time(), index),
            )
        )

    async def finished(
        self,
        index: int,
        *,
        state: str,
        task_json: dict[str, Any] | None,
        files: Sequence[str] = (),
        credits: float | None = None,
    ) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE items SET state = ?, task_json = ?, files = ?, credits = ?, updated = ? WHERE idx = ?",
                (
                    state,
                    _task_text(task_json) if task_json else None,
                    json.dumps(list(files)),
                    credits,
                    time.time(),
                    index,
                ),
            )
        )

    async def first_index(self) -> int | None:
        """The lowest input index recorded (None for a new journal)."""
        row = await self._run(lambda c: c.execute("SELECT MIN(idx) FROM items").fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def known_price(self, price_class: str) -> float | None:
        """The price an earlier run learned for a price class, if any (a rerun sends no probe of its own)."""
        row = await self._run(
            lambda c: c.execute("SELECT credits FROM prices WHERE price_class = ?", (price_class,)).fetchone()
        )
        return None if row is None else float(row[0])

    async def learn_price(self, price_class: str, price: float) -> None:
        """Remember what a task of this class costs (the highest price the API told)."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO prices (price_class, credits) VALUES (?, ?) "
                "ON CONFLICT(price_class) DO UPDATE SET credits = MAX(credits, excluded.credits)",
                (price_class, price),
            )
        )

    async def committed(self) -> float:
        """Credits recorded for inputs created in earlier runs (reserved if running, charged if done)."""
        total = await self._run(
            lambda c: c.execute(
                "SELECT COALESCE(SUM(credits), 0) FROM items WHERE state IN ('submitted', 'completed')"
            ).fetchone()[0]
        )
        return float(total)
