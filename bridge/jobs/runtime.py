"""What a job needs at run time: settings, Redis, the Chatwoot client (one per worker process).

RQ imports jobs by dotted path and passes only JSON-able arguments, so the process-wide context
is installed once by `ponte worker` (or a test) before jobs run. The HTTP client is created
lazily per process id: a worker pool forks, and a connection pool must not cross a fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import redis

from bridge.chatwoot.client import ChatwootClient
from bridge.config import Settings
from bridge.texts import Texts, texts_for


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    _client: ChatwootClient | None = field(default=None, init=False)
    _client_pid: int = field(default=0, init=False)

    @property
    def texts(self) -> Texts:
        return texts_for(self.settings.chatwoot_language)

    @property
    def chatwoot(self) -> ChatwootClient:
        if self._client is None or self._client_pid != os.getpid():
            self._client = ChatwootClient(
                self.settings.chatwoot_url, self.settings.chatwoot_token,
                timeout_s=self.settings.chatwoot_api_timeout / 1000)
            self._client_pid = os.getpid()
        return self._client

    def close(self) -> None:
        if self._client is not None and self._client_pid == os.getpid():
            self._client.close()
        self._client = None


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def current() -> WorkerContext:
    if _context is None:
        raise RuntimeError("no worker context installed: run jobs through `ponte worker`")
    return _context
