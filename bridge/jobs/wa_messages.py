"""One WhatsApp message into Chatwoot: convert, find the conversation, post once, map."""

from __future__ import annotations

from loguru import logger

from bridge.chatwoot.identity import ChatRef, Identity
from bridge.convert.baileys import push_name
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.to_chatwoot import convert
from bridge.errors import ChatwootNotFound, IgnoreEvent
from bridge.ids import InstanceId, parse_instance_id, phone_from_jid
from bridge.jobs.runtime import WorkerContext
from bridge.sidecar.protocol import MessageEvent
from bridge.store.mailbox import MailboxItem
from bridge.store.mapping import MappingStore, MessageMapping


def _contact_name(event: MessageEvent, chat_jid: str) -> str:
    # On a message typed on the linked phone, pushName is our own name, not the customer's.
    name = None if event.key.fromMe else push_name(event.message)
    return name or phone_from_jid(chat_jid) or chat_jid.partition("@")[0]


def deliver(ctx: WorkerContext, item: MailboxItem) -> None:
    instance_id = InstanceId(item.payload["instance_id"])
    chat_jid: str = item.payload["chat_jid"]
    event = MessageEvent.model_validate(item.payload["event"])
    wa_id = event.key.id
    with logger.contextualize(instance=instance_id, chat_jid=chat_jid, wa_message_id=wa_id):
        mappings = MappingStore(ctx.redis)
        if mappings.by_wa(instance_id, wa_id) is not None:
            logger.debug("Already in Chatwoot; skipped")  # a retry, or our own send echoed
            return
        try:
            draft = convert(event, ConvertContext(instance_id=instance_id, texts=ctx.texts))
        except IgnoreEvent as skip:
            logger.bind(reason=str(skip)).debug("Message skipped")
            return
        identity = Identity(ctx.chatwoot, ctx.redis)
        ref = identity.resolve(instance_id, chat_jid, name=_contact_name(event, chat_jid))
        try:
            cw_id = _post(ctx, instance_id, ref, event, draft)
        except ChatwootNotFound:
            # The conversation or contact was deleted in Chatwoot: recreate, once.
            identity.forget(instance_id, chat_jid)
            ref = identity.resolve(instance_id, chat_jid, name=_contact_name(event, chat_jid))
            cw_id = _post(ctx, instance_id, ref, event, draft)
        account_id, _ = parse_instance_id(instance_id)
        mappings.put(MessageMapping(
            instance_id=instance_id, chat_jid=chat_jid, wa_message_id=wa_id,
            account_id=account_id, conversation_id=ref.conversation_id, cw_message_id=cw_id))
        logger.bind(conversation_id=ref.conversation_id, cw_message_id=cw_id).debug(
            "Message posted to Chatwoot")


def _post(ctx: WorkerContext, instance_id: InstanceId, ref: ChatRef, event: MessageEvent,
          draft: ChatwootDraft) -> int:
    account_id, _ = parse_instance_id(instance_id)
    message = ctx.chatwoot.create_message(
        account_id, ref.conversation_id, content=draft.content,
        # Typed on the linked phone: the business spoke, so it shows as an agent-side message.
        message_type="outgoing" if event.key.fromMe else "incoming",
        source_id=event.key.id, content_attributes=draft.content_attributes or None)
    return int(message["id"])


def report_failure(ctx: WorkerContext, item: MailboxItem, reason: str) -> None:
    """A private note in the chat's conversation, when we know it, that a message was lost."""
    instance_id = InstanceId(item.payload["instance_id"])
    ref = Identity(ctx.chatwoot, ctx.redis).cached(instance_id, item.payload["chat_jid"])
    if ref is None:
        return
    account_id, _ = parse_instance_id(instance_id)
    wa_id = item.payload["event"]["key"]["id"]
    try:
        ctx.chatwoot.create_message(
            account_id, ref.conversation_id, message_type="outgoing", private=True,
            content=ctx.texts.delivery_failed.format(wa_message_id=wa_id, reason=reason))
    except Exception as err:  # the failure is already on the failed list; this is a courtesy
        logger.bind(error=type(err).__name__).error("Could not post the failure note")
