"""The failed list (`ponte:failed`): where work that failed for good waits for an operator.

One way in, for the drains (jobs/deliver.py) and for journal records no replay could apply
(relay/intake.py): push the entry and drop the oldest beyond `keys.FAILED_MAX_ENTRIES`, so the
list stays bounded whoever writes to it.
"""

from __future__ import annotations

from typing import Any

from bridge.store import keys

# Push, then trim, keeping the per-instance counts /global-status shows true for what was
# dropped: only mailbox entries (they carry `item`) are counted, so only those are uncounted.
_PUSH = """
redis.call('lpush', KEYS[1], ARGV[1])
local cap = tonumber(ARGV[2])
while redis.call('llen', KEYS[1]) > cap do
  local raw = redis.call('rpop', KEYS[1])
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and entry['item'] ~= nil then
    local instance = tostring(entry['instance'] or '')
    if redis.call('hincrby', KEYS[2], instance, -1) <= 0 then
      redis.call('hdel', KEYS[2], instance)
    end
  end
end
"""


def push(target: Any, entry: str, counts_key: str) -> Any:
    """Push `entry` (JSON) through `target`: a client or pipeline, sync or async (await the
    result of an async client). `counts_key`: the hash of entries per instance."""
    return target.eval(_PUSH, 2, keys.FAILED, counts_key, entry, keys.FAILED_MAX_ENTRIES)
