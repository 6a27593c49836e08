"""WhatsApp's ticks on agents' messages, shown as the Chatwoot message's status.

Each PATCH comes back as a `message_updated` webhook, which the webhook ignores (it carries no
`external_error` unless we set one, and then the message is one we already handled).
"""

from __future__ import annotations

from loguru import logger

from bridge.errors import ChatwootNotFound
from bridge.jobs import runtime


def set_status(account_id: int, conversation_id: int, cw_message_id: int, status: str,
               external_error: str | None = None) -> None:
    """RQ job: PATCH one message's status; RQ retries it on failure."""
    ctx = runtime.current()
    try:
        ctx.chatwoot.update_message_status(account_id, conversation_id, cw_message_id, status,
                                           external_error)
    except ChatwootNotFound:
        logger.bind(cw_message_id=cw_message_id).debug("Status for a deleted message dropped")
