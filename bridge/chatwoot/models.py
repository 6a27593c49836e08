"""Chatwoot webhook bodies, validated where outside JSON enters (pydantic, extra fields ignored).

Only the fields Ponte reads are modelled. Shapes: ../shared/chatwoot/README.md, "Webhooks".
Ids arrive as integers from Chatwoot, but as strings in the original bridge's README example;
both are accepted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=False)


class Named(_Model):
    id: int
    name: str | None = None


class Sender(_Model):
    """A user (`type:"user"`), an agent bot (`"agent_bot"`) or a contact (no `type`)."""

    id: int | None = None
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
    id: int
    inbox_id: int | None = None
    status: str | None = None
    contact_inbox: ContactInbox | None = None
    meta: ConversationMeta | None = None


class Attachment(_Model):
    id: int | None = None
    file_type: str | None = None
    data_url: str | None = None
    content_type: str | None = None
    extension: str | None = None
    file_size: int | None = None


class MessageWebhook(_Model):
    """`message_created` / `message_updated`."""

    event: str
    id: int
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
