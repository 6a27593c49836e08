"""Our own LID <-> phone-number table, per instance.

WhatsApp addresses many people by LID (`<lid>@lid`) and does not always say which phone number
that is (`remoteJidAlt` is sometimes missing). Every pair we learn (the sidecar's `lid_mapping`
frames, message keys that carry both) is kept here, so a person stays one Chatwoot contact.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bridge.ids import InstanceId, Jid, normalize_jid
from bridge.store import keys
from bridge.store.connection import as_text

LID_TTL_SECONDS = 365 * 24 * 3600


class LidTable:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def remember(self, instance_id: InstanceId, lid: str, pn: str) -> bool:
        """Store a pair; True when it is new (or changed)."""
        lid_jid, pn_jid = normalize_jid(lid), normalize_jid(pn)
        key = keys.lid_to_pn(instance_id, lid_jid)
        previous = await self._redis.get(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, pn_jid, ex=LID_TTL_SECONDS)
            pipe.set(keys.pn_to_lid(instance_id, pn_jid), lid_jid, ex=LID_TTL_SECONDS)
            await pipe.execute()
        return previous is None or as_text(previous) != pn_jid

    async def pn_for(self, instance_id: InstanceId, lid: str) -> Jid | None:
        value = await self._redis.get(keys.lid_to_pn(instance_id, normalize_jid(lid)))
        return None if value is None else Jid(as_text(value))
