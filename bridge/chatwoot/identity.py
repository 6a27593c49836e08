"""Contact and conversation of a chat: found by exact identifier, created once, cached.

Runs inside a chat's drain job, under the chat's lock, so "the first message creates the contact
and conversation" cannot race with itself. The lookups are exact: the contact that owns the chat
JID as `source_id` in the inbox, else the contact whose `identifier` is the JID, else the one whose
phone number is the chat's; never the first hit of Chatwoot's substring search.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis
from loguru import logger

from bridge.chatwoot.client import ChatwootClient
from bridge.errors import ChatwootRejected
from bridge.ids import InstanceId, parse_instance_id, phone_from_jid
from bridge.store import keys

CACHE_TTL_SECONDS = 7 * 24 * 3600
_OPEN_STATUSES = {"open", "pending", "snoozed"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRef:
    """Where a chat lives in Chatwoot."""

    contact_id: int
    conversation_id: int


class Identity:
    def __init__(self, client: ChatwootClient, redis: redis.Redis) -> None:
        self._client = client
        self._redis = redis

    def cached(self, instance_id: InstanceId, chat_jid: str) -> ChatRef | None:
        raw = self._redis.get(keys.conversation(instance_id, chat_jid))
        return None if raw is None else ChatRef(**json.loads(raw))

    def forget(self, instance_id: InstanceId, chat_jid: str) -> None:
        """Drop the cache (the contact or conversation was deleted in Chatwoot)."""
        self._redis.delete(keys.conversation(instance_id, chat_jid))

    def resolve(self, instance_id: InstanceId, chat_jid: str, *, name: str) -> ChatRef:
        """The chat's contact and conversation, creating what is missing."""
        ref = self.cached(instance_id, chat_jid)
        if ref is not None:
            return ref
        account_id, inbox_id = parse_instance_id(instance_id)
        contact = self._find_or_create_contact(account_id, inbox_id, chat_jid, name)
        conversation_id = self._find_or_create_conversation(
            account_id, inbox_id, int(contact["id"]), chat_jid)
        ref = ChatRef(contact_id=int(contact["id"]), conversation_id=conversation_id)
        self._redis.set(keys.conversation(instance_id, chat_jid), json.dumps(asdict(ref)),
                        ex=CACHE_TTL_SECONDS)
        return ref

    def _find_contact(self, account_id: int, inbox_id: int, jid: str) -> dict[str, Any] | None:
        contact = self._client.contact_by_source_id(account_id, inbox_id, jid)
        if contact is not None:
            return contact
        for candidate in self._client.search_contacts(account_id, jid):
            if candidate.get("identifier") == jid:  # search is a substring match: check
                return candidate
        phone = phone_from_jid(jid)
        if phone:
            matches = self._client.filter_contacts(account_id, "phone_number", phone)
            if matches:
                return min(matches, key=lambda c: int(c["id"]))
        return None

    def _find_or_create_contact(self, account_id: int, inbox_id: int, jid: str,
                                name: str) -> dict[str, Any]:
        contact = self._find_contact(account_id, inbox_id, jid)
        if contact is None:
            try:
                contact = self._client.create_contact(
                    account_id, name=name, identifier=jid, phone_number=phone_from_jid(jid),
                    inbox_id=inbox_id, source_id=jid)
                logger.bind(chat_jid=jid, contact_id=contact["id"]).info("Contact created")
                return contact
            except ChatwootRejected as err:
                # Taken identifier or phone: someone created it between our lookup and now.
                contact = self._find_contact(account_id, inbox_id, jid)
                if contact is None:
                    raise err
        # An existing contact may not be reachable through this inbox yet (find-or-create).
        owned = {ci.get("source_id") for ci in contact.get("contact_inboxes", [])
                 if _inbox_id_of(ci) == inbox_id}
        if jid not in owned:
            self._client.create_contact_inbox(account_id, int(contact["id"]), inbox_id, jid)
        return contact

    def _find_or_create_conversation(self, account_id: int, inbox_id: int, contact_id: int,
                                     jid: str) -> int:
        conversations = [c for c in self._client.contact_conversations(account_id, contact_id)
                         if c.get("inbox_id") == inbox_id]
        # Newest activity first (Chatwoot's order). An open one is reused; a resolved one is
        # reopened by Chatwoot itself when the customer's message lands in it.
        for conversation in conversations:
            if conversation.get("status") in _OPEN_STATUSES:
                return int(conversation["id"])
        if conversations:
            return int(conversations[0]["id"])
        created = self._client.create_conversation(
            account_id, inbox_id=inbox_id, contact_id=contact_id, source_id=jid)
        logger.bind(chat_jid=jid, conversation_id=created["id"]).info("Conversation created")
        return int(created["id"])


def _inbox_id_of(contact_inbox: dict[str, Any]) -> int | None:
    inbox = contact_inbox.get("inbox")
    if isinstance(inbox, dict) and "id" in inbox:
        return int(inbox["id"])
    value = contact_inbox.get("inbox_id")
    return int(value) if value is not None else None
