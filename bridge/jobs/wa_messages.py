"""One WhatsApp message into Chatwoot: convert, find the conversation, post once, map.

The converter says what to show; this module applies what needs state: the reply link from
our mapping (or a quote of the original when Chatwoot does not know it), the files from the
spool (streamed, then deleted), polls remembered and votes tallied, and the mapping written
right after the post so a retry never posts twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger

from bridge import metrics
from bridge.chatwoot.client import Upload
from bridge.chatwoot.identity import ChatRef, Identity
from bridge.convert.baileys import push_name
from bridge.convert.draft import ChatwootDraft, ConvertContext, MediaFile, PollVote, Quote
from bridge.convert.to_chatwoot import convert
from bridge.errors import ChatwootNotFound, ChatwootThrottled, IgnoreEvent
from bridge.ids import InstanceId, is_group_jid, normalize_jid, parse_instance_id
from bridge.jobs import notes, polls
from bridge.jobs.runtime import WorkerContext
from bridge.sidecar.protocol import MessageEvent
from bridge.store import keys
from bridge.store.connection import as_text
from bridge.store.mailbox import MailboxItem
from bridge.store.mapping import MappingStore, MessageMapping

CIPHERTEXT_STUB = 2  # Baileys' messageStubType for a message that could not be decrypted
ATTEMPT_TTL_SECONDS = 7 * 24 * 3600
_QUOTE_MAX = 160


def _contact_name(event: MessageEvent, chat_jid: str) -> str | None:
    if is_group_jid(chat_jid):
        return event.chat_name  # the group's subject; the sender goes in the text
    # On a message typed on the linked phone, pushName is our own name, not the customer's.
    return None if event.key.fromMe else push_name(event.message)


def deliver(ctx: WorkerContext, item: MailboxItem) -> None:
    instance_id = InstanceId(item.payload["instance_id"])
    chat_jid: str = item.payload["chat_jid"]
    event = MessageEvent.model_validate(item.payload["event"])
    wa_id = event.key.id
    undecryptable = event.message.get("messageStubType") == CIPHERTEXT_STUB
    # WhatsApp re-sends a message it could not decrypt under the same id: the note about the
    # failure is recorded apart, so the real message still lands when it comes.
    mapped_id = f"{wa_id}#undecryptable" if undecryptable else wa_id
    with logger.contextualize(instance=instance_id, chat_jid=chat_jid, wa_message_id=wa_id):
        mappings = MappingStore(ctx.redis)
        if mappings.by_wa(instance_id, mapped_id) is not None:
            logger.debug("Already in Chatwoot; skipped")  # a retry, or our own send echoed
            return
        try:
            draft = convert(event, ConvertContext(
                instance_id=instance_id, texts=ctx.texts, now=time.time(),
                old_message_minutes=ctx.settings.chatwoot_old_message_minutes))
        except IgnoreEvent as skip:
            logger.bind(reason=str(skip)).debug("Message skipped")
            return
        identity = Identity(ctx.chatwoot, ctx.redis,
                            policy=ctx.settings.chatwoot_conversation_policy)
        ref = identity.resolve(instance_id, chat_jid, name=_contact_name(event, chat_jid))
        if draft.poll_vote is not None:
            tally = _tally(ctx, instance_id, chat_jid, event, draft.poll_vote)
            if tally is None:
                return
            draft = tally
        account_id, _ = parse_instance_id(instance_id)
        attempt = keys.post_attempt(instance_id, mapped_id)
        found = None
        if ctx.redis.exists(attempt):  # an earlier try may have landed without us knowing
            found = ctx.chatwoot.find_message(account_id, ref.conversation_id,
                                              source_id=wa_id, private=draft.private)
        if found is not None:
            cw_id = int(found["id"])
            logger.info("An earlier attempt had landed; not posting again")
        else:
            ctx.redis.set(attempt, "1", ex=ATTEMPT_TTL_SECONDS)
            try:
                try:
                    cw_id = _post(ctx, instance_id, ref, event, draft, mappings)
                except ChatwootNotFound:
                    # The conversation or contact was deleted in Chatwoot: recreate, once.
                    identity.forget(instance_id, chat_jid)
                    ref = identity.resolve(instance_id, chat_jid,
                                           name=_contact_name(event, chat_jid))
                    cw_id = _post(ctx, instance_id, ref, event, draft, mappings)
            except ChatwootThrottled:
                # Refused before anything was created: the many retries of a flooded chat
                # need not each page through the conversation looking for it.
                ctx.redis.delete(attempt)
                raise
        mappings.put(MessageMapping(
            instance_id=instance_id, chat_jid=chat_jid, wa_message_id=mapped_id,
            account_id=account_id, conversation_id=ref.conversation_id, cw_message_id=cw_id,
            from_me=event.key.fromMe))
        ctx.redis.delete(attempt)
        metrics.relayed_to_chatwoot(ctx.redis, instance_id, event)
        if draft.poll is not None:
            polls.remember(ctx, instance_id, wa_id, draft.poll, cw_message_id=cw_id,
                           conversation_id=ref.conversation_id)
        if undecryptable:
            ctx.redis.hincrby(keys.stats("undecryptable"), instance_id, 1)
        _discard(ctx, draft.attachments)
        logger.bind(conversation_id=ref.conversation_id, cw_message_id=cw_id).debug(
            "Message posted to Chatwoot")


def _post(ctx: WorkerContext, instance_id: InstanceId, ref: ChatRef, event: MessageEvent,
          draft: ChatwootDraft, mappings: MappingStore) -> int:
    account_id, _ = parse_instance_id(instance_id)
    content, attributes = draft.content, dict(draft.content_attributes)
    if draft.reply_to is not None:
        target = mappings.by_wa(instance_id, draft.reply_to.wa_message_id)
        # Chatwoot links a reply only within one conversation.
        if target is not None and target.conversation_id == ref.conversation_id:
            attributes["in_reply_to"] = target.cw_message_id
        elif draft.reply_to.excerpt:
            quote = draft.reply_to.excerpt.replace("\n", " ")[:_QUOTE_MAX]
            content = f"> {quote}\n\n{content}"
    uploads = []
    for media in draft.attachments:
        if media.path.exists():
            uploads.append(Upload(path=media.path, filename=media.filename,
                                  content_type=media.content_type))
        else:  # a retry after the file was already attached and removed
            logger.bind(file=media.filename).warning("Spooled media file is gone")
    message = ctx.chatwoot.create_message(
        account_id, ref.conversation_id, content=content or None,
        # Typed on the linked phone, or a note for the agents: shown on the agents' side.
        message_type="outgoing" if event.key.fromMe or draft.private else "incoming",
        private=draft.private, source_id=event.key.id,
        content_attributes=attributes or None, uploads=uploads)
    return int(message["id"])


def _tally(ctx: WorkerContext, instance_id: InstanceId, chat_jid: str, event: MessageEvent,
           vote: PollVote) -> ChatwootDraft | None:
    """A vote becomes the poll's current tally, posted as a reply to the poll."""
    me = [as_text(v) for v in ctx.redis.hmget(keys.instance(instance_id), "wa_jid", "lid") if v]
    key = event.key
    voters = [vote.voter_jid, *_jids(key.participant, key.participantAlt, key.remoteJid,
                                     key.remoteJidAlt)]
    if key.fromMe:
        voters = [*me, *voters]
    creators = [*([vote.poll_creator_jid] if vote.poll_creator_jid else []), *me, chat_jid,
                *_jids(key.remoteJid, key.remoteJidAlt, key.participant, key.participantAlt)]
    result = polls.record_vote(ctx, instance_id, vote, creators, voters)
    if result is None:
        return None
    _state, text = result
    return ChatwootDraft(content=text, reply_to=Quote(wa_message_id=vote.poll_wa_message_id))


def _jids(*values: str | None) -> list[str]:
    out: list[str] = []
    for value in values:
        if value:
            try:
                out.append(normalize_jid(value))
            except ValueError:
                continue
    return out


def _discard(ctx: WorkerContext, files: tuple[MediaFile, ...]) -> None:
    """Delete attached files, only ever inside the spool (paths come from a frame)."""
    spool = ctx.settings.spool_dir.resolve()
    for media in files:
        path = Path(media.path).resolve()
        if path.is_relative_to(spool):
            path.unlink(missing_ok=True)


def report_failure(ctx: WorkerContext, item: MailboxItem, reason: str) -> None:
    """A private note in the chat's conversation, when we know it, that a message was lost
    (coalesced: at most one a minute per chat, see notes.report_failure)."""
    instance_id = InstanceId(item.payload["instance_id"])
    chat_jid: str = item.payload["chat_jid"]
    ref = Identity(ctx.chatwoot, ctx.redis).cached(instance_id, chat_jid)
    if ref is None:
        return
    account_id, _ = parse_instance_id(instance_id)
    notes.report_failure(ctx, instance_id=instance_id, chat_jid=chat_jid, account_id=account_id,
                         conversation_id=ref.conversation_id,
                         wa_message_id=item.payload["event"]["key"]["id"], reason=reason)
