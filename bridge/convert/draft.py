"""What converters produce and what they may read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.ids import InstanceId
from bridge.texts import Texts


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertContext:
    """Everything a converter may know besides the event (no HTTP, no Redis)."""

    instance_id: InstanceId
    texts: Texts


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatwootDraft:
    """A Chatwoot message to post, before identity and idempotency are applied."""

    content: str
    content_attributes: dict[str, Any] = field(default_factory=dict)
