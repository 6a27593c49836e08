"""The serve side of WhatsApp -> Chatwoot: sidecar events and notes into mailboxes, drains queued.

An event counts as accepted once its item is in Redis. Appending schedules a drain job only when
none is scheduled for that mailbox; the sweeper re-schedules mailboxes whose job was lost (a
worker killed mid-job, Redis restarted between append and enqueue).
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
from loguru import logger

from bridge.ids import (
    ChatKey,
    InstanceId,
    Jid,
    is_lid_jid,
    is_user_jid,
    jid_server,
    normalize_jid,
)
from bridge.jobs.queues import schedule_drain
from bridge.sidecar.protocol import MessageEvent, WaMessageKeyModel
from bridge.store import keys
from bridge.store.connection import as_text
from bridge.store.mailbox import ItemKind, MailboxItem, MailboxWriter

QR_LIFETIME_SECONDS = 60  # Baileys' first ref lives 60 s, later ones 20 s
_IGNORED_SERVERS = {"broadcast", "newsletter"}  # status updates, broadcast lists, channels


def chat_jid_of(key: WaMessageKeyModel) -> Jid:
    """The chat a message belongs to, by phone number whenever WhatsApp gave us one."""
    if is_lid_jid(key.remoteJid) and key.remoteJidAlt and is_user_jid(key.remoteJidAlt):
        return normalize_jid(key.remoteJidAlt)
    return normalize_jid(key.remoteJid)


class Dispatcher:
    def __init__(self, redis_async: aioredis.Redis, redis_sync: redis.Redis) -> None:
        self._redis = redis_async
        self._sync = redis_sync
        self._writer = MailboxWriter(redis_async)

    async def append(self, mailbox: str, item: MailboxItem) -> None:
        if await self._writer.append(mailbox, item):
            await asyncio.to_thread(schedule_drain, self._sync, mailbox)

    async def wa_message(self, instance_id: InstanceId, event: MessageEvent) -> bool:
        """Queue a sidecar message for Chatwoot; False when it is not for Chatwoot."""
        if event.echo:
            return False  # we sent it from Chatwoot: it is there already
        if jid_server(event.key.remoteJid) in _IGNORED_SERVERS:
            return False
        try:
            chat_jid = chat_jid_of(event.key)
        except ValueError:
            logger.bind(instance=instance_id).warning("Message with an unreadable chat address")
            return False
        item = MailboxItem(id=event.key.id, kind=ItemKind.WA_MESSAGE, payload={
            "instance_id": instance_id, "chat_jid": chat_jid,
            "event": event.model_dump(mode="json")})
        await self.append(keys.chat_mailbox(ChatKey(instance_id, chat_jid)), item)
        logger.bind(instance=instance_id, chat_jid=chat_jid, wa_message_id=event.key.id).debug(
            "Message queued for Chatwoot")
        return True

    async def note(self, account_id: int, conversation_id: int, content: str, *,
                   qr: str | None = None) -> None:
        """A private note to the operators in a conversation (with the QR as a PNG, if given)."""
        payload: dict[str, object] = {"account_id": account_id,
                                      "conversation_id": conversation_id, "content": content}
        if qr is not None:
            payload["qr"] = qr
            payload["expires_at"] = time.time() + QR_LIFETIME_SECONDS
        await self.append(keys.note_mailbox(account_id, conversation_id),
                          MailboxItem.note(payload))

    async def sweep(self) -> int:
        """Schedule a drain for every pending mailbox that has no job and no lock holder."""
        scheduled = 0
        for raw in await self._redis.smembers(keys.MAILBOXES_PENDING):
            mailbox = as_text(raw)
            if await self._redis.exists(keys.mailbox_lock(mailbox)):
                continue
            if await self._redis.set(keys.mailbox_scheduled(mailbox), "1", nx=True, ex=300):
                await asyncio.to_thread(schedule_drain, self._sync, mailbox)
                scheduled += 1
        return scheduled

    async def run_sweeper(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if count := await self.sweep():
                    logger.bind(count=count).info("Sweeper re-scheduled mailboxes")
            except Exception:  # a Redis hiccup must not end the sweeper
                logger.exception("Sweeper pass failed")
