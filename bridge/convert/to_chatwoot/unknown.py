"""Any kind without a converter: a visible placeholder naming the kind."""

from __future__ import annotations

from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.sidecar.protocol import MessageEvent


def convert_unknown(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    kind = event.content_type or "unknown"
    return ChatwootDraft(content=ctx.texts.unsupported_message.format(kind=kind),
                         content_attributes={"ponte_kind": kind})
