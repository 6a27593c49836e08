"""Polls: the question and numbered options; votes go to the job encrypted (it decrypts, tallies).

Baileys rc14 no longer decrypts votes. A vote is encrypted with the poll's
`messageContextInfo.messageSecret`, so the poll's draft carries it for the job to keep.
"""

from __future__ import annotations

from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, PollDefinition, PollVote
from bridge.convert.to_chatwoot.summary import POLL_KINDS
from bridge.errors import IgnoreEvent
from bridge.ids import is_user_jid
from bridge.sidecar.protocol import MessageEvent


def convert_poll(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, event.content_type)
    if event.content_type == "pollCreationMessageV4":  # a FutureProofMessage around a poll
        inner = baileys.unwrap(baileys.obj(body.get("message")))[0]
        body = next((baileys.obj(inner[k]) for k in inner if k in POLL_KINDS), {})
    question = baileys.text(body, "name")
    options = tuple(name.strip() for option in baileys.items(body, "options")
                    if (name := baileys.text(baileys.obj(option), "optionName")))
    if question is None or not options:
        raise baileys.Malformed("a poll without question or options")
    selectable = baileys.integer(body, "selectableOptionsCount") or 0  # 0: any number
    texts = ctx.texts
    lines = [texts.poll.format(question=question.strip())]
    lines += [f"{n}. {option}" for n, option in enumerate(options, 1)]
    if selectable == 0 and len(options) > 1:
        lines.append(texts.poll_any)
    elif selectable > 1:
        lines.append(texts.poll_up_to.format(count=selectable))
    return ChatwootDraft(content="\n".join(lines), poll=PollDefinition(
        question=question.strip(), options=options, secret_b64=_secret(event.message),
        selectable=selectable))


def _secret(wa_message: dict[str, Any]) -> str | None:
    # The secret sits next to the poll, inside any wrapper, or at the top of the message.
    for content in (baileys.content_of(wa_message), baileys.obj(wa_message.get("message"))):
        secret = baileys.buffer_b64(baileys.obj(content.get("messageContextInfo"))
                                    .get("messageSecret"))
        if secret:
            return secret
    return None


def convert_vote(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    body = baileys.body_of(event.message, "pollUpdateMessage")
    poll_key = baileys.obj(body.get("pollCreationMessageKey"))
    poll_id = baileys.text(poll_key, "id")
    vote = baileys.obj(body.get("vote"))
    payload, iv = baileys.buffer_b64(vote.get("encPayload")), baileys.buffer_b64(vote.get("encIv"))
    if poll_id is None or payload is None or iv is None:
        raise baileys.Malformed("a poll vote without its poll key or encrypted vote")
    voter = None if event.key.fromMe else author(event.key.model_dump())
    if not event.key.fromMe and voter is None:
        raise IgnoreEvent("a poll vote without a voter")
    return ChatwootDraft(content="", poll_vote=PollVote(
        poll_wa_message_id=poll_id,
        # Baileys normalises this key to our point of view (cleanMessage): fromMe = our poll.
        poll_creator_jid=None if baileys.flag(poll_key, "fromMe") else author(poll_key),
        voter_jid=voter or "", voter_is_me=event.key.fromMe,
        enc_payload_b64=payload, enc_iv_b64=iv))


def author(key: dict[str, Any]) -> str | None:
    """Who sent a message (not for fromMe keys): its phone-number JID when the key has one
    (primary or `*Alt` address), else its primary address (a LID)."""
    if baileys.text(key, "participant") or baileys.text(key, "participantAlt"):
        fields = ("participant", "participantAlt")
    else:
        fields = ("remoteJid", "remoteJidAlt")
    jids = [jid for f in fields if (jid := baileys.text(key, f))]
    return next((jid for jid in jids if is_user_jid(jid)), jids[0] if jids else None)
