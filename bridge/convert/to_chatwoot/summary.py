"""A message in a few words: its kind's name, its text, a short excerpt for quotes and edits."""

from __future__ import annotations

from typing import Any

from bridge.convert import baileys
from bridge.texts import Texts

EXCERPT_CHARS = 100

POLL_KINDS = frozenset({
    "pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3",
    "pollCreationMessageV5",
})


def kind_label(kind: str | None, body: dict[str, Any], texts: Texts) -> str | None:
    """The human name of a kind ("📷 Foto"), or None for kinds that are just text or unknown."""
    if kind == "imageMessage":
        return texts.kind_image
    if kind == "videoMessage":
        return texts.kind_gif if baileys.flag(body, "gifPlayback") else texts.kind_video
    if kind == "ptvMessage":
        return texts.kind_video_note
    if kind == "audioMessage":
        return texts.kind_voice_note if baileys.flag(body, "ptt") else texts.kind_audio
    if kind == "documentMessage":
        return texts.kind_document
    if kind == "stickerMessage":
        animated = baileys.flag(body, "isAnimated")
        return texts.kind_animated_sticker if animated else texts.kind_sticker
    if kind == "locationMessage":
        return texts.kind_live_location if baileys.flag(body, "isLive") else texts.kind_location
    if kind == "liveLocationMessage":
        return texts.kind_live_location
    if kind in ("contactMessage", "contactsArrayMessage"):
        return texts.kind_contact
    if kind in POLL_KINDS or kind == "pollCreationMessageV4":
        return texts.kind_poll
    return None


def text_of(content: dict[str, Any]) -> str | None:
    """What the person wrote in a message content: its text, caption or question."""
    kind = baileys.kind_of(content)
    if kind == "conversation":
        value = content.get("conversation")
        return value if isinstance(value, str) and value.strip() else None
    body = baileys.obj(content.get(kind)) if kind else {}
    if kind in POLL_KINDS:
        return baileys.text(body, "name")
    if kind in ("contactMessage", "contactsArrayMessage"):
        return baileys.text(body, "displayName")
    for field in ("text", "caption", "contentText", "selectedDisplayText", "title", "name"):
        if value := baileys.text(body, field):
            return value
    if kind == "documentMessage":
        return baileys.text(body, "fileName")
    if kind == "interactiveResponseMessage":
        return baileys.text(baileys.obj(body.get("body")), "text")
    return None


def describe(content: dict[str, Any], texts: Texts) -> str:
    """The text of a message content, else the name of its kind."""
    content = baileys.unwrap(content)[0]
    if (words := text_of(content)) is not None:
        return words
    kind = baileys.kind_of(content)
    body = baileys.obj(content.get(kind)) if kind else {}
    return kind_label(kind, body, texts) or texts.kind_other.format(kind=kind or "?")


def excerpt(content: dict[str, Any], texts: Texts, limit: int = EXCERPT_CHARS) -> str:
    """`describe` on one line, cut to `limit` characters."""
    return shorten(" ".join(describe(content, texts).split()), limit)


def shorten(value: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when one is near, ending in "…"."""
    if len(value) <= limit:
        return value
    cut = value[: limit - 1]
    space = cut.rfind(" ")
    if value[limit - 1] != " " and space >= limit * 3 // 4:
        cut = cut[:space]
    return cut.rstrip() + "…"
