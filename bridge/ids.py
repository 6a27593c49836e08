"""Identifiers: the NewTypes, JID normalisation, and make_*/parse_* for every key.

A WhatsApp JID names a chat or a person: `<user>@s.whatsapp.net` (phone number), `<lid>@lid`
(WhatsApp's privacy id), `<id>@g.us` (group). Baileys adds a device suffix (`<user>:<device>@...`)
to addresses of linked devices; Ponte always strips it, so one person is one string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NewType

InstanceId = NewType("InstanceId", str)
"""One WhatsApp number bound to one Chatwoot inbox: `<account_id>-<inbox_id>`."""

Jid = NewType("Jid", str)
"""A normalised WhatsApp address without device suffix (see `normalize_jid`)."""

WaMessageId = NewType("WaMessageId", str)
"""WhatsApp's message id (`key.id`), unique per chat and sender."""

CwMessageId = NewType("CwMessageId", int)
"""Chatwoot's global message id."""

ConversationId = NewType("ConversationId", int)
"""Chatwoot's per-account conversation display id (the `id` in paths and webhooks)."""

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"

_INSTANCE_RE = re.compile(r"^(?P<account>[1-9][0-9]{0,9})-(?P<inbox>[1-9][0-9]{0,9})$")
_JID_RE = re.compile(r"^(?P<user>[^@:\s]+)(?::(?P<device>[0-9]+))?@(?P<server>[a-z.]+)$")


def make_instance_id(account_id: int, inbox_id: int) -> InstanceId:
    if account_id <= 0 or inbox_id <= 0:
        raise ValueError(f"account and inbox ids must be positive, got {account_id}, {inbox_id}")
    return InstanceId(f"{account_id}-{inbox_id}")


def parse_instance_id(value: str) -> tuple[int, int]:
    """Return `(account_id, inbox_id)`; raises ValueError for anything else."""
    match = _INSTANCE_RE.match(value)
    if not match:
        raise ValueError(f"not an instance id: {value!r}")
    return int(match["account"]), int(match["inbox"])


def normalize_jid(value: str) -> Jid:
    """Strip the device suffix and map the legacy `c.us` server to `s.whatsapp.net`."""
    match = _JID_RE.match(value.strip())
    if not match:
        raise ValueError(f"not a WhatsApp JID: {value!r}")
    server = match["server"]
    if server == "c.us":
        server = USER_SERVER
    return Jid(f"{match['user']}@{server}")


def jid_server(jid: str) -> str:
    return jid.rpartition("@")[2]


def is_user_jid(jid: str) -> bool:
    """A person addressed by phone number."""
    return jid_server(jid) == USER_SERVER


def is_lid_jid(jid: str) -> bool:
    return jid_server(jid) == LID_SERVER


def is_group_jid(jid: str) -> bool:
    return jid_server(jid) == GROUP_SERVER


def phone_from_jid(jid: str) -> str | None:
    """`5511999990000@s.whatsapp.net` -> `+5511999990000` (E.164, as Chatwoot wants it)."""
    if not is_user_jid(jid):
        return None
    user = normalize_jid(jid).partition("@")[0]
    return f"+{user}" if user.isdigit() else None


def jid_from_phone(phone: str) -> Jid:
    """`+55 (11) 99999-0000` -> `5511999990000@s.whatsapp.net`; ValueError if not a number."""
    digits = re.sub(r"[\s().+-]", "", phone)
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise ValueError(f"not a phone number: {phone!r}")
    return Jid(f"{digits}@{USER_SERVER}")


def phone_variants(phone: str) -> list[str]:
    """A `+digits` number and, for Brazilian mobiles, the same number with or without the ninth
    digit: WhatsApp still knows many as 55 DD XXXXXXXX while people write 55 DD 9XXXXXXXX."""
    match = re.fullmatch(r"\+55(\d{2})(\d{8,9})", phone)
    if not match:
        return [phone]
    area, local = match.groups()
    if len(local) == 9 and local[0] == "9":
        return [phone, f"+55{area}{local[1:]}"]
    if len(local) == 8 and local[0] in "6789":  # mobiles; 2-5 are landlines, no ninth digit
        return [phone, f"+55{area}9{local}"]
    return [phone]


def normalize_phone(phone: str) -> str:
    """Any written form of a phone number -> `+digits`; raises ValueError if not a number."""
    return "+" + jid_from_phone(phone).partition("@")[0]


@dataclass(frozen=True, slots=True)
class ChatKey:
    """One WhatsApp chat of one instance (the portal key of mautrix' bridgev2)."""

    instance_id: InstanceId
    chat_jid: Jid

    def __str__(self) -> str:
        return f"{self.instance_id}/{self.chat_jid}"
