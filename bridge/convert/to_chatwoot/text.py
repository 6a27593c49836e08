"""Text kinds: `conversation` (plain) and `extendedTextMessage` (links, previews, quotes)."""

from __future__ import annotations

from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.errors import IgnoreEvent
from bridge.sidecar.protocol import MessageEvent


def convert_conversation(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    text = baileys.content_of(event.message).get("conversation")
    if not isinstance(text, str):
        raise baileys.Malformed("conversation is not a string")
    if not text.strip():
        raise IgnoreEvent("empty conversation message")
    return ChatwootDraft(content=text)


def convert_extended_text(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "extendedTextMessage")
    text = baileys.text(body, "text")
    if text is None:
        raise IgnoreEvent("empty extended text message")
    preview = link_preview(body, text)
    return ChatwootDraft(content=f"{text}\n\n{preview}" if preview else text)


def link_preview(body: dict[str, Any], text: str) -> str | None:
    """WhatsApp's link preview as text, each part once: title, description, the URL.

    The URL is left out when the text already has it; a title or description that only repeats
    the text or the URL is left out too.
    """
    url = baileys.text(body, "matchedText")
    parts: list[str] = []
    for field in ("title", "description"):
        value = baileys.text(body, field)
        if value is None:
            continue
        value = value.strip()
        if value in text or value == url or value in parts:
            continue
        parts.append(value)
    if url and url not in text:
        parts.append(url.strip())
    if not parts:
        return None
    return "\n".join([f"🔗 {parts[0]}", *parts[1:]])
