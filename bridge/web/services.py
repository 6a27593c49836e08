"""What the routes share, built by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from loguru import logger

from bridge.chatwoot.client import ChatwootClient
from bridge.config import Settings
from bridge.metrics import Recorder
from bridge.relay.dispatch import Dispatcher
from bridge.relay.intake import Intake
from bridge.relay.outbound import OutboundSender
from bridge.sidecar.supervisor import InstanceSupervisor
from bridge.store.registry import Registry
from bridge.texts import Texts, texts_for


@dataclass(slots=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    registry: Registry
    dispatcher: Dispatcher
    supervisor: InstanceSupervisor
    outbound: OutboundSender
    chatwoot: ChatwootClient  # sync: call it through asyncio.to_thread
    recorder: Recorder  # metrics, written in batches
    intake: Intake  # what serve receives is durable through it (Redis, or the journal)
    # Secrets of inboxes Ponte created (ponte:inbox-secrets), cached: read again when a
    # webhook does not verify with them, and at least every INBOX_SECRETS_TTL seconds.
    inbox_secrets: tuple[str, ...] = ()
    inbox_secrets_at: float = 0.0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def texts(self) -> Texts:
        return texts_for(self.settings.chatwoot_language)

    def background(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run after the webhook answered; keep a reference so the task is not collected."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).bind(task=task.get_name()).error(
                "Background task failed")
