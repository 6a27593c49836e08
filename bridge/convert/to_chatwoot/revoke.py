"""Deletes for everyone (protocolMessage REVOKE): a private note on the original, which stays."""

from __future__ import annotations

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, Quote
from bridge.sidecar.protocol import MessageEvent


def convert_revoke(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "protocolMessage")
    target = baileys.text(baileys.obj(body.get("key")), "id")
    if target is None:
        raise baileys.Malformed("a revoke without the key of its target")
    # The agent keeps what the customer wrote: the note says it was deleted, nothing is removed.
    note = ctx.texts.deleted_own if event.key.fromMe else ctx.texts.deleted
    return ChatwootDraft(content=note, reply_to=Quote(wa_message_id=target), private=True)
