"""Chatwoot -> WhatsApp: drain an instance's outbox through its sidecar, in order.

One consumer task per running instance, started next to its sidecar runner. An entry is
acknowledged only after the sidecar answered (sent, or failed for good with a note to the
agents), so a restart re-reads what was not finished. An entry waits for the connection at most
`BAILEYS_SEND_WAIT_MS` from the moment the agent wrote it; older entries fail with a note instead
of reaching the customer hours late.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from loguru import logger

from bridge.config import Settings
from bridge.dispatch import Dispatcher
from bridge.errors import SidecarError
from bridge.ids import parse_instance_id
from bridge.sidecar.supervisor import InstanceRunner
from bridge.store.mapping import AsyncMappingStore, MessageMapping
from bridge.store.outbox import Outbox, OutboxEntry
from bridge.texts import Texts, texts_for

CONSUMER = "serve"  # one serve host today; per-host names come with leases (scaling out)
# `timeout` is not retried: the sidecar may have sent it after all, and a double send to a
# customer is worse than a note asking the agent to check.
_RETRYABLE_CODES = {"not_connected", "internal"}


class OutboundSender:
    def __init__(self, settings: Settings, redis: aioredis.Redis,
                 dispatcher: Dispatcher) -> None:
        self._settings = settings
        self._redis = redis
        self._dispatcher = dispatcher
        self._mappings = AsyncMappingStore(redis)
        self._texts: Texts = texts_for(settings.chatwoot_language)

    async def consume(self, runner: InstanceRunner) -> None:
        """Runs while the instance runs; cancelled with it."""
        outbox = Outbox(self._redis, runner.instance_id)
        await outbox.ensure_group()
        pending = True  # first what a previous run read but did not finish
        while True:
            try:
                entries = await outbox.read(CONSUMER, pending=pending, block_ms=5000)
            except (ConnectionError, OSError, aioredis.RedisError):
                logger.bind(instance=runner.instance_id).exception("Outbox read failed")
                await asyncio.sleep(1.0)
                continue
            if pending and not entries:
                pending = False
                continue
            for entry_id, entry in entries:
                await self._deliver(runner, entry)
                await outbox.done(entry_id)

    async def _deliver(self, runner: InstanceRunner, entry: OutboxEntry) -> None:
        log = logger.bind(instance=runner.instance_id, cw_message_id=entry.cw_message_id,
                          conversation_id=entry.conversation_id)
        deadline = entry.at + self._settings.baileys_send_wait_ms / 1000
        delay = 0.5
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                await self._fail(entry, self._texts.reason_not_connected)
                log.warning("Agent message not sent: the instance stayed disconnected")
                return
            if not await runner.wait_open(min(remaining, 30.0)):
                continue
            try:
                result = await runner.send_text(entry.jid, entry.text)
            except SidecarError as err:
                if err.code in _RETRYABLE_CODES:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                log.bind(code=err.code).warning("Agent message refused by the sidecar")
                await self._fail(entry, self._reason(err.code))
                return
            data = result.data or {}
            account_id, _ = parse_instance_id(runner.instance_id)
            await self._mappings.put(MessageMapping(
                instance_id=runner.instance_id, chat_jid=entry.jid,
                wa_message_id=str(data.get("message_id", "")), account_id=account_id,
                conversation_id=entry.conversation_id, cw_message_id=entry.cw_message_id))
            log.bind(wa_message_id=data.get("message_id")).info("Agent message sent")
            return

    def _reason(self, code: str) -> str:
        return {
            "invalid_jid": self._texts.reason_invalid_recipient,
            "timeout": self._texts.reason_timeout,
        }.get(code, self._texts.reason_rejected)

    async def _fail(self, entry: OutboxEntry, reason: str) -> None:
        await self._dispatcher.note(entry.account_id, entry.conversation_id,
                                    self._texts.send_failed.format(reason=reason))
