"""Chatwoot -> WhatsApp: drain an instance's outbox through its sidecar, in order.

One consumer task per running instance, started next to its sidecar runner; should its loop end
on an error, the task starts it again after a backoff (counted, and shown by /global-status), so
a number never stays open but deaf to its agents. An entry is an agent's message (text and
attachments, maybe quoting a WhatsApp message) or a deletion. A message goes out in parts: a
text longer than WhatsApp takes becomes several messages (convert/split.py), only the first
quoting; images and videos carry the text as the caption of the first when it fits a caption,
other files follow the text; audio goes as a voice note. Each part is recorded when WhatsApp
took it, the record retried until Redis answers, so a retry after a crash skips what already
went. An entry waits for the connection at most `BAILEYS_SEND_WAIT_MS` from the moment the
agent wrote it; a part that cannot be sent, or an entry whose handling fails on an unexpected
error, ends with a note to the agents and the Chatwoot message marked failed, never silently,
and the next entry goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis
from loguru import logger

from bridge import attachments, audio, metrics
from bridge.config import Settings
from bridge.convert.split import split_text
from bridge.errors import SidecarError
from bridge.ids import InstanceId, is_user_jid, parse_instance_id
from bridge.relay.dispatch import Dispatcher
from bridge.sidecar.protocol import (
    TEXT_MAX_CHARS,
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
from bridge.store.connection import as_text, unavailable
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
# WhatsApp's caption limit: a longer text goes as text messages, the media after it without
# a caption.
CAPTION_MAX_CHARS = 1024
# The consumer's loop, ended by an error, starts again after this backoff (doubling up to the
# cap; from the start again once it had run for _STABLE_SECONDS).
_RESTART_MIN_SECONDS = 1.0
_RESTART_MAX_SECONDS = 30.0
_STABLE_SECONDS = 60.0
_REDIS_RETRY_SECONDS = 1.0  # reading again while Redis does not answer
_WRITE_RETRY_MAX_SECONDS = 2.0  # a write that must land (a sent part's record): the cap
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Part:
    """One WhatsApp message of an agent's Chatwoot message."""

    text: str | None = None
    attachment: OutboxAttachment | None = None
    caption: str | None = None


def plan(entry: OutboxEntry) -> list[Part]:
    """Text as the first image's or video's caption when there is one and the text fits a
    caption; else the text first, in as many messages as WhatsApp's limit needs. Each chunk is
    its own part, so a retry skips the chunks that went (`SentParts`)."""
    texts = [Part(text=chunk) for chunk in split_text(entry.text, TEXT_MAX_CHARS)]
    if not entry.attachments:
        return texts
    first, *rest = entry.attachments
    if texts and kind_of(first) in ("image", "video") and len(entry.text) <= CAPTION_MAX_CHARS:
        return [Part(attachment=first, caption=entry.text), *(Part(attachment=a) for a in rest)]
    return [*texts, *(Part(attachment=a) for a in entry.attachments)]


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
        self._restarts: Counter[InstanceId] = Counter()

    def notify(self, instance_id: InstanceId) -> None:
        """An entry was appended to this instance's outbox: read it now."""
        runner = self._runners.get(instance_id)
        if runner is not None:
            runner.wakeup.set()

    def restarts(self, instance_id: InstanceId) -> int:
        """How often this instance's consumer loop ended on an error and was started again
        (since this serve started)."""
        return self._restarts[instance_id]

    async def consume(self, runner: InstanceRunner) -> None:
        """Runs while the instance runs; returns when the runner is finishing. The loop is
        supervised here: the instance supervisor watches the sidecar, not this task, and a
        consumer that died would leave the number `open` while no agent message reached it."""
        self._runners[runner.instance_id] = runner
        log = logger.bind(instance=runner.instance_id)
        delay = _RESTART_MIN_SECONDS
        while not runner.finishing:
            started = time.monotonic()
            try:
                await self._drain(runner)
            except Finishing:
                return
            except Exception:
                if runner.finishing:
                    return
                if time.monotonic() - started >= _STABLE_SECONDS:
                    delay = _RESTART_MIN_SECONDS
                log.bind(delay_s=delay).exception("Outbox consumer crashed")
                await _pause(runner, delay)
                if runner.finishing:
                    return
                delay = min(delay * 2, _RESTART_MAX_SECONDS)
                self._restarts[runner.instance_id] += 1
                metrics.outbound_restart(runner.instance_id)
                log.bind(restarts=self._restarts[runner.instance_id]).info(
                    "Outbox consumer restarted")

    async def _drain(self, runner: InstanceRunner) -> None:
        """The outbox, in order, until the runner is finishing. One entry's error fails that
        entry (`_process`); what escapes from here ends the loop, and `consume` restarts it."""
        outbox = Outbox(self._redis, runner.instance_id)
        log = logger.bind(instance=runner.instance_id)
        await self._until_redis(runner, outbox.ensure_group, "Outbox group not created")
        pending = True  # first what a previous run read but did not finish
        redis_down = False  # warned once per outage, not once a second
        while not runner.finishing:
            runner.wakeup.clear()
            try:
                entries = await outbox.read(CONSUMER, pending=pending)
            except Exception as err:
                if not unavailable(err):
                    raise
                if not redis_down:
                    log.bind(error=type(err).__name__).warning("Outbox not read")
                redis_down = True
                await _pause(runner, _REDIS_RETRY_SECONDS)
                continue
            redis_down = False
            if pending and not entries:
                pending = False
                continue
            if not entries:
                await _idle(runner, _POLL_SECONDS)
                continue
            for entry_id, entry in entries:
                try:
                    await self._process(runner, outbox, entry_id, entry, fresh=not pending)
                except Finishing:
                    return  # unacknowledged: the next start reads it again
                except Exception as err:
                    if not unavailable(err):
                        raise
                    # Redis went away mid-entry. The entry is still unacknowledged: read it
                    # again as pending (its sent parts are checked then) once Redis is back.
                    log.bind(error=type(err).__name__).warning("Outbox entry interrupted")
                    await _pause(runner, _REDIS_RETRY_SECONDS)
                    pending = True
                    break

    async def _process(self, runner: InstanceRunner, outbox: Outbox, entry_id: str,
                       entry: OutboxEntry, *, fresh: bool) -> None:
        """Send or revoke one entry and acknowledge it. Stopping and Redis errors reach the
        caller (the entry stays unacknowledged, for a retry); any other error fails the entry
        now: trying it again would fail the same way and hold up every message behind it."""
        try:
            acknowledged = False
            if entry.action == "revoke":
                await self._revoke(runner, entry)
            else:
                acknowledged = await self._deliver(
                    runner, entry, fresh=fresh, finish=(outbox, entry_id))
            if not acknowledged:
                await outbox.done(entry_id)
        except Finishing:
            raise
        except Exception as err:
            if unavailable(err):
                raise
            if runner.finishing:
                # What broke may be the stop itself (the sidecar going away): left
                # unacknowledged, the entry is tried again at the next start.
                logger.bind(instance=runner.instance_id, cw_message_id=entry.cw_message_id,
                            error=type(err).__name__).warning("Outbox entry left by the stop")
                raise Finishing() from err
            await self._give_up(runner, entry, err)
            await self._until_redis(runner, lambda: outbox.done(entry_id),
                                    "Failed outbox entry not acknowledged")

    async def _give_up(self, runner: InstanceRunner, entry: OutboxEntry,
                       err: Exception) -> None:
        # The traceback goes to the log (error: a message is lost); the text never does.
        logger.bind(instance=runner.instance_id, cw_message_id=entry.cw_message_id,
                    conversation_id=entry.conversation_id, error=type(err).__name__,
                    action=entry.action).opt(exception=err).error(
            "Agent message failed on an unexpected error")
        metrics.send_crashed(self._recorder)
        reason = self._texts.reason_internal
        if entry.action == "revoke":
            await self._dispatcher.note(entry.account_id, entry.conversation_id,
                                        self._texts.revoke_failed.format(reason=reason))
        else:
            await self._fail(entry, reason)

    async def _until_redis(self, runner: InstanceRunner, op: Callable[[], Awaitable[T]],
                           what: str, *, even_when_finishing: bool = False) -> T:
        """`op()`, tried again after a growing pause while Redis does not answer; other errors
        reach the caller. Finishing raises `Finishing` between tries, unless
        `even_when_finishing`: then only the supervisor's last-resort cancel ends the wait."""
        delay = 0.1
        warned = False
        while True:
            try:
                return await op()
            except Exception as err:
                if not unavailable(err):
                    raise
                if not warned:
                    logger.bind(instance=runner.instance_id, error=type(err).__name__).warning(
                        what)
                    warned = True
            if runner.finishing and not even_when_finishing:
                raise Finishing()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _WRITE_RETRY_MAX_SECONDS)

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
            # WhatsApp took the part: until its record lands a retry would send it again, so
            # the record is written whatever it takes (this number's sender waits; it could
            # not read its outbox without Redis anyway).
            last = len(parts) == 1
            replies = await self._until_redis(
                runner, lambda: self._record(sent, number, mapping, finish if last else None,
                                             unread),
                "Sent part not recorded yet", even_when_finishing=True)
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

    async def _record(self, sent: SentParts, number: int, mapping: MessageMapping,
                      finish: tuple[Outbox, str] | None, unread: str | None) -> list[Any]:
        """One round trip: the part counts as sent, its ids are mapped, and a tick that arrived
        before the mapping is taken; with `finish`, the entry is acknowledged too and the
        customer's unread ids are taken. Written again after a reply was lost (Redis applied
        it), the record and the mapping come out the same; only that early tick and the read
        receipts are lost, both best effort."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.getdel(keys.early_status(mapping.instance_id, mapping.wa_message_id))
            sent.record(pipe, number, mapping.wa_message_id)
            queue_put(pipe, mapping)
            if finish is not None:
                finish[0].queue_done(pipe, finish[1])
                if unread:
                    # Taken now; read receipts are best effort (a failed one is not
                    # retried), so they need not outlive this entry.
                    pipe.lrange(unread, 0, -1)
                    pipe.delete(unread)
            return list(await pipe.execute())

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

async def _pause(runner: InstanceRunner, seconds: float) -> None:
    """`seconds`, cut short only by the runner finishing: new work (`notify`) does not end a
    backoff, and what it announced is read right after it."""
    deadline = time.monotonic() + seconds
    while not runner.finishing and (left := deadline - time.monotonic()) > 0:
        runner.wakeup.clear()
        await _idle(runner, left)
