"""Intake: what serve receives counts as received only once it is durable (DESIGN.md).

Every operation that takes something in (a sidecar event, a note for the operators, an agent's
message from a webhook, a registry update) is submitted here by kind. While Redis answers,
the operation is applied at once. When Redis does not answer, the operation goes to the local
journal (`journal.py`), and so does everything submitted after it, until the journal is empty
again: that is what keeps each chat's order across an outage. A replayer probes Redis and, as
soon as it answers, applies the journaled operations in arrival order through the same handlers,
then hands back to the direct path. At start-up a journal left by a crash is replayed the same
way.

Operations are applied at least once: one that failed half-way (Redis went away between two of
its writes) is applied again whole. Every handler is idempotent for that reason (mailbox items
carry their WhatsApp id and the drain checks the mapping, notes their id, webhooks their claims).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from loguru import logger

from bridge import metrics
from bridge.relay.journal import Journal, JournalFull, Record
from bridge.store import failed, keys
from bridge.store.connection import unavailable

Handler = Callable[[dict[str, Any], float], Awaitable[Any]]
"""Applies one operation to Redis: (its arguments, when it was received) -> its result."""
Encoder = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns an operation's arguments into JSON-able ones for the journal (the handler accepts
both): the direct path then never pays for a serialisation it does not need."""

PROBE_SECONDS = 0.25  # how often Redis is asked whether it is back
_REPLAY_BATCH = 200
_POISON_ATTEMPTS = 3  # a record whose handler keeps failing (not for Redis) is parked
_FULL_WAIT_SECONDS = 0.5

JOURNALED = object()
"""What `submit` returns for an operation that went to the journal."""

# Set while the replayer applies a record: operations its handler submits go straight to Redis
# (they belong to the record being replayed, which is retried whole if Redis goes away again).
_replaying: contextvars.ContextVar[bool] = contextvars.ContextVar("replaying", default=False)


class Intake:
    def __init__(self, journal: Journal, redis: aioredis.Redis, *,
                 outage_note_after_s: float = 60.0) -> None:
        self.journal = journal
        self._redis = redis
        self._handlers: dict[str, Handler] = {}
        self._encoders: dict[str, Encoder] = {}
        self._journaling = False
        self._wake = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None
        self._outage_note_after_s = outage_note_after_s
        # Telling the operators (relay/outage.py): Redis out of reach for a while (seconds so
        # far); Redis back after a noted outage (its seconds, operations journaled meanwhile).
        self.on_long_outage: Callable[[float], Awaitable[None]] | None = None
        self.on_recovered: Callable[[float, int], Awaitable[None]] | None = None
        # After every outage, once the journal is replayed (the dispatcher sweeps for drain
        # jobs the outage lost).
        self.after_outage: list[Callable[[], Awaitable[Any]]] = []
        self._journaled_at_outage = 0
        self.down_since: float | None = None  # when Redis stopped answering (this outage)
        self._noted = False
        self._failures: dict[int, int] = {}
        # Counters for /global-status and /metrics (this process, since it started).
        self.journaled = 0
        self.replayed = 0
        self.parked = 0
        self.outages = 0
        self.last_outage_seconds: float | None = None

    def register(self, kind: str, handler: Handler, encode: Encoder | None = None) -> None:
        self._handlers[kind] = handler
        if encode is not None:
            self._encoders[kind] = encode

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self.journal.open()
        if not self.journal.empty:
            self._start_journaling()  # a crash left records: they go first
        self._replayer = asyncio.create_task(self._replay_forever(), name="journal-replayer")

    async def close(self) -> None:
        """At shutdown: what is journaled stays journaled (replayed at the next start)."""
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
        await self.journal.close()

    # --- submitting -------------------------------------------------------------------------
    async def submit(self, kind: str, args: dict[str, Any], *, at: float | None = None,
                     wait_when_full: bool = True) -> Any:
        """Apply the operation and return the handler's result, or journal it and return
        JOURNALED. Raises JournalFull only with `wait_when_full=False` (a webhook answers 503
        rather than wait); otherwise a full journal holds the caller until the replay makes
        room. Any other error of the handler reaches the caller."""
        at = time.time() if at is None else at
        handler = self._handlers[kind]
        if _replaying.get():
            return await handler(args, at)
        if not self._journaling:
            try:
                return await handler(args, at)
            except Exception as err:
                if not unavailable(err):
                    raise
                self._lost_redis(err)
        encode = self._encoders.get(kind)
        await self._append(kind, encode(args) if encode else args, at,
                           wait_when_full=wait_when_full)
        return JOURNALED

    async def _append(self, kind: str, args: dict[str, Any], at: float, *,
                      wait_when_full: bool) -> None:
        warned = False
        while True:
            try:
                await self.journal.append(kind, args, at)
                self.journaled += 1
                return
            except JournalFull:
                if not wait_when_full:
                    raise
                if not warned:  # the sidecar waits, and with it WhatsApp's deliveries
                    logger.bind(bytes=self.journal.bytes, max_bytes=self.journal.max_bytes
                                ).error("Journal is full; holding new events until it drains")
                    warned = True
                await asyncio.sleep(_FULL_WAIT_SECONDS)

    def _lost_redis(self, err: BaseException) -> None:
        if not self._journaling:
            logger.bind(error=type(err).__name__).warning(
                "Redis does not answer; journaling what arrives until it is back")
            self.down_since = time.time()
            self.outages += 1
            self._journaled_at_outage = self.journaled
            self._noted = False
            self._start_journaling()

    def _start_journaling(self) -> None:
        self._journaling = True
        self._wake.set()

    # --- replaying --------------------------------------------------------------------------
    async def _replay_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._journaling:
                try:
                    await self._replay_pass()
                except Exception:  # the replayer must outlive anything a record does
                    logger.exception("Journal replay pass failed")
                    await asyncio.sleep(PROBE_SECONDS)

    async def _replay_pass(self) -> None:
        if not await self._redis_answers():
            await self._maybe_note_outage()
            await asyncio.sleep(PROBE_SECONDS)
            return
        records = await self.journal.oldest(_REPLAY_BATCH)
        if not records:
            if self.journal.empty:
                await self._back_to_direct()
            else:
                await asyncio.sleep(0.005)  # an append is being committed behind the last one
            return
        done: Record | None = None
        try:
            for record in records:
                if not await self._apply(record):
                    break  # Redis went away again: probe, then go on from this record
                done = record
        finally:
            if done is not None:
                await self.journal.remove_through(done.seq)
                self.replayed += sum(1 for r in records if r.seq <= done.seq)

    async def _apply(self, record: Record) -> bool:
        """True when the record is in Redis (or parked); False when Redis went away."""
        token = _replaying.set(True)
        try:
            await self._handlers[record.kind](record.args, record.at)
        except Exception as err:
            if unavailable(err):
                return False
            attempts = self._failures.get(record.seq, 0) + 1
            self._failures[record.seq] = attempts
            logger.bind(kind=record.kind, seq=record.seq, attempt=attempts,
                        error=type(err).__name__).exception("Journal record could not be applied")
            if attempts < _POISON_ATTEMPTS:
                return False
            await self._park(record, err)
        finally:
            _replaying.reset(token)
        self._failures.pop(record.seq, None)
        return True

    async def _park(self, record: Record, err: Exception) -> None:
        """A record no retry will apply goes where operators look: the failed list."""
        entry = {"id": f"journal-{record.seq}-{int(time.time() * 1000)}",
                 "instance": str(record.args.get("instance_id", "")), "mailbox": None,
                 "journal": {"kind": record.kind, "args": record.args, "at": record.at},
                 "error": type(err).__name__, "reason": str(err)[:500], "at": time.time()}
        await failed.push(self._redis, json.dumps(entry), keys.stats(metrics.FAILED_ITEMS))
        self.parked += 1
        logger.bind(kind=record.kind, seq=record.seq).error(
            "Journal record moved to the failed list")

    async def _redis_answers(self) -> bool:
        try:
            await asyncio.wait_for(self._redis.ping(), PROBE_SECONDS * 4)
            return True
        except Exception as err:
            if unavailable(err) or isinstance(err, TimeoutError):
                return False
            raise

    async def _back_to_direct(self) -> None:
        # No await between the emptiness check (the caller's) and the switch: an operation
        # submitted from now on goes straight to Redis, behind everything replayed.
        self._journaling = False
        if self.down_since is None:
            logger.bind(replayed=self.replayed).info("Journal from an earlier run replayed")
            return
        seconds = time.time() - self.down_since
        self.last_outage_seconds = seconds
        logger.bind(seconds=round(seconds, 1), replayed=self.replayed).info(
            "Redis answers again; journal replayed")
        self.down_since = None
        for call in self.after_outage:
            await _best_effort(call())
        if self._noted and self.on_recovered is not None:
            await _best_effort(self.on_recovered(seconds,
                                                 self.journaled - self._journaled_at_outage))

    async def _maybe_note_outage(self) -> None:
        if self._noted or self.down_since is None or self.on_long_outage is None:
            return
        seconds = time.time() - self.down_since
        if seconds >= self._outage_note_after_s:
            self._noted = True
            await _best_effort(self.on_long_outage(seconds))

    # --- for operators ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What /global-status, /metrics and the status page show of the journal."""
        return {
            "mode": "journal" if self._journaling else "redis",
            "entries": self.journal.entries,
            "bytes": self.journal.bytes,
            "maxBytes": self.journal.max_bytes,
            "redisDownSince": self.down_since,
            "outages": self.outages,
            "lastOutageSeconds": self.last_outage_seconds,
            "journaledTotal": self.journaled,
            "replayedTotal": self.replayed,
            "parkedTotal": self.parked,
        }


async def _best_effort(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception:  # what follows an outage must not stop the replay
        logger.exception("A step after the Redis outage failed")
