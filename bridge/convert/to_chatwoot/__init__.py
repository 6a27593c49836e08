"""WhatsApp message -> Chatwoot draft: one table of converters, one per content type.

Converters are pure, `(event, ctx) -> ChatwootDraft`, and raise IgnoreEvent to skip. A content
type missing from the table gets a visible placeholder (`unknown.py`), never a silent drop.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.to_chatwoot import text, unknown
from bridge.errors import IgnoreEvent
from bridge.sidecar.protocol import MessageEvent

Converter = Callable[[MessageEvent, ConvertContext], ChatwootDraft]

CONVERTERS: dict[str, Converter] = {
    "conversation": text.convert_conversation,
    "extendedTextMessage": text.convert_extended_text,
}

# Signalling messages that carry nothing a person wrote (key distribution, receipts of
# protocol actions): skipping them is not losing a message.
IGNORED: frozenset[str] = frozenset({
    "protocolMessage",
    "senderKeyDistributionMessage",
    "messageContextInfo",
})


def convert(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    kind = event.content_type
    if kind is None:
        raise IgnoreEvent("message stub without content")
    if kind in IGNORED:
        raise IgnoreEvent(f"{kind} carries no content")
    return CONVERTERS.get(kind, unknown.convert_unknown)(event, ctx)
