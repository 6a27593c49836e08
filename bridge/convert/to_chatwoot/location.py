"""Location kinds: `locationMessage` (a pin or a place) and `liveLocationMessage`.

cf. mautrix/whatsapp:pkg/msgconv/wa-location.go. A live location is shown once, where it started;
its later position updates are not followed.
"""

from __future__ import annotations

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.sidecar.protocol import MessageEvent


def convert_location(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    loc = baileys.body_of(event.message, event.content_type)
    lat, lng = baileys.number(loc, "degreesLatitude"), baileys.number(loc, "degreesLongitude")
    if lat is None and lng is None:
        raise baileys.Malformed("a location without coordinates")
    # protobuf leaves a 0.0 coordinate off the wire: one missing coordinate is the equator or
    # the prime meridian, not an error.
    lat, lng = lat or 0.0, lng or 0.0
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise baileys.Malformed("coordinates out of range")
    live = event.content_type == "liveLocationMessage" or baileys.flag(loc, "isLive")
    name = baileys.text(loc, "name")
    texts = ctx.texts
    if live:
        title = texts.kind_live_location
    else:
        title = texts.location_named.format(name=name) if name else texts.kind_location
    lines = [title]
    if live and name:
        lines.append(name)
    for field in ("address", "caption", "comment"):
        if value := baileys.text(loc, field):
            lines.append(value.strip())
    lines.append(baileys.text(loc, "url") or f"https://maps.google.com/?q={lat:.5f},{lng:.5f}")
    return ChatwootDraft(content="\n".join(lines))
