"""Redis connections, and waiting for Redis at start-up (supervisord starts everything at once)."""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis
from loguru import logger

from bridge.errors import ConfigError


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30)


# Serve's requests share one pool. Past this many commands in flight a request waits for a
# connection (up to the timeout) instead of failing: redis-py's default pool raises "Too many
# connections" at 100, and under a webhook burst that became 500s, i.e. agent messages Chatwoot
# marks failed for good.
ASYNC_POOL_SIZE = 100
ASYNC_POOL_WAIT_SECONDS = 4.0  # under Chatwoot's 5 s webhook timeout


def async_client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT_SECONDS,
        health_check_interval=30)
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
