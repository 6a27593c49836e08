"""A redis-server of a test's own, with AOF on, that the test can stop and start again on the
same port and data directory: Redis going away for a few seconds, as in production."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from bridge import embedded_redis
from tests.conftest import free_port


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [str(embedded_redis.server_binary()), "--port", str(self.port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
             "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()  # answers LOADING (an error) until the AOF is read
                    return self
                except redis.exceptions.RedisError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: Redis writes its AOF and exits, as a restart by an operator does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)
        self.proc = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
