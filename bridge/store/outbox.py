"""Outboxes: per-instance Redis streams of agent actions waiting to reach WhatsApp.

The webhook appends and answers at once; the `ponte serve` that runs the instance reads the stream
through a consumer group and acknowledges an entry only after it is done (sent, or failed for
good with a note to the agents), so a restart between the webhook's answer and the send loses
nothing: the entry is re-read as pending. A send can have several parts (text, then each
attachment); each part is recorded as it goes out (`SentParts`), so a retry after a crash never
sends part 1 twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bridge.ids import InstanceId
from bridge.store import keys
from bridge.store.connection import as_text

GROUP = "serve"
PARTS_TTL_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxAttachment:
    """An attachment of the agent's message, as the webhook named it."""

    data_url: str
    file_type: str  # Chatwoot's: image, video, audio, file...
    content_type: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxQuote:
    """The WhatsApp message the agent answered."""

    wa_message_id: str
    from_me: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """One agent action: send a message (text and/or attachments), or revoke one."""

    account_id: int
    conversation_id: int
    cw_message_id: int
    jid: str
    at: float
    action: Literal["send", "revoke"] = "send"
    text: str = ""
    attachments: tuple[OutboxAttachment, ...] = ()
    quote: OutboxQuote | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: bytes | str) -> OutboxEntry:
        data: dict[str, Any] = json.loads(raw)
        data["attachments"] = tuple(OutboxAttachment(**a) for a in data.get("attachments", ()))
        if data.get("quote"):
            data["quote"] = OutboxQuote(**data["quote"])
        return cls(**data)


class Outbox:
    def __init__(self, redis: aioredis.Redis, instance_id: InstanceId) -> None:
        self._redis = redis
        self.instance_id = instance_id
        self.key = keys.outbox(instance_id)

    async def append(self, entry: OutboxEntry) -> str:
        entry_id = await self._redis.xadd(self.key, {"entry": entry.dumps()})
        return as_text(entry_id)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def read(
        self, consumer: str, *, pending: bool, count: int = 10
    ) -> list[tuple[str, OutboxEntry]]:
        """Entries for this consumer: its unacknowledged ones (`pending`), or new ones. Never
        blocks in Redis (see relay/outbound.py)."""
        reply: Any = await self._redis.xreadgroup(
            GROUP, consumer, {self.key: "0" if pending else ">"}, count=count)
        out: list[tuple[str, OutboxEntry]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                raw = fields.get(b"entry")
                if raw is None:  # acknowledged and deleted meanwhile
                    continue
                out.append((as_text(entry_id), OutboxEntry.loads(raw)))
        return out

    async def done(self, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self.queue_done(pipe, entry_id)
            await pipe.execute()

    def queue_done(self, pipe: aioredis.client.Pipeline, entry_id: str) -> None:
        """`done`, in the caller's MULTI (with what finishing the entry writes anyway)."""
        pipe.xack(self.key, GROUP, entry_id)
        pipe.xdel(self.key, entry_id)

    async def depth(self) -> int:
        return int(await self._redis.xlen(self.key))


@dataclass(slots=True)
class SentParts:
    """The WhatsApp ids of the parts of one Chatwoot message already sent (part 1, 2...)."""

    redis: aioredis.Redis
    account_id: int
    cw_message_id: int
    sent: dict[int, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return keys.sent_parts(self.account_id, self.cw_message_id)

    async def load(self) -> SentParts:
        raw = await self.redis.hgetall(self.key)
        self.sent = {int(as_text(k)): as_text(v) for k, v in raw.items()}
        return self

    def record(self, pipe: aioredis.client.Pipeline, part: int, wa_message_id: str) -> None:
        """Queue the record in `pipe`, the caller's transaction (with the message's mapping)."""
        self.sent[part] = wa_message_id
        pipe.hset(self.key, str(part), wa_message_id)
        pipe.expire(self.key, PARTS_TTL_SECONDS)
