"""Reactions: shown on their target, as a reply carrying the emoji (or a note of its removal)."""

from __future__ import annotations

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, Quote
from bridge.sidecar.protocol import MessageEvent


def convert_reaction(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "reactionMessage")
    target = baileys.text(baileys.obj(body.get("key")), "id")
    if target is None:
        raise baileys.Malformed("a reaction without the key of its target")
    emoji = baileys.text(body, "text")  # empty: the reaction was taken back
    return ChatwootDraft(content=emoji.strip() if emoji else ctx.texts.reaction_removed,
                         reply_to=Quote(wa_message_id=target))
