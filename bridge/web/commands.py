"""Agent commands typed in Chatwoot: `erga [inbox_id] [account_id]` links a number by QR code,
`erga pair <phone>` links this conversation's inbox by pairing code (the phone may be written
with spaces, so it takes the rest of the line).

A command is the keyword (`WEBHOOK_COMMAND_KEYWORD`) as the first word of a message. It counts
from an agent listed by id or e-mail (`WEBHOOK_AUTHORIZED_AGENT_IDS` / `_EMAILS`; a display
name can be changed by anyone, so names do not count), or from a contact whose phone number is in
`WEBHOOK_AUTHORIZED_PHONE_NUMBERS` (an operator writing from WhatsApp). A command is never
relayed to WhatsApp. Every use is audited in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from loguru import logger

from bridge.chatwoot.models import MessageWebhook
from bridge.ids import make_instance_id, normalize_phone, phone_from_jid
from bridge.sidecar.supervisor import ConnectionState
from bridge.store.registry import Desired, InstanceRecord
from bridge.web.services import Services


@dataclass(frozen=True, slots=True)
class AgentCommand:
    keyword: str
    args: tuple[str, ...]


def parse(content: str | None, keyword: str) -> AgentCommand | None:
    words = (content or "").split()
    if not words or words[0].lower() != keyword:
        return None
    return AgentCommand(keyword=keyword, args=tuple(words[1:]))


def may_carry_command(message: MessageWebhook) -> bool:
    """Agents' messages (public or private notes) and contacts' messages; not templates."""
    return (message.direction == "outgoing" and message.sender_kind == "user") or (
        message.direction == "incoming" and message.sender_kind == "contact")


def is_authorized(services: Services, message: MessageWebhook) -> bool:
    settings = services.settings
    sender = message.sender
    if sender is None:
        return False
    if message.sender_kind == "user":
        email = (sender.email or "").lower()
        return (sender.id is not None and sender.id in settings.webhook_authorized_agent_ids) or (
            bool(email) and email in settings.webhook_authorized_agent_emails)
    if message.sender_kind == "contact" and sender.phone_number:
        try:
            return normalize_phone(sender.phone_number) in settings.webhook_authorized_phone_numbers
        except ValueError:
            return False
    return False


async def handle(services: Services, message: MessageWebhook, command: AgentCommand) -> str:
    """Act on an authorized-or-not command; returns what happened, for the webhook's answer."""
    sender = message.sender
    audit = logger.bind(command=command.keyword, args=" ".join(command.args),
                        sender_id=sender.id if sender else None, sender_kind=message.sender_kind,
                        account_id=message.account.id, conversation_id=message.conversation.id)
    if not is_authorized(services, message):
        audit.warning("Agent command refused: sender not authorized")
        if message.sender_kind == "user":  # a contact's "erga" is just a customer's message
            await services.dispatcher.note(
                message.account.id, message.conversation.id,
                services.texts.unauthorized.format(keyword=command.keyword))
            return "unauthorized"
        return "not_a_command"
    audit.info("Agent command accepted")
    return await _link(services, message, command)


async def _link(services: Services, message: MessageWebhook, command: AgentCommand) -> str:
    texts, keyword = services.texts, services.settings.webhook_command_keyword
    args, pairing_phone = command.args, None
    try:
        if args and args[0].lower() == "pair":
            if len(args) < 2:
                raise ValueError("pair needs a phone number")
            pairing_phone = normalize_phone("".join(args[1:])).lstrip("+")
            args = ()
        inbox_id = int(args[0]) if args else message.inbox.id
        account_id = int(args[1]) if len(args) > 1 else message.account.id
        instance_id = make_instance_id(account_id, inbox_id)
    except ValueError:
        await services.dispatcher.note(message.account.id, message.conversation.id,
                                       texts.command_usage.format(keyword=keyword))
        return "usage"
    record = await services.registry.get(instance_id) or InstanceRecord.new(account_id, inbox_id)
    if inbox_id == message.inbox.id and message.inbox.name:
        record = replace(record, inbox_name=message.inbox.name)
    runner = services.supervisor.runner(instance_id)
    if runner is not None and runner.alive and runner.connection is ConnectionState.OPEN:
        number = phone_from_jid(record.wa_jid) if record.wa_jid else None
        await services.dispatcher.note(message.account.id, message.conversation.id,
                                       texts.already_linked.format(
                                           number=number or record.wa_jid, inbox=record.label()))
        return "already_linked"
    await services.registry.put(replace(
        record, desired=Desired.RUNNING, notify_account_id=message.account.id,
        notify_conversation_id=message.conversation.id, qr_attempts=0, last_error=None,
        pairing_phone=pairing_phone if not record.linked else None))
    if not record.linked:
        await services.dispatcher.note(message.account.id, message.conversation.id,
                                       texts.linking_started.format(inbox=record.label()))
    # Stopping a running sidecar can take seconds: never inside the webhook's answer.
    services.background(services.supervisor.relink(instance_id), name=f"link-{instance_id}")
    return "linking"
