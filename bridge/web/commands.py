"""Agent commands typed in Chatwoot: `erga`, and `erga <subcommand> ...` (see `texts.help`).

A command is the keyword (`WEBHOOK_COMMAND_KEYWORD`) as the first word of a message. It counts
from an agent listed by id or e-mail (`WEBHOOK_AUTHORIZED_AGENT_IDS` / `_EMAILS`; a display
name can be changed by anyone, so names do not count), or from a contact whose phone number is in
`WEBHOOK_AUTHORIZED_PHONE_NUMBERS` (an operator writing from WhatsApp). A command is never
relayed to WhatsApp. Every use is audited in the log. Answers are private notes in the
conversation where it was typed; they never wait on WhatsApp or on Chatwoot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from loguru import logger

from bridge.chatwoot.models import MAX_CHATWOOT_ID, MessageWebhook
from bridge.errors import ChatwootError
from bridge.ids import InstanceId, make_instance_id, normalize_phone
from bridge.operations import InstanceView, Operations
from bridge.store import keys
from bridge.store.connection import as_text
from bridge.texts import state_name
from bridge.web.services import Services

CONFIRM_SECONDS = 300


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


class _Run:
    """One command being handled: where it came from and how to answer."""

    def __init__(self, services: Services, message: MessageWebhook, args: tuple[str, ...]):
        self.s = services
        self.m = message
        self.args = args
        self.ops = Operations(services)
        self.texts = services.texts
        self.keyword = services.settings.webhook_command_keyword

    async def note(self, text: str) -> None:
        await self.s.dispatcher.note(self.m.account.id, self.m.conversation.id, text)

    def here(self) -> InstanceId:
        return make_instance_id(self.m.account.id, self.m.inbox.id)

    def target(self) -> InstanceId:
        """This conversation's inbox, or the inbox id given as the argument."""
        if self.args:
            return make_instance_id(self.m.account.id, _chatwoot_id(self.args[0]))
        return self.here()

    def line(self, view: InstanceView) -> str:
        uptime = ""
        if view.uptime_seconds and view.state == "open":
            minutes = int(view.uptime_seconds // 60)
            uptime = f", {minutes // 60}h{minutes % 60:02d}"
        return self.texts.status_line.format(
            inbox=view.label, state=state_name(self.s.settings.chatwoot_language, view.state),
            number=f" ({view.number})" if view.number else "", uptime=uptime, queue=view.queue,
            error=view.last_error or "-")


Handler = Callable[[_Run], Awaitable[str]]


def _chatwoot_id(word: str) -> int:
    """An inbox or account id typed by an agent; ValueError (the usage note) unless it is one
    Chatwoot could have (ASCII digits, within its bigint ids), so no instance gets linked under
    an id that names nothing."""
    if not (word.isascii() and word.isdigit()) or not 1 <= int(word) <= MAX_CHATWOOT_ID:
        raise ValueError(f"not a Chatwoot id: {word[:20]!r}")
    return int(word)


async def _link(run: _Run, *, pairing_phone: str | None = None,
                args: tuple[str, ...] | None = None) -> str:
    args = run.args if args is None else args
    inbox_id = _chatwoot_id(args[0]) if args else run.m.inbox.id
    account_id = _chatwoot_id(args[1]) if len(args) > 1 else run.m.account.id
    instance_id = make_instance_id(account_id, inbox_id)
    outcome = await run.ops.link(
        account_id, inbox_id, pairing_phone=pairing_phone,
        inbox_name=run.m.inbox.name if inbox_id == run.m.inbox.id else None,
        notify=(run.m.account.id, run.m.conversation.id))
    view = await run.ops.view(instance_id)
    label = view.label if view else f"#{inbox_id}"
    if outcome == "already_linked":
        # A second `erga` must not log out a healthy number by accident: ask first.
        async with run.s.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.confirmation(instance_id), json.dumps(
                {"conversation_id": run.m.conversation.id, "pairing_phone": pairing_phone}),
                ex=CONFIRM_SECONDS)
            pipe.set(keys.confirmation_asked_in(run.m.account.id, run.m.conversation.id),
                     instance_id, ex=CONFIRM_SECONDS)
            await pipe.execute()
        await run.note(run.texts.confirm_relink.format(
            number=view.number if view else "?", inbox=label, keyword=run.keyword))
    elif outcome == "resuming":
        await run.note(run.texts.started.format(inbox=label))
    else:
        await run.note(run.texts.linking_started.format(inbox=label))
    return outcome


async def _pair(run: _Run) -> str:
    if not run.args:
        raise ValueError("pair needs a phone number")
    # The phone may be written with spaces, so it takes the rest of the line.
    phone = normalize_phone("".join(run.args)).lstrip("+")
    return await _link(run, pairing_phone=phone, args=())


async def _confirm(run: _Run) -> str:
    asked_in = keys.confirmation_asked_in(run.m.account.id, run.m.conversation.id)
    if run.args:
        instance_id = run.target()
    else:  # what the question in this conversation was about (it may name another inbox)
        asked = await run.s.redis.get(asked_in)
        instance_id = InstanceId(as_text(asked)) if asked else run.here()
    view = await run.ops.view(instance_id)
    pending = await run.s.redis.getdel(keys.confirmation(instance_id))
    if not pending or view is None:
        await run.note(run.texts.nothing_to_confirm.format(
            inbox=view.label if view else f"#{instance_id}"))
        return "nothing_to_confirm"
    await run.s.redis.delete(asked_in)
    try:
        phone = json.loads(pending).get("pairing_phone")
    except (ValueError, AttributeError):
        phone = None
    # `erga pair <phone>` asked the question: the re-link goes on by pairing code, not QR.
    await run.ops.link(view.account_id, view.inbox_id, replace_number=True,
                       pairing_phone=phone if isinstance(phone, str) and phone else None,
                       notify=(run.m.account.id, run.m.conversation.id))
    await run.note(run.texts.linking_started.format(inbox=view.label))
    return "relinking"


async def _status(run: _Run) -> str:
    view = await run.ops.view(run.target())
    if view is None:
        await run.note(run.texts.status_none.format(inbox=f"#{run.target()}",
                                                    keyword=run.keyword))
        return "not_found"
    await run.note(run.line(view))
    return "status"


async def _list(run: _Run) -> str:
    views = await run.ops.views(run.m.account.id)
    await run.note("\n".join([run.texts.list_header, *(f"• {run.line(v)}" for v in views)])
                   if views else run.texts.list_empty)
    return "list"


def _steer(action: str, sentence: str) -> Handler:
    async def handle(run: _Run) -> str:
        instance_id = run.target()
        view = await run.ops.view(instance_id)
        done = await getattr(run.ops, action)(instance_id) if view else False
        if not done or view is None:
            await run.note(run.texts.not_found.format(inbox=f"#{instance_id}"))
            return "not_found"
        if sentence:
            await run.note(getattr(run.texts, sentence).format(inbox=view.label,
                                                               keyword=run.keyword))
        return action

    return handle


async def _inbox(run: _Run) -> str:
    """`erga caixa <name>`: an API inbox wired to Ponte, then a number linked to it."""
    name = " ".join(run.args).strip()
    if not name:
        raise ValueError("caixa needs a name")
    public = run.s.settings.server_public_url
    if not public:
        await run.note(run.texts.public_url_missing)
        return "public_url_missing"
    url = public.rstrip("/") + "/webhook/chatwoot"
    if run.s.settings.webhook_token is not None:
        url += "?token=" + quote(run.s.settings.webhook_token.get_secret_value(), safe="")

    async def go() -> None:
        try:
            inbox = await asyncio.to_thread(run.s.chatwoot.create_api_inbox,
                                            run.m.account.id, name, url)
        except ChatwootError as err:
            await run.note(run.texts.inbox_failed.format(reason=str(err)))
            return
        if inbox.get("secret"):  # Chatwoot >= 4.13 signs this inbox's webhooks with it
            await run.s.redis.hset(keys.INBOX_SECRETS, str(inbox["id"]), inbox["secret"])
        await run.ops.link(run.m.account.id, int(inbox["id"]), inbox_name=name,
                           notify=(run.m.account.id, run.m.conversation.id))
        await run.note(run.texts.inbox_created.format(inbox=name, inbox_id=inbox["id"]))

    run.s.background(go(), name="create-inbox")
    return "creating_inbox"


async def _agent(run: _Run) -> str:
    """`erga agente <email> <name>`: invite an agent to this account."""
    if len(run.args) < 2 or "@" not in run.args[0]:
        raise ValueError("agente needs an e-mail and a name")
    email, name = run.args[0], " ".join(run.args[1:])

    async def go() -> None:
        try:
            await asyncio.to_thread(run.s.chatwoot.invite_agent, run.m.account.id,
                                    email=email, name=name)
        except ChatwootError as err:
            await run.note(run.texts.agent_failed.format(email=email, reason=str(err)))
            return
        await run.note(run.texts.agent_invited.format(email=email, name=name))

    run.s.background(go(), name="invite-agent")
    return "inviting_agent"


async def _help(run: _Run) -> str:
    await run.note(run.texts.help.format(keyword=run.keyword))
    return "help"


SUBCOMMANDS: dict[str, Handler] = {
    "pair": _pair, "confirmar": _confirm, "confirm": _confirm,
    "status": _status, "list": _list, "lista": _list, "listar": _list,
    "stop": _steer("stop", "stopped"), "parar": _steer("stop", "stopped"),
    "start": _steer("start", "started"), "iniciar": _steer("start", "started"),
    "restart": _steer("restart", "restarted"), "reiniciar": _steer("restart", "restarted"),
    "logout": _steer("logout", ""), "sair": _steer("logout", ""),
    "caixa": _inbox, "inbox": _inbox, "agente": _agent, "agent": _agent,
    "help": _help, "ajuda": _help,
}


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
    first = command.args[0].lower() if command.args else ""
    handler = SUBCOMMANDS.get(first)
    args: tuple[str, ...] = command.args[1:] if handler is not None else command.args
    if handler is None and first and not first.isdigit():
        handler, args = _help, ()  # an unknown subcommand gets the list of the known ones
    run = _Run(services, message, args)
    try:
        return await (handler or _link)(run)
    except ValueError:
        await run.note(services.texts.command_usage.format(keyword=run.keyword))
        return "usage"
