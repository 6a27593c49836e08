"""Chatwoot -> WhatsApp: where an agent's message goes."""

from __future__ import annotations

from bridge.chatwoot.models import MessageWebhook
from bridge.ids import GROUP_SERVER, LID_SERVER, USER_SERVER, Jid, jid_from_phone, normalize_jid

_CHAT_SERVERS = {USER_SERVER, LID_SERVER, GROUP_SERVER, "c.us"}


def _as_chat_jid(value: str | None) -> Jid | None:
    if not value or "@" not in value or value.rpartition("@")[2] not in _CHAT_SERVERS:
        return None
    try:
        return normalize_jid(value)
    except ValueError:
        return None


def recipient_jid(message: MessageWebhook) -> Jid | None:
    """The chat JID we stored as `source_id`; else the contact's identifier; else its phone.

    A conversation an agent started from the Chatwoot UI carries a random UUID as source_id,
    hence the fallbacks (../shared/chatwoot/README.md, bridge rule 8).
    """
    conversation = message.conversation
    source_id = conversation.contact_inbox.source_id if conversation.contact_inbox else None
    if jid := _as_chat_jid(source_id):
        return jid
    sender = conversation.meta.sender if conversation.meta else None
    if sender is None:
        return None
    if jid := _as_chat_jid(sender.identifier):
        return jid
    if sender.phone_number:
        try:
            return jid_from_phone(sender.phone_number)
        except ValueError:
            return None
    return None
