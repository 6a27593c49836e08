"""Reading Baileys' message JSON: the Python twin of Baileys' `normalizeMessageContent`."""

from __future__ import annotations

from typing import Any

# Containers whose `.message` holds the real content (Baileys' normalizeMessageContent list).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
    "associatedChildMessage",
    "groupMentionedMessage",
    "botInvokeMessage",
    "lottieStickerMessage",
    "eventCoverImage",
    "statusMentionMessage",
    "pollCreationOptionImageMessage",
    "questionReplyMessage",
)


def content_of(wa_message: dict[str, Any]) -> dict[str, Any]:
    """The innermost message content of a WAMessage (`{}` for stubs without content)."""
    content = wa_message.get("message") or {}
    for _ in range(5):  # wrappers nest at most a few levels deep
        for wrapper in _WRAPPERS:
            inner = content.get(wrapper)
            if isinstance(inner, dict) and isinstance(inner.get("message"), dict):
                content = inner["message"]
                break
        else:
            return content
    return content


def push_name(wa_message: dict[str, Any]) -> str | None:
    name = wa_message.get("pushName")
    return name.strip() or None if isinstance(name, str) else None


def timestamp(wa_message: dict[str, Any]) -> int | None:
    value = wa_message.get("messageTimestamp")
    return int(value) if isinstance(value, int | float) else None
