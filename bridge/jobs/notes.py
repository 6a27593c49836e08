"""Private notes from Ponte to the operators (QR codes, link status, failures).

Failure notes are coalesced per chat: the first failure is told at once, the ones after it
within FAILURE_NOTE_WINDOW_SECONDS are counted and told in one note when the window ends. A
flood that fails must not become a flood of notes (each of which Chatwoot counts against the
same conversation's 200 messages a minute).
"""

from __future__ import annotations

import io
import time

import segno
from loguru import logger

from bridge.chatwoot.client import Upload
from bridge.errors import PonteError
from bridge.ids import InstanceId
from bridge.jobs import runtime
from bridge.jobs.queues import schedule_failure_note
from bridge.jobs.runtime import WorkerContext
from bridge.store import keys
from bridge.store.mailbox import MailboxItem

NOTE_RECORD_TTL_SECONDS = 7 * 24 * 3600
FAILURE_NOTE_WINDOW_SECONDS = 60.0


def qr_png(qr: str) -> bytes:
    """The QR string rendered whole as a PNG a phone reads from a screen."""
    buffer = io.BytesIO()
    segno.make(qr, error="l").save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()


def post(ctx: WorkerContext, item: MailboxItem) -> None:
    payload = item.payload
    if ctx.redis.exists(keys.note_posted(item.id)):
        return  # posted before a crash; the pop did not happen
    expires_at = payload.get("expires_at")
    if expires_at is not None and time.time() > float(expires_at):
        # A QR older than its lifetime cannot be scanned; posting it would only confuse.
        logger.warning("Skipped an expired QR note")
        return
    account_id, conversation_id = int(payload["account_id"]), int(payload["conversation_id"])
    # Our own source_id: it makes the note findable after an uncertain attempt, and tells the
    # webhook the message is ours.
    source_id = f"ponte-note-{item.id}"
    attempt = keys.post_attempt(InstanceId("notes"), item.id)
    if ctx.redis.exists(attempt) and ctx.chatwoot.find_message(
            account_id, conversation_id, source_id=source_id, private=True) is not None:
        ctx.redis.set(keys.note_posted(item.id), "1", ex=NOTE_RECORD_TTL_SECONDS)
        return
    uploads = []
    qr = payload.get("qr")
    if qr:
        uploads.append(Upload(path=None, filename="whatsapp-qr.png", content_type="image/png",
                              data=qr_png(qr)))
    ctx.redis.set(attempt, "1", ex=NOTE_RECORD_TTL_SECONDS)
    message = ctx.chatwoot.create_message(
        account_id, conversation_id, content=payload["content"], message_type="outgoing",
        private=True, source_id=source_id, uploads=uploads)
    ctx.redis.set(keys.note_posted(item.id), str(message["id"]), ex=NOTE_RECORD_TTL_SECONDS)
    logger.bind(conversation_id=payload["conversation_id"], cw_message_id=message["id"]).info(
        "Note posted")


def report_failure(ctx: WorkerContext, *, instance_id: InstanceId, chat_jid: str,
                   account_id: int, conversation_id: int, wa_message_id: str,
                   reason: str) -> None:
    """Tell the agents of a chat that a message was lost: now, or with the others of the
    minute in one note when one was posted in this chat less than a minute ago."""
    pending = keys.failure_note(instance_id, chat_jid)
    with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(pending, "count", 1)
        pipe.hset(pending, mapping={"wa_message_id": wa_message_id, "reason": reason,
                                    "account_id": account_id,
                                    "conversation_id": conversation_id})
        pipe.expire(pending, NOTE_RECORD_TTL_SECONDS)
        count = int(pipe.execute()[0])
    if _open_window(ctx, instance_id, chat_jid):
        _post_failures(ctx, instance_id, chat_jid)
    elif count == 1:  # the first one held back in this window: tell it when the window ends
        _flush_later(ctx, instance_id, chat_jid)


def flush_failures(instance_id: str, chat_jid: str) -> None:
    """RQ job: post the failures held back while a window was open."""
    ctx = runtime.current()
    instance = InstanceId(instance_id)
    if _open_window(ctx, instance, chat_jid):
        _post_failures(ctx, instance, chat_jid)
    elif ctx.redis.hexists(keys.failure_note(instance, chat_jid), "count"):
        _flush_later(ctx, instance, chat_jid)  # woke a little early (whole-second scheduling)


def _open_window(ctx: WorkerContext, instance_id: InstanceId, chat_jid: str) -> bool:
    return bool(ctx.redis.set(keys.failure_note_window(instance_id, chat_jid), "1", nx=True,
                              px=max(1, int(FAILURE_NOTE_WINDOW_SECONDS * 1000))))


def _flush_later(ctx: WorkerContext, instance_id: InstanceId, chat_jid: str) -> None:
    left_ms = int(ctx.redis.pttl(keys.failure_note_window(instance_id, chat_jid)))
    # + 1: RQ keeps a scheduled job's time in whole seconds, rounded down.
    schedule_failure_note(ctx.redis, instance_id, chat_jid,
                          delay_s=max(left_ms, 0) / 1000 + 1.0)


def _post_failures(ctx: WorkerContext, instance_id: InstanceId, chat_jid: str) -> None:
    """Post one note for every failure counted so far (the window is ours)."""
    pending = keys.failure_note(instance_id, chat_jid)
    with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(pending)
        pipe.delete(pending)
        raw, _ = pipe.execute()
    held = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()}
    count = int(held.get("count", 0))
    if count == 0:  # told already (by a flush racing a failure): leave the window to the next
        ctx.redis.delete(keys.failure_note_window(instance_id, chat_jid))
        return
    wa_id, reason = held["wa_message_id"], held["reason"]
    content = (ctx.texts.delivery_failed.format(wa_message_id=wa_id, reason=reason)
               if count == 1 else
               ctx.texts.deliveries_failed.format(count=count, wa_message_id=wa_id,
                                                  reason=reason))
    try:
        ctx.chatwoot.create_message(int(held["account_id"]), int(held["conversation_id"]),
                                    content=content, message_type="outgoing", private=True)
    except Exception as err:  # the failures are on the failed list; the note is a courtesy
        logger.bind(error=type(err).__name__, count=count).error(
            "Could not post the failure note")
        if isinstance(err, PonteError) and err.retryable:
            # Throttled or down: keep the count for the note after this window.
            with ctx.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(pending, "count", count)
                for name, value in held.items():
                    if name != "count":
                        pipe.hsetnx(pending, name, value)
                pipe.expire(pending, NOTE_RECORD_TTL_SECONDS)
                pipe.execute()
            _flush_later(ctx, instance_id, chat_jid)
