"""Exactly one live sidecar per WhatsApp identity: a lease in Redis.

Two processes on one identity kick each other off (440 loops) and corrupt Signal sessions. Each
`ponte serve` holds the instances it runs under a lease it renews; another host that wants the
instance waits (in backoff) until the lease expires, which is how a number moves when its host
dies.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.store import keys
from bridge.store.connection import as_text

# Renew or release only a lease we hold.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: aioredis.Redis, instance_id: InstanceId, holder: str,
                 ttl_ms: int) -> None:
        self._redis = redis
        self._key = keys.lease(instance_id)
        self._holder = holder
        self._ttl_ms = ttl_ms

    async def acquire(self) -> str | None:
        """None when acquired (or already ours); else the holder that has it."""
        if await self._redis.set(self._key, self._holder, nx=True, px=self._ttl_ms):
            return None
        current = await self._redis.get(self._key)
        if current is None:
            return await self.acquire()  # expired in between
        holder = as_text(current)
        if holder == self._holder:
            await self.renew()
            return None
        return holder

    async def renew(self) -> bool:
        return bool(await self._redis.eval(_RENEW, 1, self._key, self._holder,
                                           str(self._ttl_ms)))

    async def release(self) -> None:
        await self._redis.eval(_RELEASE, 1, self._key, self._holder)
