"""Messages without content (`content_type` null): stubs and bare signalling.

Baileys turns a message it could not decrypt into a CIPHERTEXT stub ("Bad MAC", "No session
record", "Message absent from node"): the agent gets a private note, since the person did write
something. Other stubs are group or call notices and are skipped, as is content that only carries
signalling (sender keys, messageContextInfo).
"""

from __future__ import annotations

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.to_chatwoot import unknown
from bridge.errors import IgnoreEvent
from bridge.sidecar.protocol import MessageEvent

CIPHERTEXT = 2  # proto.WebMessageInfo.StubType.CIPHERTEXT


def convert_contentless(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    stub = baileys.integer(event.message, "messageStubType")
    if stub == CIPHERTEXT:
        return convert_undecryptable(event, ctx)
    if stub:
        raise IgnoreEvent(f"message stub {stub}")
    # Content whose keys Baileys' getContentType does not recognise (e.g. `call`) is still
    # someone's message: name it rather than drop it.
    other = [k for k in baileys.content_of(event.message) if k not in baileys.SIGNALLING]
    if not other:
        raise IgnoreEvent("no content")
    return unknown.placeholder(other[0], ctx)


def convert_undecryptable(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    params = [p for p in baileys.items(event.message, "messageStubParameters")
              if isinstance(p, str) and p.strip()]
    reason = params[0].strip()[:120] if params else "CIPHERTEXT"
    return ChatwootDraft(content=ctx.texts.undecryptable.format(reason=reason), private=True)
