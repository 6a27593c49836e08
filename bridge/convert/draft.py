"""What converters produce and what they may read.

A converter turns one WhatsApp message into a `ChatwootDraft`: the text to post, files to attach,
and what it answers or acts on (`reply_to`). It does no I/O. The drain job then applies identity,
mappings and idempotency: a `reply_to` whose target Chatwoot knows becomes
`content_attributes.in_reply_to`; otherwise the quote's excerpt is shown in the text, so context
is never lost. Reactions, edits and deletes are drafts that reply to their target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.ids import InstanceId
from bridge.texts import Texts


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertContext:
    """Everything a converter may know besides the event (no HTTP, no Redis)."""

    instance_id: InstanceId
    texts: Texts
    now: float = 0.0  # epoch seconds; 0 disables the old-message check
    old_message_minutes: int = 0  # older than this: the original time is shown; 0 = never


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFile:
    """A file the sidecar wrote to the spool; uploaded as one attachment, then deleted."""

    path: Path
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """The message a draft answers, reacts to, edits or deletes."""

    wa_message_id: str
    excerpt: str | None = None  # a short text of it, shown when Chatwoot does not know it


@dataclass(frozen=True, slots=True, kw_only=True)
class PollDefinition:
    """A poll's options and secret, remembered so later votes can be decrypted and tallied."""

    question: str
    options: tuple[str, ...]
    secret_b64: str | None  # messageContextInfo.messageSecret of the poll creation message
    selectable: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PollVote:
    """An encrypted vote (pollUpdateMessage) on the poll `poll_wa_message_id`.

    A JID is the phone-number address when the message key has one (primary or `*Alt`), else
    the LID. The linked account has no JID in the message: `poll_creator_jid` is None when it
    created the poll, and `voter_is_me` is set (with `voter_jid` empty) when it voted from the
    phone.
    """

    poll_wa_message_id: str
    poll_creator_jid: str | None
    voter_jid: str
    enc_payload_b64: str
    enc_iv_b64: str
    voter_is_me: bool = False  # cast on the linked phone: decrypt with the account's own JID


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatwootDraft:
    """A Chatwoot message to post, before identity and idempotency are applied."""

    content: str
    content_attributes: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[MediaFile, ...] = ()
    reply_to: Quote | None = None
    private: bool = False
    poll: PollDefinition | None = None  # set on a poll's creation
    poll_vote: PollVote | None = None  # set on a vote: the job decrypts, tallies and posts
