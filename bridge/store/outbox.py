"""Outboxes: per-instance Redis streams of agent messages waiting to be sent to WhatsApp.

The webhook appends and answers at once; the `ponte serve` that runs the instance reads the stream
through a consumer group and acknowledges an entry only after the sidecar answered, so a restart
between the webhook's answer and the send loses nothing (the entry is re-read as pending).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bridge.ids import InstanceId
from bridge.store import keys

GROUP = "serve"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """One agent message to send."""

    account_id: int
    conversation_id: int
    cw_message_id: int
    jid: str
    text: str
    at: float


class Outbox:
    def __init__(self, redis: aioredis.Redis, instance_id: InstanceId) -> None:
        self._redis = redis
        self.instance_id = instance_id
        self.key = keys.outbox(instance_id)

    async def append(self, entry: OutboxEntry) -> str:
        entry_id = await self._redis.xadd(self.key, {"entry": json.dumps(asdict(entry))})
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def read(
        self, consumer: str, *, pending: bool, block_ms: int, count: int = 10
    ) -> list[tuple[str, OutboxEntry]]:
        """Entries for this consumer: its unacknowledged ones (`pending`), or new ones."""
        reply: Any = await self._redis.xreadgroup(
            GROUP, consumer, {self.key: "0" if pending else ">"}, count=count,
            block=None if pending else block_ms,
        )
        out: list[tuple[str, OutboxEntry]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                raw = fields.get(b"entry")
                if raw is None:  # acknowledged and deleted meanwhile
                    continue
                out.append((entry_id.decode(), OutboxEntry(**json.loads(raw))))
        return out

    async def done(self, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, GROUP, entry_id)
            pipe.xdel(self.key, entry_id)
            await pipe.execute()

    async def depth(self) -> int:
        return int(await self._redis.xlen(self.key))
