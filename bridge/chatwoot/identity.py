"""Contact and conversation of a chat: found by exact identifier, created once, cached.

Runs inside a chat's drain job, under the chat's lock, so "the first message creates the contact
and conversation" cannot race with itself. The lookups are exact: the contact that owns the chat
JID as `source_id` in the inbox, else the contact whose `identifier` is the JID, else one whose
phone number is the chat's (with and without Brazil's ninth digit); never the first hit of
Chatwoot's substring search. A group is one contact named after the group. A LID that turns out
to be a known phone number is merged into that person (`merge_lid`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import redis
from loguru import logger

from bridge.chatwoot.client import ChatwootClient
from bridge.convert.names import plain_name
from bridge.errors import ChatwootError, ChatwootRejected
from bridge.ids import (
    InstanceId,
    is_group_jid,
    parse_instance_id,
    phone_from_jid,
    phone_variants,
)
from bridge.store import keys

CACHE_TTL_SECONDS = 7 * 24 * 3600
_OPEN_STATUSES = {"open", "pending", "snoozed"}
ConversationPolicy = Literal["reopen", "new"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRef:
    """Where a chat lives in Chatwoot."""

    contact_id: int
    conversation_id: int
    name: str | None = None  # the name Ponte last gave the contact (None: a placeholder)


class Identity:
    def __init__(self, client: ChatwootClient, redis: redis.Redis, *,
                 policy: ConversationPolicy = "reopen") -> None:
        self._client = client
        self._redis = redis
        self._policy = policy

    # --- cache ----------------------------------------------------------------------------
    def cached(self, instance_id: InstanceId, chat_jid: str) -> ChatRef | None:
        raw = self._redis.get(keys.conversation(instance_id, chat_jid))
        return None if raw is None else ChatRef(**json.loads(raw))

    def _cache(self, instance_id: InstanceId, chat_jid: str, ref: ChatRef) -> None:
        self._redis.set(keys.conversation(instance_id, chat_jid), json.dumps(asdict(ref)),
                        ex=CACHE_TTL_SECONDS)

    def forget(self, instance_id: InstanceId, chat_jid: str) -> None:
        """Drop the cache (the contact or conversation was deleted, or resolved)."""
        self._redis.delete(keys.conversation(instance_id, chat_jid))

    # --- resolving ------------------------------------------------------------------------
    def resolve(self, instance_id: InstanceId, chat_jid: str, *, name: str | None) -> ChatRef:
        """The chat's contact and conversation, creating what is missing. `name` is what
        WhatsApp calls the person (push name) or the group (subject); None when unknown.
        Either is chosen by someone on WhatsApp, so it is cut to one plain line first."""
        name = plain_name(name)
        ref = self.cached(instance_id, chat_jid)
        if ref is not None:
            if name and name != ref.name:
                ref = self._rename(instance_id, chat_jid, ref, name)
            return ref
        account_id, inbox_id = parse_instance_id(instance_id)
        placeholder = phone_from_jid(chat_jid) or chat_jid.partition("@")[0]
        contact = self._find_or_create_contact(account_id, inbox_id, chat_jid,
                                               name or placeholder)
        conversation_id = self._find_or_create_conversation(
            account_id, inbox_id, int(contact["id"]), chat_jid)
        # `name` records what WhatsApp calls them, so later renames happen only when that
        # changes. A contact someone already named in Chatwoot keeps its name until then.
        ref = ChatRef(contact_id=int(contact["id"]), conversation_id=conversation_id, name=name)
        if name and _is_placeholder(contact.get("name"), chat_jid):
            ref = self._rename(instance_id, chat_jid, ref, name)
        self._cache(instance_id, chat_jid, ref)
        return ref

    def _rename(self, instance_id: InstanceId, chat_jid: str, ref: ChatRef, name: str) -> ChatRef:
        """Names follow WhatsApp, but only when WhatsApp's changes: one call per change."""
        account_id, _ = parse_instance_id(instance_id)
        try:
            self._client.update_contact(account_id, ref.contact_id, name=name)
        except ChatwootError as err:  # a name is cosmetic: never fail a message for it
            logger.bind(error=type(err).__name__, chat_jid=chat_jid).warning(
                "Could not update the contact's name")
            return ref
        ref = replace(ref, name=name)
        self._cache(instance_id, chat_jid, ref)
        return ref

    def set_avatar(self, instance_id: InstanceId, chat_jid: str, url: str) -> None:
        """The chat's WhatsApp profile picture for its contact. Chatwoot downloads it itself,
        in a job of its own; a chat with no contact yet gets none (the next day's look will)."""
        ref = self.cached(instance_id, chat_jid)
        if ref is None:
            account_id, inbox_id = parse_instance_id(instance_id)
            contact_id = _id_of(self._client.contact_by_source_id(account_id, inbox_id, chat_jid))
        else:
            account_id, contact_id = parse_instance_id(instance_id)[0], ref.contact_id
        if contact_id is None:
            return
        try:
            self._client.update_contact(account_id, contact_id, avatar_url=url)
        except ChatwootError as err:  # cosmetic, like names: never retried into a failure
            logger.bind(error=type(err).__name__, chat_jid=chat_jid).warning(
                "Could not update the contact's picture")

    def _find_contact(self, account_id: int, inbox_id: int, jid: str) -> dict[str, Any] | None:
        contact = self._client.contact_by_source_id(account_id, inbox_id, jid)
        if contact is not None:
            return contact
        for candidate in self._client.search_contacts(account_id, jid):
            if candidate.get("identifier") == jid:  # search is a substring match: check
                return candidate
        phone = phone_from_jid(jid)
        for variant in phone_variants(phone) if phone else []:
            matches = self._client.filter_contacts(account_id, "phone_number", variant)
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
        # Newest activity first (Chatwoot's order). An open one is reused. A resolved one is
        # reused under the "reopen" policy (Chatwoot reopens it when the customer's message
        # lands); under "new", the customer starts a new conversation.
        for conversation in conversations:
            if conversation.get("status") in _OPEN_STATUSES:
                return int(conversation["id"])
        if conversations and self._policy == "reopen":
            return int(conversations[0]["id"])
        created = self._client.create_conversation(
            account_id, inbox_id=inbox_id, contact_id=contact_id, source_id=jid)
        logger.bind(chat_jid=jid, conversation_id=created["id"]).info("Conversation created")
        return int(created["id"])

    # --- one person, two addresses --------------------------------------------------------
    def merge_lid(self, instance_id: InstanceId, lid: str, pn: str) -> None:
        """`lid` and `pn` are the same person: make them one Chatwoot contact.

        The LID contact (created while its number was unknown) becomes the person by number when
        no contact has that number yet; otherwise Chatwoot merges it into the existing one. Both
        addresses then lead to the same conversation.
        """
        account_id, inbox_id = parse_instance_id(instance_id)
        lid_ref = self.cached(instance_id, lid)
        lid_contact = lid_ref.contact_id if lid_ref else _id_of(
            self._client.contact_by_source_id(account_id, inbox_id, lid))
        if lid_contact is None:
            return
        pn_contact = _id_of(self._find_contact(account_id, inbox_id, pn))
        if pn_contact is None or pn_contact == lid_contact:
            base = lid_contact
            try:
                self._client.update_contact(account_id, base, identifier=pn,
                                            phone_number=phone_from_jid(pn))
            except ChatwootRejected:  # the number is on a contact search did not return
                pass
            self._client.create_contact_inbox(account_id, base, inbox_id, pn)
        else:
            base = pn_contact
            self._client.merge_contacts(account_id, base_contact_id=pn_contact,
                                        mergee_contact_id=lid_contact)
        pn_ref = self.cached(instance_id, pn)
        conversation_id = (pn_ref.conversation_id if pn_ref else lid_ref.conversation_id
                           if lid_ref else self._find_or_create_conversation(
                               account_id, inbox_id, base, pn))
        ref = ChatRef(contact_id=base, conversation_id=conversation_id,
                      name=(pn_ref or lid_ref or ChatRef(contact_id=0, conversation_id=0)).name)
        self._cache(instance_id, pn, ref)
        self._cache(instance_id, lid, ref)
        logger.bind(chat_jid=pn, contact_id=base).info("LID contact merged into its number")


def _is_placeholder(name: Any, jid: str) -> bool:
    """Names Ponte gives when it knows none: the number or the JID's user part."""
    return not name or name in {phone_from_jid(jid), jid.partition("@")[0]} or (
        is_group_jid(jid) and name == jid)


def _id_of(contact: dict[str, Any] | None) -> int | None:
    return int(contact["id"]) if contact else None


def _inbox_id_of(contact_inbox: dict[str, Any]) -> int | None:
    inbox = contact_inbox.get("inbox")
    if isinstance(inbox, dict) and "id" in inbox:
        return int(inbox["id"])
    value = contact_inbox.get("inbox_id")
    return int(value) if value is not None else None
