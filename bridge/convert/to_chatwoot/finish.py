"""What every kind gets once, after dispatch (`buildChatWootMessage` in devlikeapro/waha).

- the quoted message of a reply (`reply_to`), unless the converter already answers something;
- header lines, in this order: who wrote it in a group (push name, escaped by `names.py`, and
  phone number; "Você" for the linked phone), the forwarded mark, and the original time of an
  old message (`ConvertContext.old_message_minutes`; UTC, in the language's `time_format`).

A poll vote stays untouched: its empty content is for the job, which posts the tally.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, Quote
from bridge.convert.names import markdown_name
from bridge.convert.to_chatwoot.summary import excerpt
from bridge.ids import is_group_jid, phone_from_jid
from bridge.sidecar.protocol import MessageEvent

FORWARDED_MANY = 5  # WhatsApp's "forwarded many times" starts at this forwardingScore


def finish(event: MessageEvent, ctx: ConvertContext, draft: ChatwootDraft) -> ChatwootDraft:
    if draft.poll_vote is not None:
        return draft
    info = baileys.context_info(baileys.body_of(event.message, event.content_type))
    header = [line for line in (_sender(event, ctx), _forwarded(info, ctx), _sent_at(event, ctx))
              if line]
    content = "\n".join([*header, draft.content] if draft.content else header)
    return dataclasses.replace(draft, content=content,
                               reply_to=draft.reply_to or _quote(info, ctx))


def _quote(info: dict[str, Any], ctx: ConvertContext) -> Quote | None:
    stanza_id = baileys.text(info, "stanzaId")
    if stanza_id is None:
        return None
    quoted = baileys.obj(info.get("quotedMessage"))
    return Quote(wa_message_id=stanza_id,
                 excerpt=excerpt(quoted, ctx.texts) if quoted else None)


def _sender(event: MessageEvent, ctx: ConvertContext) -> str | None:
    if not is_group_jid(event.key.remoteJid):
        return None
    if event.key.fromMe:
        return f"**{ctx.texts.you}**:"
    jids = [event.key.participant, event.key.participantAlt,
            baileys.text(event.message, "participant")]
    phone = next((p for jid in jids if jid and (p := _phone(jid))), None)
    name = markdown_name(baileys.push_name(event.message))  # chosen by the sender: only a name
    if name and phone:
        return f"**{name}** ({phone}):"
    if name or phone:
        return f"**{name or phone}**:"
    user = next((jid.partition("@")[0] for jid in jids if jid), None)
    return f"**{user}**:" if user else None


def _phone(jid: str) -> str | None:
    try:
        return phone_from_jid(jid)
    except ValueError:
        return None


def _forwarded(info: dict[str, Any], ctx: ConvertContext) -> str | None:
    score = baileys.integer(info, "forwardingScore") or 0
    if score >= FORWARDED_MANY:
        return ctx.texts.forwarded_many
    if score > 0 or baileys.flag(info, "isForwarded"):
        return ctx.texts.forwarded
    return None


def _sent_at(event: MessageEvent, ctx: ConvertContext) -> str | None:
    sent = baileys.timestamp(event.message)
    if not sent or ctx.now <= 0 or ctx.old_message_minutes <= 0:
        return None
    if ctx.now - sent <= ctx.old_message_minutes * 60:
        return None
    try:
        when = datetime.fromtimestamp(sent, tz=UTC).strftime(ctx.texts.time_format)
    except (OverflowError, OSError, ValueError):
        return None
    return ctx.texts.sent_at.format(time=when)
