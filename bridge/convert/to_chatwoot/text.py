"""Text kinds: `conversation` (plain) and `extendedTextMessage` (links, quotes, formatting)."""

from __future__ import annotations

from bridge.convert.baileys import content_of
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.errors import IgnoreEvent
from bridge.sidecar.protocol import MessageEvent


def convert_conversation(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    text = content_of(event.message).get("conversation")
    if not isinstance(text, str) or not text:
        raise IgnoreEvent("empty conversation message")
    return ChatwootDraft(content=text)


def convert_extended_text(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = content_of(event.message).get("extendedTextMessage") or {}
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise IgnoreEvent("empty extended text message")
    return ChatwootDraft(content=text)
