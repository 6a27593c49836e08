"""Private notes from Ponte to the operators (QR codes, link status, failures)."""

from __future__ import annotations

import io
import time

import segno
from loguru import logger

from bridge.chatwoot.client import Upload
from bridge.ids import InstanceId
from bridge.jobs.runtime import WorkerContext
from bridge.store import keys
from bridge.store.mailbox import MailboxItem

NOTE_RECORD_TTL_SECONDS = 7 * 24 * 3600


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
