"""Every Redis key name Ponte uses, in one place. All keys start with `ponte:`."""

from __future__ import annotations

from bridge.ids import ChatKey, InstanceId

PREFIX = "ponte"

INSTANCES = f"{PREFIX}:instances"
"""Set of every registered instance id."""

MAILBOXES_PENDING = f"{PREFIX}:mailboxes:pending"
"""Set of mailbox keys that may hold items; the sweeper re-schedules the ones nobody drains."""

INBOX_SECRETS = f"{PREFIX}:inbox-secrets"
"""Hash inbox id -> webhook secret of inboxes Ponte created (`erga caixa`), for verification."""

FAILED = f"{PREFIX}:failed"
"""List (newest first) of items that failed for good, as JSON, for operators."""

FAILED_MAX_ENTRIES = 10_000
"""`FAILED` keeps the newest this many: a flood that fails must not grow Redis without end."""


def instance(instance_id: InstanceId) -> str:
    """Hash: the registry record of one instance."""
    return f"{PREFIX}:instance:{instance_id}"


def chat_mailbox(chat: ChatKey) -> str:
    """List: WhatsApp events of one chat waiting to reach Chatwoot, oldest first."""
    return f"{PREFIX}:mailbox:wa:{chat.instance_id}:{chat.chat_jid}"


def note_mailbox(account_id: int, conversation_id: int) -> str:
    """List: private notes waiting to be posted into one Chatwoot conversation, oldest first."""
    return f"{PREFIX}:mailbox:note:{account_id}:{conversation_id}"


def mailbox_lock(mailbox: str) -> str:
    return f"{mailbox}:lock"


def mailbox_scheduled(mailbox: str) -> str:
    """Flag: a drain job for this mailbox is already queued."""
    return f"{mailbox}:scheduled"


def mailbox_attempts(mailbox: str) -> str:
    """Hash item id -> failed attempts so far."""
    return f"{mailbox}:attempts"


def mailbox_throttled(mailbox: str) -> str:
    """Counter: how many times in a row Chatwoot told this mailbox to slow down (429, or 422
    "Too many messages"); it sets the pause before the next try and is cleared by a pop."""
    return f"{mailbox}:throttled"


def failure_note(instance_id: InstanceId, chat_jid: str) -> str:
    """Hash: failures of one chat not yet told in a note (`count`, the last `wa_message_id` and
    `reason`, and where to post: `account_id`, `conversation_id`)."""
    return f"{PREFIX}:failure-note:{instance_id}:{chat_jid}"


def failure_note_window(instance_id: InstanceId, chat_jid: str) -> str:
    """Flag, expiring: a failure note was posted in this chat within the last minute."""
    return f"{PREFIX}:failure-note-window:{instance_id}:{chat_jid}"


def wa_to_cw(instance_id: InstanceId, wa_message_id: str) -> str:
    """String (JSON): the Chatwoot message a WhatsApp message became."""
    return f"{PREFIX}:map:wa:{instance_id}:{wa_message_id}"


def cw_to_wa(account_id: int, cw_message_id: int) -> str:
    """String (JSON): the WhatsApp message a Chatwoot message became."""
    return f"{PREFIX}:map:cw:{account_id}:{cw_message_id}"


def post_attempt(instance_id: InstanceId, wa_message_id: str) -> str:
    """Flag: a post of this message was sent and its outcome is unknown until the mapping is
    written (a timeout may hide a success): a retry looks in Chatwoot before posting again."""
    return f"{PREFIX}:attempt:{instance_id}:{wa_message_id}"


def note_posted(note_id: str) -> str:
    """String: the Chatwoot message id of a note already posted (idempotency)."""
    return f"{PREFIX}:map:note:{note_id}"


def lid_to_pn(instance_id: InstanceId, lid: str) -> str:
    """String: the phone-number JID of a LID."""
    return f"{PREFIX}:lid:{instance_id}:{lid}"


def pn_to_lid(instance_id: InstanceId, pn: str) -> str:
    """String: the LID of a phone-number JID."""
    return f"{PREFIX}:pn:{instance_id}:{pn}"


def poll(instance_id: InstanceId, wa_message_id: str) -> str:
    """String (JSON): a poll's question, options, secret and votes so far."""
    return f"{PREFIX}:poll:{instance_id}:{wa_message_id}"


def stats(name: str) -> str:
    """Hash instance id -> count, for the metrics (e.g. `undecryptable`)."""
    return f"{PREFIX}:stats:{name}"


def conversation(instance_id: InstanceId, chat_jid: str) -> str:
    """String (JSON): cached Chatwoot contact and conversation of one chat."""
    return f"{PREFIX}:conv:{instance_id}:{chat_jid}"


def sent_parts(account_id: int, cw_message_id: int) -> str:
    """Hash part number -> WhatsApp id: the parts of an agent message already sent."""
    return f"{PREFIX}:parts:{account_id}:{cw_message_id}"


def early_status(instance_id: InstanceId, wa_message_id: str) -> str:
    """String: a tick that arrived before the send's mapping was written, applied with it."""
    return f"{PREFIX}:early-status:{instance_id}:{wa_message_id}"


def unread(instance_id: InstanceId, chat_jid: str) -> str:
    """List: ids of the customer's messages not yet marked read on WhatsApp."""
    return f"{PREFIX}:unread:{instance_id}:{chat_jid}"


def avatar_checked(instance_id: InstanceId, chat_jid: str) -> str:
    """Flag (a day long): this chat's profile picture was looked at."""
    return f"{PREFIX}:avatar:{instance_id}:{chat_jid}"


def lease(instance_id: InstanceId) -> str:
    """String: the `ponte serve` host that runs this instance's sidecar (renewed, expiring)."""
    return f"{PREFIX}:lease:{instance_id}"


def confirmation(instance_id: InstanceId) -> str:
    """An operator asked to re-link a healthy number (JSON: where, and the pairing phone when
    it was `erga pair`); `erga confirmar` may follow."""
    return f"{PREFIX}:confirm:{instance_id}"


def confirmation_asked_in(account_id: int, conversation_id: int) -> str:
    """The instance whose re-link the last question in this conversation was about, so that a
    bare `erga confirmar` there confirms it even when it named another inbox."""
    return f"{PREFIX}:confirm-in:{account_id}:{conversation_id}"


def outbox(instance_id: InstanceId) -> str:
    """Stream: agent messages waiting to be sent to WhatsApp by the serve owning the instance."""
    return f"{PREFIX}:outbox:{instance_id}"


def webhook_seen(kind: str, value: str) -> str:
    """Flag: a webhook delivery or Chatwoot message already handled (dedupe)."""
    return f"{PREFIX}:seen:{kind}:{value}"
