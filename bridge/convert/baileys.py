"""Reading Baileys' message JSON: the Python twin of Baileys' `normalizeMessageContent`.

The JSON comes from outside (the sidecar forwards Baileys' objects untouched), so every reader
here checks the type of what it returns and never raises: a field of the wrong type reads as
absent. Converters that cannot do without a field raise `Malformed`; the dispatcher turns it into
the visible placeholder.
"""

from __future__ import annotations

from typing import Any

# Containers whose `.message` holds the real content (Baileys' normalizeMessageContent list, plus
# a few newer FutureProofMessage wrappers it does not open yet).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
    "associatedChildMessage",
    "groupStatusMessage",
    "groupStatusMessageV2",
    "groupMentionedMessage",
    "botInvokeMessage",
    "lottieStickerMessage",
    "eventCoverImage",
    "statusMentionMessage",
    "pollCreationOptionImageMessage",
    "questionReplyMessage",
)

# Content keys that carry no message of their own (Baileys' getContentType skips the first;
# the others do not contain "Message" and are never a content type).
SIGNALLING = frozenset({
    "senderKeyDistributionMessage",
    "fastRatchetKeySenderKeyDistributionMessage",
    "messageContextInfo",
})


class Malformed(ValueError):
    """A message whose fields do not have the shape its kind needs."""


def unwrap(content: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The innermost content of a Message, and the wrappers opened on the way (outermost first)."""
    opened: list[str] = []
    for _ in range(5):  # wrappers nest at most a few levels deep
        for wrapper in _WRAPPERS:
            inner = content.get(wrapper)
            if isinstance(inner, dict) and isinstance(inner.get("message"), dict):
                content = inner["message"]
                opened.append(wrapper)
                break
        else:
            break
    return content, tuple(opened)


def content_of(wa_message: dict[str, Any]) -> dict[str, Any]:
    """The innermost message content of a WAMessage (`{}` for stubs without content)."""
    return unwrap(obj(wa_message.get("message")))[0]


def wrappers_of(wa_message: dict[str, Any]) -> tuple[str, ...]:
    """The wrappers around a WAMessage's content, e.g. `("ephemeralMessage", "editedMessage")`."""
    return unwrap(obj(wa_message.get("message")))[1]


def kind_of(content: dict[str, Any]) -> str | None:
    """Baileys' `getContentType`: the first key that is `conversation` or names a *Message,
    signalling keys skipped (Baileys skips only senderKeyDistributionMessage)."""
    for key in content:
        if (key == "conversation" or "Message" in key) and key not in SIGNALLING:
            return key
    return None


def body_of(wa_message: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """The object under `kind` in the message's content (`{}` when absent or not an object)."""
    return obj(content_of(wa_message).get(kind)) if kind else {}


def context_info(body: dict[str, Any]) -> dict[str, Any]:
    """A kind's `contextInfo` (quote, forwarding, mentions)."""
    return obj(body.get("contextInfo"))


def push_name(wa_message: dict[str, Any]) -> str | None:
    name = wa_message.get("pushName")
    return name.strip() or None if isinstance(name, str) else None


def timestamp(wa_message: dict[str, Any]) -> int | None:
    value = wa_message.get("messageTimestamp")
    if isinstance(value, bool):
        return None
    return int(value) if isinstance(value, int | float) else None


# --- typed readers: wrong types read as absent ---------------------------------------------------

def obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(body: dict[str, Any], key: str) -> str | None:
    """A string field that holds something besides whitespace, as written."""
    value = body.get(key)
    return value if isinstance(value, str) and value.strip() else None


def integer(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value == value and abs(value) < 2**63 else None  # NaN, inf


def number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def flag(body: dict[str, Any], key: str) -> bool:
    return body.get(key) is True


def items(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    return value if isinstance(value, list) else []


def buffer_b64(value: object) -> str | None:
    """The base64 of a Buffer in Baileys' BufferJSON form `{"type": "Buffer", "data": "<b64>"}`."""
    if isinstance(value, dict) and value.get("type") == "Buffer":
        data = value.get("data")
        if isinstance(data, str) and data:
            return data
    return None
