"""WhatsApp message -> Chatwoot draft: one table of converters, one per content type.

Converters are pure, `(event, ctx) -> ChatwootDraft`, and raise IgnoreEvent to skip. A content
type missing from the table gets a visible placeholder (`unknown.py`), never a silent drop; a
message whose fields are not what its kind needs (`baileys.Malformed`) gets one too. Reply link,
group sender, forwarded mark and old-message time are added once, after dispatch (`finish.py`).
docs/message-kinds.md shows how each kind looks in Chatwoot.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.to_chatwoot import (
    contact,
    edit,
    finish,
    interactive,
    location,
    media,
    poll,
    reaction,
    revoke,
    stub,
    text,
    unknown,
)
from bridge.errors import IgnoreEvent
from bridge.sidecar.protocol import MessageEvent

Converter = Callable[[MessageEvent, ConvertContext], ChatwootDraft]

MESSAGE_EDIT, REVOKE = 14, 0  # proto.Message.ProtocolMessage.Type


def convert_protocol(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    """protocolMessage: edits and deletes for everyone; every other type is signalling."""
    body = baileys.body_of(event.message, "protocolMessage")
    # protobuf leaves the default enum value off the wire: no `type` is REVOKE (0).
    kind = body.get("type", REVOKE)
    if kind == MESSAGE_EDIT:
        return edit.convert_edit(event, ctx)
    if kind == REVOKE and "key" in body:
        return revoke.convert_revoke(event, ctx)
    raise IgnoreEvent(f"protocolMessage type {kind!r}")


CONVERTERS: dict[str, Converter] = {
    "conversation": text.convert_conversation,
    "extendedTextMessage": text.convert_extended_text,
    "imageMessage": media.convert_media,
    "videoMessage": media.convert_media,
    "ptvMessage": media.convert_media,
    "audioMessage": media.convert_media,
    "documentMessage": media.convert_media,
    "stickerMessage": media.convert_media,
    "locationMessage": location.convert_location,
    "liveLocationMessage": location.convert_location,
    "contactMessage": contact.convert_contact,
    "contactsArrayMessage": contact.convert_contacts_array,
    "reactionMessage": reaction.convert_reaction,
    "protocolMessage": convert_protocol,
    "pollCreationMessage": poll.convert_poll,
    "pollCreationMessageV2": poll.convert_poll,
    "pollCreationMessageV3": poll.convert_poll,
    "pollCreationMessageV4": poll.convert_poll,
    "pollCreationMessageV5": poll.convert_poll,
    "pollUpdateMessage": poll.convert_vote,
    **{kind: interactive.convert_interactive for kind in sorted(interactive.KINDS)},
}

# Signalling messages that carry nothing a person wrote (key distribution): skipping them is not
# losing a message.
IGNORED: frozenset[str] = baileys.SIGNALLING


def convert(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    return finish.finish(event, ctx, _dispatch(event, ctx))


def _dispatch(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    content = baileys.content_of(event.message)
    kind = event.content_type
    if kind is None or kind not in content or kind in IGNORED:
        # We open a few wrappers Baileys does not (e.g. lottieStickerMessage) and skip every
        # signalling key: dispatch on what is really inside.
        kind = baileys.kind_of(content) or kind
    if kind is None:  # stubs: undecryptable messages, group notices
        return stub.convert_contentless(event, ctx)
    if kind in IGNORED:
        raise IgnoreEvent(f"{kind} carries no content")
    if kind != event.content_type:
        event = event.model_copy(update={"content_type": kind})
    if "editedMessage" in baileys.wrappers_of(event.message) and kind != "protocolMessage":
        return _guarded(edit.convert_wrapped_edit, event, ctx)
    return _guarded(CONVERTERS.get(kind, unknown.convert_unknown), event, ctx)


def _guarded(converter: Converter, event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    # The message is outside JSON: a field of an unexpected shape must cost a placeholder, not
    # the message (an exception here would send it to the failed list).
    try:
        return converter(event, ctx)
    except (baileys.Malformed, TypeError, ValueError, KeyError, AttributeError, IndexError):
        return unknown.unreadable(event.content_type or "unknown", ctx)
