"""Serve's local write-ahead journal: what was received while Redis did not answer.

A record is one operation serve could not write to Redis (a sidecar event, a note, an agent's
message from a webhook, ...), kept in arrival order until `Intake` replays it into Redis.

Storage is one SQLite database in WAL mode under `SERVER_DATA_DIR/journal/` (docs/journal.md says
why SQLite rather than a segment file of our own): `synchronous=FULL`, so a commit is on disk
(the WAL fsynced) before `append` returns. Appends are group-committed: every append that
arrives while a commit is on disk joins the next one, so an outage at hundreds of events a
second costs one fsync per batch, not per event. SQLite's own calls run on one thread of their
own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

FILE_NAME = "journal.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order, never reused
    kind TEXT NOT NULL,                      -- which operation (Intake's handlers)
    body TEXT NOT NULL,                      -- its arguments, JSON
    at   REAL NOT NULL                       -- when it was received (epoch seconds)
)
"""


class JournalFull(Exception):
    """The journal holds its maximum size; nothing more can be made durable locally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One journaled operation."""

    seq: int
    kind: str
    args: dict[str, Any]
    at: float


class Journal:
    """Append in arrival order; read the oldest; remove what was replayed. Async facade over a
    SQLite connection owned by one worker thread."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self._directory = directory
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self.entries = 0
        self.bytes = 0  # the bodies' size: what the bound is about
        self._batch: list[tuple[str, str, float, asyncio.Future[None]]] = []
        self._committing: asyncio.Task[None] | None = None
        self._unsettled = 0  # appends not yet answered (committed or failed)

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._directory, 0o700)
        # isolation_level=None: transactions are ours (BEGIN/COMMIT), not the module's guesses.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        os.chmod(self.path, 0o600)  # message text lives here: private to the service user
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        self.entries, self.bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM records").fetchone()
        self._db = db
        if self.entries:
            logger.bind(entries=self.entries, bytes=self.bytes).warning(
                "Journal holds records from an earlier run; they are replayed into Redis")

    async def close(self) -> None:
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        await self._run(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- writing ----------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        """Nothing on disk and nothing on its way there."""
        return self.entries == 0 and self._unsettled == 0

    def has_room(self, size: int) -> bool:
        queued = sum(len(body) for _, body, _, _ in self._batch)
        return self.bytes + queued + size <= self.max_bytes

    async def append(self, kind: str, args: dict[str, Any], at: float) -> None:
        """Return once the record is on disk; JournalFull when it would pass the bound."""
        # ASCII JSON: a lone surrogate (which WhatsApp text can carry) cannot fail the write,
        # and the length in characters is the length in bytes.
        body = json.dumps(args, separators=(",", ":"))
        if not self.has_room(len(body)):
            raise JournalFull(f"journal holds {self.bytes} of {self.max_bytes} bytes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((kind, body, at, done))
        self._unsettled += 1
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_batches(), name="journal-commit")
        try:
            await asyncio.shield(done)  # a cancelled caller does not cancel the commit
        finally:
            self._unsettled -= 1

    async def _commit_batches(self) -> None:
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                await self._run(self._insert, [(k, b, a) for k, b, a, _ in batch])
            except Exception as err:  # a full disk, say: every waiter learns it
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(err)
                continue
            self.entries += len(batch)
            self.bytes += sum(len(b) for _, b, _, _ in batch)
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)

    def _insert(self, rows: list[tuple[str, str, float]]) -> None:
        assert self._db is not None, "open() first"
        with _transaction(self._db):
            self._db.executemany("INSERT INTO records (kind, body, at) VALUES (?, ?, ?)", rows)

    # --- reading and removing ---------------------------------------------------------------
    async def oldest(self, limit: int) -> list[Record]:
        rows = await self._run(self._select, limit)
        return [Record(seq=seq, kind=kind, args=json.loads(body), at=at)
                for seq, kind, body, at in rows]

    def _select(self, limit: int) -> list[tuple[int, str, str, float]]:
        assert self._db is not None, "open() first"
        rows: list[tuple[int, str, str, float]] = self._db.execute(
            "SELECT seq, kind, body, at FROM records ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return rows

    async def remove_through(self, seq: int) -> None:
        """Every record up to `seq` is in Redis now: forget them (one commit for the batch)."""
        count, size = await self._run(self._delete_through, seq)
        self.entries -= count
        self.bytes -= size

    def _delete_through(self, seq: int) -> tuple[int, int]:
        assert self._db is not None, "open() first"
        with _transaction(self._db):
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM records WHERE seq <= ?",
                (seq,)).fetchone()
            self._db.execute("DELETE FROM records WHERE seq <= ?", (seq,))
        if self._db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None:
            # Emptied: give the WAL file its space back.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(count), int(size)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
