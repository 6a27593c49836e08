"""`POST /webhook/chatwoot` (also `/webhook/comando`): verify, classify, queue, answer at once.

Chatwoot gives a webhook 5 seconds, sends it once, and marks the agent's message failed when the
answer is late or not 2xx; so nothing here waits on WhatsApp or on Chatwoot. Relayed are only
messages an agent meant for the customer: `message_created`, outgoing, not private, from a user or
agent bot, without `source_id` (ours carry one), in an inbox linked to an instance.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit
from weakref import WeakKeyDictionary

import redis.asyncio as aioredis
from loguru import logger
from pydantic import ValidationError
from redis.commands.core import AsyncScript
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge import metrics
from bridge.chatwoot.models import ConversationStatusWebhook, MessageWebhook
from bridge.convert.markdown import signed, to_whatsapp
from bridge.convert.to_whatsapp import recipient_jid
from bridge.ids import InstanceId, make_instance_id, normalize_jid
from bridge.relay.intake import JOURNALED
from bridge.relay.journal import JournalFull
from bridge.store import keys
from bridge.store.connection import as_text, unavailable
from bridge.store.mapping import AsyncMappingStore
from bridge.store.outbox import Outbox, OutboxAttachment, OutboxEntry, OutboxQuote
from bridge.web import commands
from bridge.web.payload import BadBody, parse_body
from bridge.web.security import Unverified, verify_webhook
from bridge.web.services import Services

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
INBOX_SECRETS_TTL = 60.0  # a deleted inbox's secret stops working within this


class _Claim:
    """Deduplication, in the one round trip the webhook's action needs anyway.

    Most of Chatwoot's webhooks are ignored (notes, incoming messages, our own posts), and
    ignoring a duplicate twice is harmless; so only an action (a relay, a command, a revoke)
    checks the delivery id, together with its own key (the Chatwoot message id: Chatwoot may
    fire `message_created` twice, each time with a new delivery id)."""

    # Both claims and, when both are new, the outbox entry: one round trip for the common case
    # (an agent's message to relay). A script runs atomically, so a duplicate never appends.
    CLAIM_AND_APPEND = """
    local first = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
    if #KEYS > 2 and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then
        return 2
    end
    if not first then return 1 end
    if ARGV[2] ~= '' then redis.call('XADD', KEYS[2], '*', 'entry', ARGV[2]) end
    return 0
    """

    def __init__(self, services: Services, delivery: str | None) -> None:
        self._redis = services.redis
        self._delivery = delivery

    async def duplicate(self, kind: str, value: str, what: str) -> str | None:
        """None the first time; else why this is a duplicate (the delivery, or `what`)."""
        return await self.append_unless_duplicate(kind, value, what, None)

    async def append_unless_duplicate(self, kind: str, value: str, what: str,
                                      outbox: tuple[Outbox, OutboxEntry] | None) -> str | None:
        """Like `duplicate`; the first time, the entry is appended to the outbox with it."""
        script = _claim_script(self._redis)
        names = [keys.webhook_seen(kind, value), outbox[0].key if outbox else "-"]
        if self._delivery:
            names.append(keys.webhook_seen("delivery", self._delivery))
        self._delivery = None  # claimed now: a later action of this webhook must not trip on it
        verdict = await script(keys=names, args=[DEDUPE_TTL_SECONDS,
                                                 outbox[1].dumps() if outbox else ""])
        if verdict == 2:
            return "duplicate delivery"
        return f"duplicate {what}" if verdict == 1 else None


_CLAIM_SCRIPTS: WeakKeyDictionary[aioredis.Redis, AsyncScript] = WeakKeyDictionary()


def _claim_script(redis: aioredis.Redis) -> AsyncScript:
    """The claim script of this client, registered once (not on every webhook)."""
    script = _CLAIM_SCRIPTS.get(redis)
    if script is None:
        script = _CLAIM_SCRIPTS[redis] = redis.register_script(_Claim.CLAIM_AND_APPEND)
    return script


def _answer(code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=code)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


@metrics.timed_webhook
async def chatwoot_webhook(request: Request) -> JSONResponse:
    """Read, verify and parse here (nothing of it needs Redis); then `handle` the webhook
    through the intake, so a message an agent wrote is durable before Chatwoot hears 2xx: in
    Redis, or in the journal while Redis does not answer (replayed through `handle` later)."""
    services: Services = request.app.state.services
    settings = services.settings
    try:
        body = await _read_body(request, settings.webhook_max_body_bytes)
    except ClientDisconnect:
        return _answer(400, error="client disconnected")
    if body is None:
        return _answer(413, error=f"body larger than {settings.webhook_max_body_bytes} bytes")
    try:
        await _verify(services, request, body)
    except Unverified as err:
        logger.bind(path=request.url.path, reason=str(err)).warning("Webhook refused")
        return _answer(401, error=f"unverified webhook: {err}")
    except _SecretsUnreadable:
        return _answer(503, error="cannot verify now: Redis is unreachable, retry later")
    try:
        data = parse_body(body)
    except BadBody as err:
        logger.bind(path=request.url.path, reason=err.reason).warning("Webhook body refused")
        return _answer(400, error=err.reason)
    event = data.get("event")
    if not isinstance(event, str) or not event:
        return _answer(400, error="missing 'event' (a Chatwoot webhook names its event)")
    message = None
    if event in ("message_created", "message_updated"):
        try:
            message = MessageWebhook.model_validate(data)
        except ValidationError as err:
            return _answer(422, error=f"{event} payload is incomplete: {_problems(err)}")
    elif event == "conversation_status_changed":
        try:  # checked here for the answer; the handler reads `data` (what the journal keeps)
            ConversationStatusWebhook.model_validate(data)
        except ValidationError as err:
            return _answer(422, error=f"{event} payload is incomplete: {_problems(err)}")
    else:
        # The name is the sender's text, of any length: cut in the answer.
        return _answer(200, status="ignored", reason=f"event {event[:60]} is not handled")
    args = {"data": data, "delivery": request.headers.get("x-chatwoot-delivery"),
            "message": message}
    try:
        outcome = await services.intake.submit("webhook", args, wait_when_full=False)
    except JournalFull:
        logger.error("Webhook refused: Redis is unreachable and the journal is full")
        return _answer(503, error="Redis is unreachable and the journal is full, retry later")
    if outcome is JOURNALED:
        return _answer(200, status="journaled")
    response: JSONResponse = outcome
    return response


def _problems(err: ValidationError) -> str:
    """The first few, as `where: what`; a path of keys the sender chose is cut short."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))[:80]}: {e['msg']}"
                     for e in err.errors()[:5])


def attach(services: Services) -> None:
    """Webhooks go through `services.intake` as the "webhook" operation from now on."""
    async def apply(args: dict[str, Any], at: float) -> JSONResponse:
        return await handle(services, args, at)
    services.intake.register("webhook", apply, encode=_journaled_args)


def _journaled_args(args: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps the body as Chatwoot sent it; the parsed model is made again."""
    return {"data": args["data"], "delivery": args["delivery"]}


async def handle(services: Services, args: dict[str, Any], received_at: float) -> JSONResponse:
    """Act on a verified, parsed webhook (`args`: its body `data`, its `delivery` id, and its
    `message` when already validated). Applied again whole after Redis failed half-way: the
    claims keep a relay, command or deletion from happening twice."""
    data: dict[str, Any] = args["data"]
    event = data["event"]
    claim = _Claim(services, args.get("delivery"))
    if event == "conversation_status_changed":
        return await _conversation_status(services, data)
    message = args.get("message") or MessageWebhook.model_validate(data)
    if event == "message_updated":
        return await _updated(services, message, claim, received_at)
    return await _route(services, message, claim, received_at)


class _SecretsUnreadable(Exception):
    """The webhook matched no cached secret, and Redis (where the others are) does not answer."""


async def _verify(services: Services, request: Request, body: bytes) -> None:
    """Raise Unverified. The secrets of inboxes Ponte created live in Redis; they are cached,
    and read again when a webhook does not verify with the cached ones."""
    now = time.monotonic()
    if now - services.inbox_secrets_at > INBOX_SECRETS_TTL:
        await _reload_inbox_secrets(services, now)
    try:
        verify_webhook(services.settings, request, body, extra_secrets=services.inbox_secrets)
    except Unverified:
        try:
            changed = await _reload_inbox_secrets(services, now, strict=True)
        except Exception as err:
            if unavailable(err):
                raise _SecretsUnreadable() from err
            raise
        if not changed:
            raise
        verify_webhook(services.settings, request, body, extra_secrets=services.inbox_secrets)


async def _reload_inbox_secrets(services: Services, now: float, *, strict: bool = False) -> bool:
    """True when they changed. While Redis does not answer the cached secrets stay in use
    (an outage must not turn every inbox's webhooks away); `strict` raises instead."""
    try:
        stored = await services.redis.hvals(keys.INBOX_SECRETS)
    except Exception as err:
        if strict or not unavailable(err):
            raise
        services.inbox_secrets_at = now  # asked again after the TTL, not on every webhook
        return False
    fresh = tuple(sorted(as_text(s) for s in stored))
    services.inbox_secrets_at = now
    changed = fresh != services.inbox_secrets
    services.inbox_secrets = fresh
    return changed


async def _updated(services: Services, message: MessageWebhook, claim: _Claim,
                   received_at: float) -> JSONResponse:
    """Chatwoot marks an agent's message failed when a webhook for it failed (it sends each
    once). If we never queued it, send it now: that is what the agent's "retry" means. Every
    other update (our own status PATCHes coming back, edits) needs nothing."""
    attributes = message.content_attributes or {}
    if attributes.get("deleted"):
        return await _revoke(services, message, claim)
    if not attributes.get("external_error"):
        return _answer(200, status="ignored", reason="update needs no action")
    skip = _why_not_relayed(message, services.settings.chatwoot_relay_templates)
    if skip:
        return _answer(200, status="ignored", reason=skip)
    return await _relay(services, message, claim, received_at)


async def _conversation_status(services: Services, data: dict[str, Any]) -> JSONResponse:
    """Under the "new" policy, a resolved conversation is not reused: forget it, so the
    customer's next message starts a new one. (Chatwoot sends no account id here; inbox ids
    are global, so the inbox names the instance.)"""
    try:  # `data` may come back from the journal, unchecked since: read it through the model
        hook = ConversationStatusWebhook.model_validate(data)
    except ValidationError as err:
        return _answer(422, error=f"conversation_status_changed payload is incomplete: "
                                  f"{_problems(err)}")
    if services.settings.chatwoot_conversation_policy != "new" or hook.status != "resolved":
        return _answer(200, status="ignored", reason="nothing to do for this status")
    source_id = hook.contact_inbox.source_id if hook.contact_inbox else None
    try:
        chat_jid = normalize_jid(source_id or "")
    except ValueError:
        return _answer(200, status="ignored", reason="not a WhatsApp conversation")
    for record in await services.registry.all():
        if hook.inbox_id is not None and record.inbox_id == hook.inbox_id:
            lid = await services.redis.get(keys.pn_to_lid(record.instance_id, chat_jid))
            stale = [keys.conversation(record.instance_id, chat_jid)]
            if lid is not None:
                stale.append(keys.conversation(record.instance_id, as_text(lid)))
            await services.redis.delete(*stale)
            return _answer(200, status="forgotten")
    return _answer(200, status="ignored", reason="inbox is not linked to WhatsApp")


async def _route(services: Services, message: MessageWebhook, claim: _Claim,
                 received_at: float) -> JSONResponse:
    if commands.may_carry_command(message):
        command = commands.parse(message.content, services.settings.webhook_command_keyword)
        if command is not None:
            if duplicate := await claim.duplicate("command", f"{message.account.id}:{message.id}",
                                                 "command"):
                return _answer(200, status="ignored", reason=duplicate)
            outcome = await commands.handle(services, message, command)
            if outcome != "not_a_command":
                return _answer(200, status="command", outcome=outcome)
    skip = _why_not_relayed(message, services.settings.chatwoot_relay_templates)
    if skip:
        return _answer(200, status="ignored", reason=skip)
    return await _relay(services, message, claim, received_at)


def _why_not_relayed(message: MessageWebhook, templates: bool) -> str | None:
    """None when an agent meant this for the customer; else why it stays in Chatwoot."""
    if message.private:
        return "private note"
    if message.source_id:
        return "posted by the bridge"
    if message.direction == "template":
        # Greetings, out-of-office, CSAT: Chatwoot's own messages, sent only if configured.
        return None if templates else "template message"
    if message.direction != "outgoing":
        return f"{message.direction} message"
    if message.sender_kind not in ("user", "agent_bot"):
        return "not from an agent"
    return None


async def _revoke(services: Services, message: MessageWebhook, claim: _Claim) -> JSONResponse:
    """An agent deleted a message in Chatwoot: delete it for everyone on WhatsApp too."""
    account_id = message.account.id
    try:
        instance_id = make_instance_id(account_id, message.inbox.id)
    except ValueError:
        return _answer(422, error="account.id and inbox.id must be positive integers")
    mapping = await AsyncMappingStore(services.redis).by_cw(account_id, message.id)
    if mapping is None or not mapping.from_me:
        return _answer(200, status="ignored", reason="not a message Ponte sent")
    if duplicate := await claim.duplicate("revoke", f"{account_id}:{message.id}", "deletion"):
        return _answer(200, status="ignored", reason=duplicate)
    await Outbox(services.redis, instance_id).append(OutboxEntry(
        account_id=account_id, conversation_id=message.conversation.id,
        cw_message_id=message.id, jid=mapping.chat_jid, at=time.time(), action="revoke"))
    services.outbound.notify(instance_id)
    return _answer(200, status="queued")


async def _refuse(services: Services, message: MessageWebhook, reason: str) -> None:
    """Visible to the agents: a note saying why, and the message marked failed."""
    account_id, conversation_id = message.account.id, message.conversation.id
    await services.dispatcher.note(account_id, conversation_id,
                                   services.texts.send_failed.format(reason=reason))
    await services.dispatcher.message_status(account_id, conversation_id, message.id, "failed",
                                             reason)


async def _quote(services: Services, instance_id: InstanceId,
                 message: MessageWebhook) -> OutboxQuote | None:
    """The WhatsApp message the agent replied to, when we know it."""
    attributes = message.content_attributes or {}
    mappings = AsyncMappingStore(services.redis)
    mapping = None
    if isinstance(attributes.get("in_reply_to"), int):
        mapping = await mappings.by_cw(message.account.id, attributes["in_reply_to"])
    external = attributes.get("in_reply_to_external_id")
    if mapping is None and isinstance(external, str) and external:
        mapping = await mappings.by_wa(instance_id, external)
        if mapping is None:  # a WhatsApp id Chatwoot knows and we do not: the customer's
            return OutboxQuote(wa_message_id=external, from_me=False)
    if mapping is None:
        return None
    return OutboxQuote(wa_message_id=mapping.wa_message_id, from_me=mapping.from_me)


def _attachment_name(data_url: str) -> str | None:
    """ActiveStorage URLs end with the file's name."""
    try:
        path = urlsplit(data_url).path
    except ValueError:  # e.g. "http://[::1": the fetch will say what is wrong with the URL
        return None
    name = unquote(path.rsplit("/", 1)[-1])
    return name or None


async def _relay(services: Services, message: MessageWebhook, claim: _Claim,
                 received_at: float) -> JSONResponse:
    account_id, conversation_id = message.account.id, message.conversation.id
    try:
        instance_id = make_instance_id(account_id, message.inbox.id)
    except ValueError:
        return _answer(422, error="account.id and inbox.id must be positive integers")
    # Every linked instance has a runner in every serve (one of them holds its lease and
    # sends): the registry is asked only when there is none.
    runner = services.supervisor.runner(instance_id)
    if runner is None and await services.registry.get(instance_id) is None:
        return _answer(200, status="ignored", reason="inbox is not linked to WhatsApp")
    claimed = f"{account_id}:{message.id}"
    texts = services.texts
    jid = recipient_jid(message)
    if jid is None or runner is None or not runner.alive:
        note, why = ((texts.reason_invalid_recipient, "no WhatsApp recipient in the conversation")
                     if jid is None else (texts.reason_not_connected, "instance is not running"))
        if duplicate := await claim.duplicate("cw", claimed, "message"):
            return _answer(200, status="ignored", reason=duplicate)
        await _refuse(services, message, note)
        return _answer(200, status="failed", reason=why)
    if not (message.content or "").strip() and not message.attachments:
        return _answer(200, status="ignored", reason="nothing to send")
    text = to_whatsapp(message.content or "") if (message.content or "").strip() else ""
    if text and services.settings.chatwoot_sign_agent_messages and message.sender_kind == "user":
        text = signed(text, message.sender.name if message.sender else None,
                      services.settings.chatwoot_signature_delimiter)
    entry = OutboxEntry(
        account_id=account_id, conversation_id=conversation_id, cw_message_id=message.id,
        jid=jid, text=text, at=received_at, quote=await _quote(services, instance_id, message),
        attachments=tuple(
            OutboxAttachment(data_url=a.data_url, file_type=a.file_type or "file",
                             content_type=a.content_type, name=_attachment_name(a.data_url))
            for a in message.attachments if a.data_url))
    if duplicate := await claim.append_unless_duplicate(
            "cw", claimed, "message", (Outbox(services.redis, instance_id), entry)):
        return _answer(200, status="ignored", reason=duplicate)
    services.outbound.notify(instance_id)
    logger.bind(instance=instance_id, cw_message_id=message.id,
                conversation_id=conversation_id).debug("Agent message queued for WhatsApp")
    return _answer(200, status="queued")


ROUTES = [
    Route("/webhook/chatwoot", chatwoot_webhook, methods=["POST"]),
    # The original bridge's README documents this path: keep existing Chatwoot setups.
    Route("/webhook/comando", chatwoot_webhook, methods=["POST"]),
]
