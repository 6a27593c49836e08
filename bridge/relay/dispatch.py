"""The serve side of WhatsApp -> Chatwoot: sidecar events and notes into mailboxes, drains queued.

An event counts as accepted once it is durable: its item in Redis, or, while Redis does not
answer, the event in the journal (`intake.py`), replayed through the same code once Redis is
back. Appending schedules a drain job only when none is scheduled for that mailbox; the sweeper
re-schedules mailboxes whose job was lost (a worker killed mid-job, Redis restarted between
append and enqueue).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

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
from bridge.jobs.queues import schedule_drain, schedule_status
from bridge.relay.intake import JOURNALED, Intake
from bridge.sidecar.protocol import (
    LidMappingEvent,
    MessageEvent,
    MessageStatusEvent,
    WaMessageKeyModel,
)
from bridge.store import keys
from bridge.store.connection import as_text
from bridge.store.lids import LidTable
from bridge.store.mailbox import SCHEDULED_TTL_SECONDS, ItemKind, MailboxItem, MailboxWriter
from bridge.store.mapping import AsyncMappingStore, MessageMapping

QR_LIFETIME_SECONDS = 60  # Baileys' first ref lives 60 s, later ones 20 s
# WhatsApp's ticks as Chatwoot's message statuses (Chatwoot ignores read -> delivered itself).
_CHATWOOT_STATUS = {"server_ack": "sent", "delivered": "delivered", "read": "read",
                    "played": "read", "error": "failed"}
_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
AVATAR_EVERY_SECONDS = 24 * 3600
# The sidecar events that carry data for Chatwoot (the rest steer the runner's state machine).
DataEvent = MessageEvent | LidMappingEvent | MessageStatusEvent
_DATA_EVENTS: dict[str, type[DataEvent]] = {
    "message": MessageEvent, "lid_mapping": LidMappingEvent, "message_status": MessageStatusEvent}


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
        self._mappings = AsyncMappingStore(redis_async)
        self._ignore_chats = ignore_chats
        self._spool = spool.resolve() if spool is not None else None
        self._intake: Intake | None = None

    def attach(self, intake: Intake) -> None:
        """From now on events, notes and statuses are durable through `intake` (serve does
        this at start; without it they go to Redis or fail, as in tests of this module)."""
        self._intake = intake
        intake.register("sidecar_event", self._apply_event, encode=lambda a: {
            "instance_id": a["instance_id"], "event": a["event"].model_dump(mode="json")})
        intake.register("note", self._apply_note)
        intake.register("status", self._apply_status)

    async def event(self, instance_id: InstanceId, event: DataEvent) -> Jid | None:
        """A data event from a sidecar, made durable; returns the chat of a message queued for
        Chatwoot now (None when it is not for Chatwoot, or went to the journal)."""
        args: dict[str, Any] = {"instance_id": instance_id, "event": event}
        if self._intake is None:
            result: Jid | None = await self._apply_event(args, time.time())
            return result
        outcome = await self._intake.submit("sidecar_event", args)
        return None if outcome is JOURNALED else cast(Jid | None, outcome)

    async def _apply_event(self, args: dict[str, Any], at: float) -> Jid | None:
        instance_id = InstanceId(str(args["instance_id"]))
        event = args["event"]
        if isinstance(event, dict):  # from the journal
            event = _DATA_EVENTS[str(event.get("type"))].model_validate(event)
        if isinstance(event, MessageEvent):
            return await self.wa_message(instance_id, event)
        if isinstance(event, LidMappingEvent):
            await self.lid_mapping(instance_id, event.lid, event.pn)
        elif isinstance(event, MessageStatusEvent):
            await self.wa_status(instance_id, event)
        return None

    async def append(self, mailbox: str, item: MailboxItem) -> None:
        if await self._writer.append(mailbox, item):
            await asyncio.to_thread(schedule_drain, self._sync, mailbox)

    async def wa_message(self, instance_id: InstanceId, event: MessageEvent) -> Jid | None:
        """Queue a sidecar message for Chatwoot; returns its chat, or None when it is not for
        Chatwoot."""
        if event.echo or chat_kind(event.key.remoteJid) in self._ignore_chats:
            # An echo is in Chatwoot already; an ignored chat is never shown. Either way a
            # downloaded file has no taker: remove it, or the spool fills with status media.
            self._discard_media(event)
            return None
        try:
            for lid, pn in _pairs_in(event.key):
                await self.lid_mapping(instance_id, lid, pn)
            chat_jid = chat_jid_of(event.key)
            if is_lid_jid(chat_jid):
                chat_jid = await self._lids.pn_for(instance_id, chat_jid) or chat_jid
        except ValueError:
            logger.bind(instance=instance_id).warning("Message with an unreadable chat address")
            return None
        item = MailboxItem(id=event.key.id, kind=ItemKind.WA_MESSAGE, payload={
            "instance_id": instance_id, "chat_jid": chat_jid,
            "event": event.model_dump(mode="json")})
        await self.append(keys.chat_mailbox(ChatKey(instance_id, chat_jid)), item)
        if not event.key.fromMe and is_user_jid(chat_jid):
            # Waiting for an agent's answer: marked read on WhatsApp when one comes (optional).
            unread = keys.unread(instance_id, event.key.remoteJid)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(unread, event.key.id)
                pipe.ltrim(unread, -100, -1)
                pipe.expire(unread, 7 * 24 * 3600)
                await pipe.execute()
        logger.bind(instance=instance_id, chat_jid=chat_jid, wa_message_id=event.key.id).debug(
            "Message queued for Chatwoot")
        return chat_jid

    async def avatar_due(self, instance_id: InstanceId, chat_jid: str) -> bool:
        """At most once a day per chat: is it time to look at its profile picture?"""
        return bool(await self._redis.set(keys.avatar_checked(instance_id, chat_jid), "1",
                                          nx=True, ex=AVATAR_EVERY_SECONDS))

    async def avatar(self, instance_id: InstanceId, chat_jid: str, url: str) -> None:
        """Queue the picture behind the chat's messages, so its contact exists by then."""
        item = MailboxItem.note({"instance_id": instance_id, "chat_jid": chat_jid, "url": url})
        item = MailboxItem(id=item.id, kind=ItemKind.AVATAR, payload=item.payload)
        await self.append(keys.chat_mailbox(ChatKey(instance_id, Jid(chat_jid))), item)

    async def wa_status(self, instance_id: InstanceId, event: MessageStatusEvent) -> None:
        """A tick on a message this number sent: shown as the Chatwoot message's status."""
        status = _CHATWOOT_STATUS.get(event.status)
        if status is None or not event.key.fromMe:
            return
        mapping = await self._mappings.by_wa(instance_id, event.key.id)
        if mapping is None:
            # WhatsApp can tick a send before the outbox recorded which Chatwoot message it
            # was; keep the best tick for a while and apply it with the mapping.
            key = keys.early_status(instance_id, event.key.id)
            previous = await self._redis.get(key)
            if previous is None or _RANK[status] > _RANK.get(as_text(previous), 0):
                await self._redis.set(key, status, ex=600)
            return
        if mapping.from_me:
            await self.message_status(mapping.account_id, mapping.conversation_id,
                                      mapping.cw_message_id, status)

    async def apply_early_status(self, mapping: MessageMapping,
                                 status: bytes | str | None) -> None:
        """Called once a send is mapped, with what the caller's GETDEL of
        keys.early_status found: the tick that came before the mapping, if any."""
        if status is not None:
            await self.message_status(mapping.account_id, mapping.conversation_id,
                                      mapping.cw_message_id, as_text(status))

    async def message_status(self, account_id: int, conversation_id: int, cw_message_id: int,
                             status: str, external_error: str | None = None) -> None:
        args: dict[str, Any] = {"account_id": account_id, "conversation_id": conversation_id,
                "cw_message_id": cw_message_id, "status": status,
                "external_error": external_error}
        if self._intake is None:
            await self._apply_status(args, time.time())
        else:
            await self._intake.submit("status", args)

    async def _apply_status(self, args: dict[str, Any], at: float) -> None:
        await asyncio.to_thread(
            schedule_status, self._sync, args["account_id"], args["conversation_id"],
            args["cw_message_id"], args["status"], args["external_error"])

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
        # The item (and its id, the note's idempotency key) is made once, here: a replayed
        # note is the same note.
        args = {"mailbox": keys.note_mailbox(account_id, conversation_id),
                "item": MailboxItem.note(payload).dumps()}
        if self._intake is None:
            await self._apply_note(args, time.time())
        else:
            await self._intake.submit("note", args)

    async def _apply_note(self, args: dict[str, str], at: float) -> None:
        await self.append(args["mailbox"], MailboxItem.loads(args["item"]))

    async def sweep(self, *, after_outage: bool = False) -> int:
        """Schedule a drain for every pending mailbox that has no job and no lock holder.
        `after_outage`: also where the "scheduled" flag says a job is on its way, since a job
        a worker was taking when Redis went away is gone with the flag still set (for up to
        its TTL); a second drain of a mailbox is harmless (drains take its lock)."""
        scheduled = 0
        for raw in await self._redis.smembers(keys.MAILBOXES_PENDING):
            mailbox = as_text(raw)
            if await self._redis.exists(keys.mailbox_lock(mailbox)):
                continue
            flag = keys.mailbox_scheduled(mailbox)
            if after_outage:
                await self._redis.set(flag, "1", ex=SCHEDULED_TTL_SECONDS)
            elif not await self._redis.set(flag, "1", nx=True, ex=SCHEDULED_TTL_SECONDS):
                continue
            await asyncio.to_thread(schedule_drain, self._sync, mailbox)
            scheduled += 1
        return scheduled

    async def run_sweeper(self, interval_s: float) -> None:
        """Every `interval_s`; the first pass at once and as after an outage: a serve killed
        between an append and its job's enqueue left a "scheduled" flag with no job behind."""
        failed = True
        while True:
            try:
                if count := await self.sweep(after_outage=failed):
                    logger.bind(count=count).info("Sweeper re-scheduled mailboxes")
                failed = False
            except Exception:  # a Redis hiccup must not end the sweeper
                logger.exception("Sweeper pass failed")
                failed = True
            await asyncio.sleep(interval_s)
