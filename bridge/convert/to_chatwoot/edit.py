"""Edits: a reply to the original, marked edited, with the new text; the old text stays.

Two shapes reach us: `protocolMessage{type: MESSAGE_EDIT, key, editedMessage}` (bare, or inside
an `editedMessage` wrapper, the shape WhatsApp sends today), and an `editedMessage` wrapper
around plain content, the shape of Baileys' own `messages.update`, whose `key.id` is the
original's.
"""

from __future__ import annotations

from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, Quote
from bridge.convert.to_chatwoot.summary import describe
from bridge.sidecar.protocol import MessageEvent


def convert_edit(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "protocolMessage")
    target = baileys.text(baileys.obj(body.get("key")), "id")
    new_content = baileys.obj(body.get("editedMessage"))
    if target is None or not new_content:
        raise baileys.Malformed("an edit without its target or its new content")
    return _edited(target, new_content, ctx)


def convert_wrapped_edit(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    return _edited(event.key.id, baileys.content_of(event.message), ctx)


def _edited(target: str, new_content: dict[str, Any], ctx: ConvertContext) -> ChatwootDraft:
    return ChatwootDraft(content=ctx.texts.edited.format(text=describe(new_content, ctx.texts)),
                         reply_to=Quote(wa_message_id=target))
