"""The instance registry: which numbers exist, what the operator wants, how to reach them.

One Redis hash per instance plus a set of ids. `desired` is the operator's wish (`running` or
`stopped`); `linked` says a session exists that can log in without a QR. At start-up the
supervisor resumes exactly the instances that are linked and desired running, so a restart never
starts posting QRs into old conversations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from bridge.ids import InstanceId, make_instance_id
from bridge.store import keys
from bridge.store.connection import as_text


class Desired(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRecord:
    """What Redis keeps about one instance."""

    instance_id: InstanceId
    account_id: int
    inbox_id: int
    inbox_name: str = ""
    desired: Desired = Desired.STOPPED
    linked: bool = False
    wa_jid: str | None = None  # the linked number, normalised (`5511...@s.whatsapp.net`)
    lid: str | None = None
    notify_account_id: int | None = None  # where the operator typed the command:
    notify_conversation_id: int | None = None  # QR and state notes go there
    qr_attempts: int = 0
    pairing_phone: str | None = None  # digits: link by pairing code instead of QR codes
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def new(cls, account_id: int, inbox_id: int, **values: Any) -> InstanceRecord:
        now = time.time()
        return cls(instance_id=make_instance_id(account_id, inbox_id), account_id=account_id,
                   inbox_id=inbox_id, created_at=now, updated_at=now, **values)

    def label(self) -> str:
        return self.inbox_name or f"#{self.inbox_id}"


_INT_FIELDS = {"account_id", "inbox_id", "notify_account_id", "notify_conversation_id",
               "qr_attempts"}
_FLOAT_FIELDS = {"created_at", "updated_at"}


def _encode(record: InstanceRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in asdict(record).items():
        if value is None:
            continue
        out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out


def _decode(raw: Mapping[bytes | str, bytes | str]) -> InstanceRecord:
    data = {as_text(k): as_text(v) for k, v in raw.items()}
    values: dict[str, Any] = {}
    for f in fields(InstanceRecord):
        text = data.get(f.name)
        if text is None:
            continue
        if f.name in _INT_FIELDS:
            values[f.name] = int(text)
        elif f.name in _FLOAT_FIELDS:
            values[f.name] = float(text)
        elif f.name == "linked":
            values[f.name] = text == "1"
        elif f.name == "desired":
            values[f.name] = Desired(text)
        else:
            values[f.name] = text
    return InstanceRecord(**values)


class Registry:
    """Instance records in Redis (async; used by `ponte serve`)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def get(self, instance_id: InstanceId) -> InstanceRecord | None:
        raw = await self._redis.hgetall(keys.instance(instance_id))
        return _decode(raw) if raw else None

    async def all(self) -> list[InstanceRecord]:
        ids = sorted(as_text(m) for m in await self._redis.smembers(keys.INSTANCES))
        records = [await self.get(InstanceId(i)) for i in ids]
        return [r for r in records if r is not None]

    async def put(self, record: InstanceRecord) -> InstanceRecord:
        record = replace(record, updated_at=time.time())
        key = keys.instance(record.instance_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=_encode(record))  # type: ignore[arg-type]
            pipe.sadd(keys.INSTANCES, record.instance_id)
            await pipe.execute()
        return record

    async def update(self, instance_id: InstanceId, **changes: Any) -> InstanceRecord | None:
        current = await self.get(instance_id)
        if current is None:
            return None
        return await self.put(replace(current, **changes))

    async def increment_qr_attempts(self, instance_id: InstanceId) -> int:
        return int(await self._redis.hincrby(keys.instance(instance_id), "qr_attempts", 1))

    async def delete(self, instance_id: InstanceId) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.instance(instance_id))
            pipe.srem(keys.INSTANCES, instance_id)
            await pipe.execute()
