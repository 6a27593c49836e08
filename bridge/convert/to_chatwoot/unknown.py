"""Any kind without a converter: a visible placeholder naming the kind, never a silent drop."""

from __future__ import annotations

from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.sidecar.protocol import MessageEvent


def convert_unknown(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    return placeholder(event.content_type or "unknown", ctx)


def placeholder(kind: str, ctx: ConvertContext) -> ChatwootDraft:
    return ChatwootDraft(content=ctx.texts.unsupported_message.format(kind=kind),
                         content_attributes={"ponte_kind": kind})


def unreadable(kind: str, ctx: ConvertContext) -> ChatwootDraft:
    """A known kind whose fields are not what it needs (a malformed or newer message)."""
    return ChatwootDraft(content=ctx.texts.unreadable_message.format(kind=kind),
                         content_attributes={"ponte_kind": kind})
