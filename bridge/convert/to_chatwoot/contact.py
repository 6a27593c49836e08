"""Contact cards: `contactMessage` (one vCard) and `contactsArrayMessage` (several).

Names come from WhatsApp's display name or the vCard's FN/N; numbers from its TEL lines. A TEL
with `waid=` is a WhatsApp account: its wa.me link is shown next to the number as written.
"""

from __future__ import annotations

import re
from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.names import markdown_name
from bridge.sidecar.protocol import MessageEvent
from bridge.texts import Texts

_MAX_CARDS = 50
_FOLD = re.compile(r"\r?\n[ \t]")
_ESCAPES = {"\\n": "\n", "\\N": "\n", "\\,": ",", "\\;": ";", "\\:": ":", "\\\\": "\\"}


def convert_contact(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "contactMessage")
    if not body:
        raise baileys.Malformed("contactMessage is not an object")
    return ChatwootDraft(content=_card(body, ctx.texts))


def convert_contacts_array(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "contactsArrayMessage")
    cards = [baileys.obj(c) for c in baileys.items(body, "contacts")][:_MAX_CARDS]
    cards = [c for c in cards if c]
    if not cards:
        raise baileys.Malformed("contactsArrayMessage without contacts")
    if len(cards) == 1:
        return ChatwootDraft(content=_card(cards[0], ctx.texts))
    blocks = [ctx.texts.contacts.format(count=len(cards))]
    blocks += [_card(card, ctx.texts) for card in cards]
    return ChatwootDraft(content="\n\n".join(blocks))


def _card(contact: dict[str, Any], texts: Texts) -> str:
    fields = parse_vcard(baileys.text(contact, "vcard") or "")
    name = (markdown_name(baileys.text(contact, "displayName") or fields.name)
            or texts.contact_unnamed)
    lines = [texts.contact.format(name=name)]
    for number, waid in fields.phones:
        shown = number or (f"+{waid}" if waid else "")
        lines.append(f"{shown} (wa.me/{waid})" if waid else shown)
    if not fields.phones:
        lines.append(texts.contact_no_phone)
    return "\n".join(lines)


class VCard:
    """The two things we read from a vCard."""

    __slots__ = ("name", "phones")

    def __init__(self) -> None:
        self.name: str | None = None
        self.phones: list[tuple[str, str | None]] = []  # (number as written, waid digits)


def parse_vcard(vcard: str) -> VCard:
    """FN (or N) and every TEL of a vCard 2.1/3.0/4.0; lenient, never raises."""
    card = VCard()
    structured: str | None = None
    for line in _FOLD.sub("", vcard).splitlines():
        head, sep, value = line.partition(":")
        if not sep:
            continue
        prop, *params = head.split(";")
        prop = prop.rpartition(".")[2].strip().upper()  # drop the `item1.` group
        value = _unescape(value).strip()
        if prop == "FN" and value and card.name is None:
            card.name = value
        elif prop == "N" and value:
            parts = [p.strip() for p in value.split(";")]
            # N is family;given;additional;prefix;suffix: show it as "given additional family"
            ordered = [*parts[1:3], parts[0]] if len(parts) > 1 else parts
            structured = " ".join(p for p in ordered if p) or None
        elif prop == "TEL":
            waid = next((p.partition("=")[2].strip() for p in params
                         if p.partition("=")[0].strip().lower() == "waid"), None)
            waid = waid if waid and waid.isdigit() else None
            if value.lower().startswith("tel:"):
                value = value[4:]
            if value or waid:
                card.phones.append((value, waid))
    card.name = card.name or structured
    return card


def _unescape(value: str) -> str:
    return re.sub(r"\\[nN,;:\\]", lambda m: _ESCAPES[m.group(0)], value)
