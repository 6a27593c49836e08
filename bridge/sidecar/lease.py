"""Exactly one live sidecar per WhatsApp identity: a lease in Redis.

Two processes on one identity kick each other off (440 loops) and corrupt Signal sessions. Each
`ponte serve` holds the instances it runs under a lease it renews; another host that wants the
instance waits (in backoff) until the lease expires, which is how a number moves when its host
dies.

A serve restarted on the same host after a crash does not wait: the lease names its holder's
host and pid, so it can see that the holder is gone and take the lease over at once, with a
compare-and-set (two restarting serves cannot both win). Only a holder proven dead is taken over:
another host, another pid namespace (a restarted container gets a new one), a process still
running, or anything that cannot be checked is waited for as before.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

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
# Take over the lease of a dead holder, only if it still names that holder.
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def _process_table() -> str:
    """Which process table our pids are numbers in: this boot of this machine (two hosts may
    share a name) and this pid namespace (containers with host networking share the host's
    name). Empty where it cannot be known: then no holder is ever taken to be dead."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = os.readlink("/proc/self/ns/pid")  # pid:[4026531836]
    except OSError:
        return ""
    return f"{boot[:12]}.{namespace.removeprefix('pid:[').removesuffix(']')}"


_TABLE = _process_table()


def _host() -> str:
    return socket.gethostname().replace(":", "_")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start) of a process from /proc/<pid>/stat; the start is in clock ticks since boot,
    which, unlike a wall-clock start time (psutil's create_time), never moves with the clock, so
    it tells a process from a later one that got the same pid. None when there is no such file."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold anything
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, `<host>:<pid>:<table>:<start>:<nonce>`: the host name and pid (for
    people and the dead-or-alive check), the process table the pid belongs to, the process'
    start (tells it from a later process that got the same pid, ourselves included), and one
    per supervisor (several may share a process, as in the tests)."""

    host: str
    pid: int
    table: str
    start: str
    nonce: str

    @classmethod
    def mine(cls) -> Holder:
        """A new holder for a supervisor of this process."""
        own = _stat(os.getpid()) if _TABLE else None
        return cls(_host(), os.getpid(), _TABLE, own[1] if own else "", uuid.uuid4().hex[:8])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """None for anything else, such as the three-part holder of older versions."""
        parts = text.split(":")
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        host, pid, table, start, nonce = parts
        return cls(host, int(pid), table, start, nonce)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.table}:{self.start}:{self.nonce}"


def holder_is_dead(holder: Holder) -> bool:
    """True only when the holder was a process of this host's process table that no longer runs:
    its pid is gone, a zombie, or a process that started at another time (pids are reused, our
    own included). Another host, or anything we cannot check, counts as alive."""
    if not _TABLE or not holder.start or (holder.host, holder.table) != (_host(), _TABLE):
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process: not ours to judge (nor to see, with hidepid)
    now = _stat(holder.pid)
    if now is None:
        return False  # it exists, yet /proc does not show it: cannot tell
    state, start = now
    return state == "Z" or start != holder.start


class Lease:
    def __init__(self, redis: aioredis.Redis, instance_id: InstanceId, holder: str,
                 ttl_ms: int) -> None:
        self._redis = redis
        self._key = keys.lease(instance_id)
        self._holder = holder
        self._ttl_ms = ttl_ms
        # The dead holder the last acquire() took the lease from, if it did.
        self.taken_from: str | None = None

    async def acquire(self) -> str | None:
        """None when acquired (or already ours); else the holder that has it."""
        self.taken_from = None
        holder = "?"
        for _ in range(3):  # a holder that changes under us twice more is a live contest
            if await self._redis.set(self._key, self._holder, nx=True, px=self._ttl_ms):
                return None
            current = await self._redis.get(self._key)
            if current is None:
                continue  # expired in between
            holder = as_text(current)
            if holder == self._holder:
                await self.renew()
                return None
            parsed = Holder.parse(holder)
            if parsed is None or not holder_is_dead(parsed):
                return holder
            if await self._redis.eval(_TAKE_OVER, 1, self._key, holder, self._holder,
                                      str(self._ttl_ms)):
                self.taken_from = holder
                return None
            # Someone else changed it first (another restarted serve): look again.
        return holder

    async def renew(self) -> bool:
        return bool(await self._redis.eval(_RENEW, 1, self._key, self._holder,
                                           str(self._ttl_ms)))

    async def release(self) -> None:
        await self._redis.eval(_RELEASE, 1, self._key, self._holder)
