"""Chatwoot webhook bodies, validated where outside JSON enters (pydantic, extra fields ignored).

Only the fields Ponte reads are modelled. Shapes: ../shared/chatwoot/README.md, "Webhooks".
Ids arrive as integers from Chatwoot, but as strings in the original bridge's README example;
both are accepted, within what Chatwoot's bigint columns can hold: a wrong type or an impossible
id is a validation error naming the field (the webhook answers 422), not a crash further on.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_CHATWOOT_ID = 2**63 - 1
ChatwootId = Annotated[int, Field(ge=1, le=MAX_CHATWOOT_ID)]
"""A Chatwoot record id: a positive bigint. (Past that it names no record, and it would reach
Redis keys, Chatwoot URLs and the outbox as given.)"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=False)


class Named(_Model):
    id: ChatwootId
    name: str | None = None


class Sender(_Model):
    """A user (`type:"user"`), an agent bot (`"agent_bot"`) or a contact (no `type`)."""

    id: ChatwootId | None = None
    name: str | None = None
    email: str | None = None
    type: str | None = None
    phone_number: str | None = None
    identifier: str | None = None


class ContactInbox(_Model):
    source_id: str | None = None


class ConversationMeta(_Model):
    sender: Sender | None = None


class Conversation(_Model):
    id: ChatwootId
    inbox_id: ChatwootId | None = None
    status: str | None = None
    contact_inbox: ContactInbox | None = None
    meta: ConversationMeta | None = None


class Attachment(_Model):
    id: ChatwootId | None = None
    file_type: str | None = None
    data_url: str | None = None
    content_type: str | None = None
    extension: str | None = None
    file_size: Annotated[int, Field(ge=0, le=MAX_CHATWOOT_ID)] | None = None


class MessageWebhook(_Model):
    """`message_created` / `message_updated`."""

    event: str
    id: ChatwootId
    content: str | None = None
    message_type: str | int
    private: bool = False
    source_id: str | None = None
    content_attributes: dict[str, Any] | None = None
    sender: Sender | None = None
    inbox: Named
    account: Named
    conversation: Conversation
    attachments: list[Attachment] = Field(default_factory=list)

    @property
    def direction(self) -> str:
        """`incoming`/`outgoing`/`activity`/`template`, whatever form Chatwoot used."""
        if isinstance(self.message_type, int):
            return {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}.get(
                self.message_type, "unknown")
        return self.message_type

    @property
    def sender_kind(self) -> str:
        """`user`, `agent_bot`, `contact` or `none` (templates and system messages)."""
        if self.sender is None:
            return "none"
        return self.sender.type or "contact"


class ConversationStatusWebhook(_Model):
    """`conversation_status_changed`: the conversation object, with `event` (and
    `changed_attributes`, null in practice). Only what forgetting a resolved one needs."""

    event: str
    inbox_id: ChatwootId | None = None
    status: str | None = None
    contact_inbox: ContactInbox | None = None
