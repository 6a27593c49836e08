"""Mailboxes: per-chat Redis lists drained in order by one job at a time.

A mailbox holds the work for one Chatwoot conversation (a WhatsApp chat, or the conversation an
operator steers an instance from). `ponte serve` appends items (`MailboxWriter`, async); a drain job
(`bridge.jobs.deliver`) takes the per-mailbox lock, handles the head item, and pops it only once
its effect is recorded, so a job that dies leaves the item where it was. The pending set lets a
sweeper find mailboxes that hold items but have no job scheduled (a lost job, a crashed worker).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis

from bridge.store import keys


class ItemKind(StrEnum):
    WA_MESSAGE = "wa_message"  # a sidecar `message` event for a chat
    NOTE = "note"  # a private note from Ponte to the operator
    IDENTITY = "identity"  # a LID turned out to be a known phone number: merge the two
    AVATAR = "avatar"  # the chat's profile picture, for its Chatwoot contact


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxItem:
    """One unit of work; `id` is the idempotency key (WhatsApp message id, or a note uuid)."""

    id: str
    kind: ItemKind
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)

    def dumps(self) -> str:
        return json.dumps({"id": self.id, "kind": self.kind.value, "at": self.at,
                           "payload": self.payload}, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: bytes | str) -> MailboxItem:
        data = json.loads(raw)
        return cls(id=data["id"], kind=ItemKind(data["kind"]), at=data["at"],
                   payload=data["payload"])

    @classmethod
    def note(cls, payload: dict[str, Any]) -> MailboxItem:
        return cls(id=uuid.uuid4().hex, kind=ItemKind.NOTE, payload=payload)


# Renewed every few seconds while a drain runs: short, so a killed worker's chat resumes soon.
SCHEDULED_TTL_SECONDS = 20

# Atomically forget a mailbox that is empty, so a concurrent append cannot be lost from the set.
# The "scheduled" flag goes with it: until now it told appenders a drain was on its way.
_FORGET_IF_EMPTY = """
if redis.call('llen', KEYS[1]) == 0 then
  redis.call('srem', KEYS[2], KEYS[1])
  redis.call('del', KEYS[3], KEYS[4], KEYS[5])
  return 1
end
return 0
"""

# Keep the "scheduled" flag alive while a drain runs, without cutting a longer TTL short (a
# retry sets one as long as its backoff).
_KEEP_SCHEDULED = """
if redis.call('ttl', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('set', KEYS[1], '1', 'EX', ARGV[1])
end
"""


class MailboxWriter:
    """The serve side: append items (async)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def append(self, mailbox: str, item: MailboxItem) -> bool:
        """Append, and say whether the caller must schedule a drain (none is scheduled yet)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(mailbox, item.dumps())
            pipe.sadd(keys.MAILBOXES_PENDING, mailbox)
            pipe.set(keys.mailbox_scheduled(mailbox), "1", nx=True, ex=SCHEDULED_TTL_SECONDS)
            result = await pipe.execute()
        return bool(result[2])


class Mailbox:
    """The drain side (sync, inside an RQ job). Call only while holding the mailbox lock."""

    def __init__(self, redis: redis.Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    def head(self) -> MailboxItem | None:
        raw = self._redis.lindex(self.key, 0)
        return None if raw is None else MailboxItem.loads(raw)

    def pop(self, item: MailboxItem) -> None:
        """Remove the head, which must be `item` (only the lock holder pops, so it is)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpop(self.key)
        pipe.hdel(keys.mailbox_attempts(self.key), item.id)
        pipe.delete(keys.mailbox_throttled(self.key))  # progress: the next pause starts short
        pipe.execute()

    def record_attempt(self, item: MailboxItem) -> int:
        return int(self._redis.hincrby(keys.mailbox_attempts(self.key), item.id, 1))

    def record_throttle(self, ttl_s: int) -> int:
        """One more "slow down" in a row for this mailbox; how many so far."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(keys.mailbox_throttled(self.key))
        pipe.expire(keys.mailbox_throttled(self.key), ttl_s)
        count, _ = pipe.execute()
        return int(count)

    def forget_if_empty(self) -> bool:
        return bool(self._redis.eval(
            _FORGET_IF_EMPTY, 5, self.key, keys.MAILBOXES_PENDING,
            keys.mailbox_attempts(self.key), keys.mailbox_scheduled(self.key),
            keys.mailbox_throttled(self.key)))

    def keep_scheduled(self) -> None:
        """A drain is running: appenders need not schedule another."""
        self._redis.eval(_KEEP_SCHEDULED, 1, keys.mailbox_scheduled(self.key),
                         SCHEDULED_TTL_SECONDS)

    def __len__(self) -> int:
        return int(self._redis.llen(self.key))
