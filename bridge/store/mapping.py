"""WhatsApp message <-> Chatwoot message mapping: checked before acting, written right after.

Chatwoot does not dedupe `source_id`, so this mapping is what makes "exactly once as seen in
Chatwoot" hold under at-least-once processing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis
import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.store import keys

MAPPING_TTL_SECONDS = 90 * 24 * 3600  # replies and edits can quote messages this old


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageMapping:
    """One WhatsApp message and the Chatwoot message it is shown as."""

    instance_id: InstanceId
    chat_jid: str
    wa_message_id: str
    account_id: int
    conversation_id: int
    cw_message_id: int
    from_me: bool = False  # sent by the linked number (an agent's reply, or typed on the phone)


def _load(raw: bytes | str | None) -> MessageMapping | None:
    return None if raw is None else MessageMapping(**json.loads(raw))


def _entries(mapping: MessageMapping) -> dict[str, str]:
    raw = json.dumps(asdict(mapping), separators=(",", ":"))
    return {keys.wa_to_cw(mapping.instance_id, mapping.wa_message_id): raw,
            keys.cw_to_wa(mapping.account_id, mapping.cw_message_id): raw}


class MappingStore:
    """The worker side (sync)."""

    def __init__(self, redis: redis.Redis) -> None:
        self._redis = redis

    def by_wa(self, instance_id: InstanceId, wa_message_id: str) -> MessageMapping | None:
        return _load(self._redis.get(keys.wa_to_cw(instance_id, wa_message_id)))

    def by_cw(self, account_id: int, cw_message_id: int) -> MessageMapping | None:
        return _load(self._redis.get(keys.cw_to_wa(account_id, cw_message_id)))

    def put(self, mapping: MessageMapping) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for key, raw in _entries(mapping).items():
            pipe.set(key, raw, ex=MAPPING_TTL_SECONDS)
        pipe.execute()


class AsyncMappingStore:
    """The serve side (async): the outbox records what it sent."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def by_wa(self, instance_id: InstanceId, wa_message_id: str) -> MessageMapping | None:
        return _load(await self._redis.get(keys.wa_to_cw(instance_id, wa_message_id)))

    async def by_cw(self, account_id: int, cw_message_id: int) -> MessageMapping | None:
        return _load(await self._redis.get(keys.cw_to_wa(account_id, cw_message_id)))

    async def put(self, mapping: MessageMapping) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            queue_put(pipe, mapping)
            await pipe.execute()


def queue_put(pipe: aioredis.client.Pipeline, mapping: MessageMapping) -> None:
    """The mapping's writes, queued in the caller's pipeline."""
    for key, raw in _entries(mapping).items():
        pipe.set(key, raw, ex=MAPPING_TTL_SECONDS)
