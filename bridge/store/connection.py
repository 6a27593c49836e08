"""Redis connections, what counts as "Redis does not answer", and waiting for Redis at start-up
(supervisord starts everything at once)."""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis
from loguru import logger
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

from bridge.errors import ConfigError

# redis-py 8 retries a failed command ten times with up to a second between tries: a Redis
# restart then stalls every caller for seconds per command. One quick retry absorbs a blink;
# a longer outage is reported at once, and serve journals what it receives instead of waiting.
SOCKET_TIMEOUT_SECONDS = 2.0  # a webhook must still be answered within Chatwoot's 5 s
_RETRY = SyncRetry(ExponentialBackoff(cap=0.1, base=0.05), 1)
_ASYNC_RETRY = AsyncRetry(ExponentialBackoff(cap=0.1, base=0.05), 1)
# Replies of a Redis that is up but cannot take the command now: loading its AOF after a
# restart, refusing writes (full disk, a replica), a failover under way.
_TRANSIENT_REPLIES = frozenset({"LOADING", "MISCONF", "READONLY", "MASTERDOWN", "TRYAGAIN",
                                "CLUSTERDOWN", "NOREPLICAS"})


def unavailable(err: BaseException) -> bool:
    """True when `err` means Redis did not answer or cannot take the command right now: a
    transient condition everywhere (DESIGN.md, "Durability"), never a reason to fail a message.
    Only Redis's own exceptions count: redis-py wraps socket errors in them, and an unrelated
    OSError (a spool file) must not pass for an outage."""
    if isinstance(err, RedisConnectionError | RedisTimeoutError):  # BusyLoadingError included
        return True
    if isinstance(err, ResponseError):
        return str(err).split(" ", 1)[0] in _TRANSIENT_REPLIES
    return False


def sync_client(url: str) -> redis.Redis:
    # RQ raises socket_timeout on its own connection above its blocking dequeue's timeout.
    return redis.Redis.from_url(url, health_check_interval=30, retry=_RETRY,
                                socket_timeout=SOCKET_TIMEOUT_SECONDS * 2,
                                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS)


# Serve's requests share one pool. Past this many commands in flight a request waits for a
# connection (up to the timeout) instead of failing: redis-py's default pool raises "Too many
# connections" at 100, and under a webhook burst that became 500s, i.e. agent messages Chatwoot
# marks failed for good.
ASYNC_POOL_SIZE = 100
ASYNC_POOL_WAIT_SECONDS = 4.0  # under Chatwoot's 5 s webhook timeout


def async_client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT_SECONDS,
        health_check_interval=30, retry=_ASYNC_RETRY, socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS)
    return aioredis.Redis.from_pool(pool)


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    """Block until Redis answers PING; ConfigError when it never does."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    client = sync_client(url)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError as err:
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"Redis is not reachable after {timeout:.0f}s: {err}") from err
                logger.debug("Waiting for Redis")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
    finally:
        client.close()


def as_text(value: bytes | str) -> str:
    """redis-py answers bytes (or str with decode_responses); Ponte's keys and values are UTF-8."""
    return value.decode() if isinstance(value, bytes) else value
