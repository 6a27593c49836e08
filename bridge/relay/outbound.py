"""Chatwoot -> WhatsApp: drain an instance's outbox through its sidecar, in order.

One consumer task per running instance, started next to its sidecar runner. An entry is an
agent's message (text and attachments, maybe quoting a WhatsApp message) or a deletion. A
message goes out in parts: images and videos carry the text as the caption of the first, other
files follow the text; audio goes as a voice note. Each part is recorded when WhatsApp took it, so
a retry after a crash skips what already went. An entry waits for the connection at most
`BAILEYS_SEND_WAIT_MS` from the moment the agent wrote it; a part that cannot be sent ends with
a note to the agents and the Chatwoot message marked failed, never silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from loguru import logger

from bridge import attachments, audio, metrics
from bridge.config import Settings
from bridge.errors import SidecarError
from bridge.ids import InstanceId, is_user_jid, parse_instance_id
from bridge.relay.dispatch import Dispatcher
from bridge.sidecar.protocol import (
    MarkReadCommand,
    Quote,
    ResultEvent,
    RevokeCommand,
    SendMediaCommand,
    SendTextCommand,
    SidecarCommand,
)
from bridge.sidecar.supervisor import InstanceRunner
from bridge.store import keys
from bridge.store.connection import as_text
from bridge.store.mapping import AsyncMappingStore, MessageMapping, queue_put
from bridge.store.outbox import Outbox, OutboxAttachment, OutboxEntry, SentParts
from bridge.texts import Texts, texts_for

CONSUMER = "serve"  # one serve host today; per-host names come with leases (scaling out)
# The webhook wakes the consumer when it appends (same process); this poll only catches entries
# someone else appended. Reads never block in Redis: a blocking XREADGROUP does not give way to
# cancellation in redis-py, and a stopping instance would wait on it forever.
_POLL_SECONDS = 2.0
# `timeout` is not retried: the sidecar may have sent it after all, and a double send to a
# customer is worse than a note asking the agent to check.
_RETRYABLE_CODES = {"not_connected", "internal"}
_KINDS = {"image": "image", "video": "video", "audio": "audio"}


@dataclass(frozen=True, slots=True)
class Part:
    """One WhatsApp message of an agent's Chatwoot message."""

    text: str | None = None
    attachment: OutboxAttachment | None = None
    caption: str | None = None


def plan(entry: OutboxEntry) -> list[Part]:
    """Text as the first image's or video's caption when there is one; else a message first."""
    text = entry.text.strip()
    if not entry.attachments:
        return [Part(text=entry.text)] if text else []
    first, *rest = entry.attachments
    if text and kind_of(first) in ("image", "video"):
        return [Part(attachment=first, caption=entry.text), *(Part(attachment=a) for a in rest)]
    return [*([Part(text=entry.text)] if text else []),
            *(Part(attachment=a) for a in entry.attachments)]


def kind_of(attachment: OutboxAttachment) -> str:
    return _KINDS.get(attachment.file_type, "document")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A downloaded attachment as it goes out; `files` are all deleted afterwards."""

    path: Path
    mimetype: str
    file_name: str | None
    ptt: bool
    files: tuple[Path, ...]


class Finishing(Exception):
    """The instance is stopping: leave the entry for the next start."""


class SendFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundSender:
    def __init__(self, settings: Settings, redis: aioredis.Redis, dispatcher: Dispatcher,
                 recorder: metrics.Recorder, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._redis = redis
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._http = http or httpx.AsyncClient()
        self._mappings = AsyncMappingStore(redis)
        self._texts: Texts = texts_for(settings.chatwoot_language)
        self._runners: dict[InstanceId, InstanceRunner] = {}

    def notify(self, instance_id: InstanceId) -> None:
        """An entry was appended to this instance's outbox: read it now."""
        runner = self._runners.get(instance_id)
        if runner is not None:
            runner.wakeup.set()

    async def consume(self, runner: InstanceRunner) -> None:
        """Runs while the instance runs; returns when the runner is finishing."""
        outbox = Outbox(self._redis, runner.instance_id)
        await outbox.ensure_group()
        self._runners[runner.instance_id] = runner
        pending = True  # first what a previous run read but did not finish
        while not runner.finishing:
            runner.wakeup.clear()
            try:
                entries = await outbox.read(CONSUMER, pending=pending)
            except (ConnectionError, OSError, aioredis.RedisError):
                logger.bind(instance=runner.instance_id).exception("Outbox read failed")
                await asyncio.sleep(1.0)
                continue
            if pending and not entries:
                pending = False
                continue
            if not entries:
                await _idle(runner, _POLL_SECONDS)
                continue
            for entry_id, entry in entries:
                try:
                    acknowledged = False
                    if entry.action == "revoke":
                        await self._revoke(runner, entry)
                    else:
                        acknowledged = await self._deliver(
                            runner, entry, fresh=not pending, finish=(outbox, entry_id))
                    if not acknowledged:
                        await outbox.done(entry_id)
                except Finishing:
                    return  # unacknowledged: the next start reads it again
                except (ConnectionError, OSError, aioredis.RedisError):
                    # Redis went away mid-entry. The entry is still unacknowledged: read it
                    # again as pending (its sent parts are checked then) once Redis is back.
                    logger.bind(instance=runner.instance_id).exception("Outbox entry interrupted")
                    await asyncio.sleep(1.0)
                    pending = True
                    break

    # --- sending ----------------------------------------------------------------------------
    async def _deliver(self, runner: InstanceRunner, entry: OutboxEntry, *, fresh: bool,
                       finish: tuple[Outbox, str]) -> bool:
        """`fresh`: read for the first time (not left unacknowledged by a previous run).
        True when the entry was acknowledged here: a one-part message that went out finishes
        in the same transaction that records it (`finish`: its outbox and entry id), one Redis
        round trip instead of three (record, acknowledge, take the read-receipt list)."""
        log = logger.bind(instance=runner.instance_id, cw_message_id=entry.cw_message_id,
                          conversation_id=entry.conversation_id)
        account_id, _ = parse_instance_id(runner.instance_id)
        parts = plan(entry)
        unread = self._unread_key(runner, entry)
        unread_ids: list[str] | None = None
        acknowledged = False
        sent = SentParts(self._redis, account_id, entry.cw_message_id)
        if not fresh:  # read again after a restart: some parts may have gone out already
            await sent.load()
        failures = []
        for number, part in enumerate(parts, start=1):
            if number in sent.sent:
                continue  # went out before a restart: never twice
            quote = self._quote(entry) if number == 1 else None
            try:
                result = await self._send_part(runner, entry, part, quote)
            except SendFailed as failed:
                log.bind(part=number, reason=failed.reason).warning("Agent message part not sent")
                metrics.send_failed(self._recorder, failed)
                failures.append(failed.reason)
                continue
            wa_id = str((result.data or {}).get("message_id", ""))
            metrics.relayed_to_whatsapp(
                self._recorder, runner.instance_id,
                kind_of(part.attachment) if part.attachment else "text", since=entry.at)
            mapping = MessageMapping(
                instance_id=runner.instance_id, chat_jid=entry.jid, wa_message_id=wa_id,
                account_id=account_id, conversation_id=entry.conversation_id,
                cw_message_id=entry.cw_message_id, from_me=True)
            # One round trip: the part counts as sent, its ids are mapped, and a tick that
            # arrived before the mapping is taken.
            last = len(parts) == 1
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.getdel(keys.early_status(runner.instance_id, wa_id))
                sent.record(pipe, number, wa_id)
                queue_put(pipe, mapping)
                if last:
                    finish[0].queue_done(pipe, finish[1])
                    if unread:
                        # Taken now; read receipts are best effort (a failed one is not
                        # retried), so they need not outlive this entry.
                        pipe.lrange(unread, 0, -1)
                        pipe.delete(unread)
                replies = await pipe.execute()
            acknowledged = last
            if last and unread:
                unread_ids = [as_text(i) for i in replies[-2]]
            await self._dispatcher.apply_early_status(mapping, replies[0])
        if sent.sent and min(sent.sent) != max(sent.sent):
            # Replies to this Chatwoot message quote its first part.
            first = sent.sent[min(sent.sent)]
            await self._mappings.put(MessageMapping(
                instance_id=runner.instance_id, chat_jid=entry.jid, wa_message_id=first,
                account_id=account_id, conversation_id=entry.conversation_id,
                cw_message_id=entry.cw_message_id, from_me=True))
        if failures:
            await self._fail(entry, "; ".join(dict.fromkeys(failures)))
        elif sent.sent:
            log.info("Agent message sent")
            if unread_ids is None and unread:
                unread_ids = [as_text(i) for i in await self._redis.lrange(unread, 0, -1)]
                await self._redis.delete(unread)
            if unread_ids:
                await self._mark_read(runner, entry, unread_ids)
        return acknowledged

    def _quote(self, entry: OutboxEntry) -> Quote | None:
        if entry.quote is None:
            return None
        return Quote(id=entry.quote.wa_message_id, from_me=entry.quote.from_me)

    async def _send_part(self, runner: InstanceRunner, entry: OutboxEntry, part: Part,
                         quote: Quote | None) -> ResultEvent:
        if part.attachment is None:
            text = part.text or ""
            return await self._send(runner, entry, lambda cid: SendTextCommand(
                id=cid, jid=entry.jid, text=text, quote=quote))
        attachment = part.attachment
        prepared = await self._prepare(runner, attachment)
        try:
            return await self._send(runner, entry, lambda cid: SendMediaCommand(
                id=cid, jid=entry.jid, path=str(prepared.path), mimetype=prepared.mimetype,
                kind=kind_of(attachment),  # type: ignore[arg-type]
                file_name=prepared.file_name, caption=part.caption, ptt=prepared.ptt,
                quote=quote))
        finally:
            for file in prepared.files:
                file.unlink(missing_ok=True)

    async def _prepare(self, runner: InstanceRunner, attachment: OutboxAttachment) -> Prepared:
        """Download from Chatwoot into the spool; audio becomes a voice note (Ogg/Opus)."""
        spool = self._settings.spool_dir / runner.instance_id
        try:
            got = await attachments.fetch(
                self._http, attachment.data_url, chatwoot_url=self._settings.chatwoot_url,
                spool=spool, max_bytes=self._settings.baileys_media_max_bytes, timeout_s=120,
                filename=attachment.name, content_type=attachment.content_type)
        except attachments.AttachmentError as err:
            raise SendFailed(self._attachment_reason(err.reason)) from err
        if kind_of(attachment) != "audio":
            return Prepared(got.path, got.content_type, got.filename, False, (got.path,))
        if audio.is_opus(got.content_type, got.path):
            return Prepared(got.path, audio.OPUS_MIMETYPE, None, True, (got.path,))
        converted = await audio.to_voice_note(got.path)
        if converted is None:  # no ffmpeg: it still goes, as a plain audio file
            return Prepared(got.path, got.content_type, got.filename, False, (got.path,))
        return Prepared(converted, audio.OPUS_MIMETYPE, None, True, (got.path, converted))

    async def _send(self, runner: InstanceRunner, entry: OutboxEntry,
                    make: Callable[[str], SidecarCommand]) -> ResultEvent:
        """One command through the sidecar, waiting for the connection within the deadline."""
        deadline = entry.at + self._settings.baileys_send_wait_ms / 1000
        delay = 0.5
        while True:
            if runner.finishing:
                raise Finishing()
            remaining = deadline - time.time()
            if remaining <= 0:
                raise SendFailed(self._texts.reason_not_connected)
            if not await runner.wait_open(min(remaining, 30.0)):
                continue
            try:
                return await runner.request(make)
            except SidecarError as err:
                if err.code in _RETRYABLE_CODES:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                raise SendFailed(self._reason(err.code)) from err

    def _reason(self, code: str) -> str:
        return {
            "invalid_jid": self._texts.reason_invalid_recipient,
            "not_on_whatsapp": self._texts.reason_not_on_whatsapp,
            "timeout": self._texts.reason_timeout,
            "bad_media": self._texts.reason_bad_media,
        }.get(code, self._texts.reason_rejected)

    def _attachment_reason(self, reason: str) -> str:
        return {
            "foreign_host": self._texts.reason_attachment_foreign,
            "too_large": self._texts.reason_attachment_too_large,
        }.get(reason, self._texts.reason_attachment_unavailable)

    # --- deleting, reading, failing ---------------------------------------------------------
    async def _revoke(self, runner: InstanceRunner, entry: OutboxEntry) -> None:
        account_id, _ = parse_instance_id(runner.instance_id)
        sent = await SentParts(self._redis, account_id, entry.cw_message_id).load()
        for _number, wa_id in sorted(sent.sent.items()):
            try:
                await self._send(runner, entry, _revoke_command(entry.jid, wa_id))
            except SendFailed as failed:
                await self._dispatcher.note(entry.account_id, entry.conversation_id,
                                            self._texts.revoke_failed.format(
                                                reason=failed.reason))
                return
        logger.bind(instance=runner.instance_id, cw_message_id=entry.cw_message_id).info(
            "Agent message deleted on WhatsApp")

    def _unread_key(self, runner: InstanceRunner, entry: OutboxEntry) -> str | None:
        """Where the customer's unanswered message ids wait, when an answer marks them read."""
        if not self._settings.chatwoot_mark_read_on_reply or not is_user_jid(entry.jid):
            return None
        return keys.unread(runner.instance_id, entry.jid)

    async def _mark_read(self, runner: InstanceRunner, entry: OutboxEntry,
                         ids: list[str]) -> None:
        """An agent answered: the customer's messages count as read (optional)."""
        try:
            await runner.request(lambda cid: MarkReadCommand(id=cid, jid=entry.jid,
                                                             message_ids=ids))
        except SidecarError as err:
            logger.bind(code=err.code).debug("Read receipts not sent")

    async def _fail(self, entry: OutboxEntry, reason: str) -> None:
        """Visible in Chatwoot: the message marked failed, and a note saying why."""
        await self._dispatcher.note(entry.account_id, entry.conversation_id,
                                    self._texts.send_failed.format(reason=reason))
        await self._dispatcher.message_status(entry.account_id, entry.conversation_id,
                                              entry.cw_message_id, "failed", reason)


def _revoke_command(jid: str, wa_id: str) -> Callable[[str], SidecarCommand]:
    return lambda cid: RevokeCommand(id=cid, jid=jid, message_id=wa_id)


async def _idle(runner: InstanceRunner, seconds: float) -> None:
    """Until new work (`notify` sets the wakeup, and so does the runner finishing), or the poll
    interval. The event is waited on directly: polling it every 50 ms added 25 ms on average to
    every agent message (docs/benchmarks.md). `asyncio.wait` does not swallow a cancellation the
    way 3.11's `wait_for` could, and the waiter is always cancelled, so a stop lands at once."""
    if runner.wakeup.is_set():
        return
    waiter = asyncio.ensure_future(runner.wakeup.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()