"""The serve side of WhatsApp -> Chatwoot: sidecar events and notes into mailboxes, drains queued.

An event counts as accepted once its item is in Redis. Appending schedules a drain job only when
none is scheduled for that mailbox; the sweeper re-schedules mailboxes whose job was lost (a
worker killed mid-job, Redis restarted between append and enqueue).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
from bridge.store.lids import LidTable
from bridge.store.mailbox import ItemKind, MailboxItem, MailboxWriter

QR_LIFETIME_SECONDS = 60  # Baileys' first ref lives 60 s, later ones 20 s


def chat_kind(jid: str) -> str:
    """`person`, `group`, `status` (status updates), `newsletter` (channels), `broadcast`."""
    if jid == "status@broadcast":
        return "status"
    server = jid_server(jid)
    return {"g.us": "group", "newsletter": "newsletter", "broadcast": "broadcast"}.get(
        server, "person")


def chat_jid_of(key: WaMessageKeyModel) -> Jid:
    """The chat a message belongs to, by phone number whenever the key names one."""
    if is_lid_jid(key.remoteJid) and key.remoteJidAlt and is_user_jid(key.remoteJidAlt):
        return normalize_jid(key.remoteJidAlt)
    return normalize_jid(key.remoteJid)


def _pairs_in(key: WaMessageKeyModel) -> list[tuple[str, str]]:
    """(lid, pn) pairs a message key reveals: the chat's, and a group sender's."""
    pairs = []
    for a, b in ((key.remoteJid, key.remoteJidAlt), (key.participant, key.participantAlt)):
        if a and b:
            if is_lid_jid(a) and is_user_jid(b):
                pairs.append((a, b))
            elif is_user_jid(a) and is_lid_jid(b):
                pairs.append((b, a))
    return pairs


class Dispatcher:
    def __init__(self, redis_async: aioredis.Redis, redis_sync: redis.Redis, *,
                 ignore_chats: frozenset[str] = frozenset({"status", "newsletter", "broadcast"}),
                 spool: Path | None = None) -> None:
        self._redis = redis_async
        self._sync = redis_sync
        self._writer = MailboxWriter(redis_async)
        self._lids = LidTable(redis_async)
        self._ignore_chats = ignore_chats
        self._spool = spool.resolve() if spool is not None else None

    async def append(self, mailbox: str, item: MailboxItem) -> None:
        if await self._writer.append(mailbox, item):
            await asyncio.to_thread(schedule_drain, self._sync, mailbox)

    async def wa_message(self, instance_id: InstanceId, event: MessageEvent) -> bool:
        """Queue a sidecar message for Chatwoot; False when it is not for Chatwoot."""
        if event.echo or chat_kind(event.key.remoteJid) in self._ignore_chats:
            # An echo is in Chatwoot already; an ignored chat is never shown. Either way a
            # downloaded file has no taker: remove it, or the spool fills with status media.
            self._discard_media(event)
            return False
        try:
            for lid, pn in _pairs_in(event.key):
                await self.lid_mapping(instance_id, lid, pn)
            chat_jid = chat_jid_of(event.key)
            if is_lid_jid(chat_jid):
                chat_jid = await self._lids.pn_for(instance_id, chat_jid) or chat_jid
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

    def _discard_media(self, event: MessageEvent) -> None:
        path = event.media.path if event.media else None
        if path and self._spool is not None and Path(path).resolve().is_relative_to(self._spool):
            Path(path).unlink(missing_ok=True)

    async def lid_mapping(self, instance_id: InstanceId, lid: str, pn: str) -> None:
        """Remember that `lid` is `pn`. If the LID was already shown in Chatwoot as a contact of
        its own, queue the merge in the phone number's mailbox: it runs before that chat's next
        message, so the person is one contact from then on."""
        if not await self._lids.remember(instance_id, lid, pn):
            return
        lid_jid, pn_jid = normalize_jid(lid), normalize_jid(pn)
        if not await self._redis.exists(keys.conversation(instance_id, lid_jid)):
            return
        item = MailboxItem(id=f"merge-{lid_jid}-{pn_jid}", kind=ItemKind.IDENTITY, payload={
            "instance_id": instance_id, "lid": lid_jid, "pn": pn_jid})
        await self.append(keys.chat_mailbox(ChatKey(instance_id, pn_jid)), item)
        logger.bind(instance=instance_id, chat_jid=pn_jid).info("LID contact queued for merging")

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
