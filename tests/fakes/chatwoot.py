"""A fake Chatwoot v4.13 for Ponte's tests: a real HTTP server on 127.0.0.1, not a mock.

The contract is /work/shared/chatwoot/README.md, which describes Chatwoot as its code behaves. Where
it and the OpenAPI files beside it disagree, the fake follows the README (and so the code).

What is faked: the Application API calls a bridge makes (inboxes, contacts, contact_inboxes,
conversations, messages, agents, account webhooks, profile), Chatwoot's auth and error bodies, the
ActiveStorage redirect that attachment `data_url`s point at, and webhook delivery exactly as
`lib/webhooks/trigger.rb` sends it (Rails-escaped JSON, X-Chatwoot-* headers, HMAC signature, one
attempt, 5 s timeout, failed API-inbox deliveries marking the message failed).

State lives in memory behind one lock: the uvicorn thread serves HTTP, the test thread calls the
in-process helpers (`agent_message`, `fail`, `calls_to`, ...), and a third thread delivers webhooks.

    with FakeChatwoot() as cw:
        inbox = cw.add_inbox("WhatsApp", webhook_url=receiver_url)
        ...                                    # point the bridge at cw.url with cw.token
        cw.agent_message(conversation_id, "Hi")  # fires message_created at receiver_url
        cw.wait_for(lambda: cw.calls_to("PATCH", r"/messages/\\d+$"))

Or use the function-scoped pytest fixture `fake_chatwoot` defined at the bottom of this module.

Left out on purpose (not needed by a bridge, or not knowable without running Chatwoot): agent-bot
outgoing webhooks and the "pending while a bot is active" rule, avatar_url downloads, typing
events, labels and teams, inbox_* and webwidget_triggered events, image width/height (null), and
activity messages other than status changes. Webhooks leave one at a time in the order they were
caused; Chatwoot's Sidekiq promises no order at all. Unfaked endpoints answer 501.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import http
import itertools
import json
import queue
import random
import re
import secrets
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

T = TypeVar("T")

# --- Chatwoot's enums and limits (app/models/message.rb, conversation.rb, lib/limits.rb) -------
API_CHANNEL = "Channel::Api"
MESSAGE_TYPES: dict[str, int] = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
MESSAGE_TYPE_NAMES: dict[int, str] = {v: k for k, v in MESSAGE_TYPES.items()}
INCOMING, OUTGOING, ACTIVITY, TEMPLATE = 0, 1, 2, 3
MESSAGE_STATUSES: dict[str, int] = {"sent": 0, "delivered": 1, "read": 2, "failed": 3}
MESSAGE_STATUS_NAMES: dict[int, str] = {v: k for k, v in MESSAGE_STATUSES.items()}
SENT, DELIVERED, READ, FAILED = 0, 1, 2, 3
CONTENT_TYPES = frozenset({
    "text", "input_text", "input_textarea", "input_email", "input_select", "cards", "form",
    "article", "incoming_email", "input_csat", "integrations", "sticker", "voice_call",
})
CONVERSATION_STATUSES = ("open", "resolved", "pending", "snoozed")
# app/helpers/file_type_helper.rb: exact matches for image and video, a substring for audio.
IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"})
VIDEO_CONTENT_TYPES = frozenset({"video/mp4", "video/webm", "video/ogg", "video/quicktime"})
MAX_CONTENT_LENGTH = 150_000
MAX_ATTACHMENTS = 15
CONTACTS_PER_PAGE = 15
CONVERSATIONS_PER_PAGE = 25
CONTACT_CONVERSATIONS_LIMIT = 20
MESSAGES_LATEST = 20
MESSAGES_AFTER = 100
E164 = re.compile(r"\+[1-9]\d{1,14}\Z")  # not anchored at the start, exactly as contact.rb
EMAIL = re.compile(r"\A[^@\s]+@[^@\s]+\Z")  # Devise.email_regexp

# Webhook events (app/listeners/webhook_listener.rb, Webhook::ALLOWED_WEBHOOK_EVENTS).
API_INBOX_EVENTS = frozenset({
    "conversation_created", "conversation_status_changed", "conversation_updated",
    "message_created", "message_updated", "conversation_typing_on", "conversation_typing_off",
})
DEFAULT_WEBHOOK_SUBSCRIPTIONS = (
    "conversation_status_changed", "conversation_updated", "conversation_created",
    "contact_created", "contact_updated", "message_created", "message_updated",
    "webwidget_triggered",
)
FAILURE_MARKING_EVENTS = frozenset({"message_created", "message_updated"})
# conversation_updated fires only when one of these columns changed (Conversation#allowed_keys?).
CONVERSATION_UPDATE_KEYS = frozenset({
    "team_id", "assignee_id", "status", "snoozed_until", "custom_attributes", "label_list",
    "waiting_since", "first_reply_created_at", "priority",
})

# Error bodies (request_exception_handler.rb, access_token_auth_helper.rb, Devise).
ERR_NO_TOKEN = "You need to sign in or sign up before continuing."
ERR_BAD_TOKEN = "Invalid Access Token"
ERR_NOT_MEMBER = "You are not authorized to access this account"
ERR_BOT = "Access to this endpoint is not authorized for bots"
ERR_FORBIDDEN = "You are not authorized to do this action"
ERR_NOT_FOUND = "Resource could not be found"
ERR_SOURCE_ID = "source_id should be unique"
ERR_INCOMING_NOT_API = "Incoming messages are only allowed in Api inboxes"
ERR_STATUS_NOT_API = "Message status update is only allowed for API inboxes"
ERR_NO_Q = "Specify search string with parameter q"
RAILS_500: dict[str, Any] = {"status": 500, "error": "Internal Server Error"}
DELETED_CONTENT = "This message was deleted"

# Activity messages Chatwoot writes when a user changes the status (config/locales/en.yml).
STATUS_ACTIVITY = {
    "resolved": "Conversation was marked resolved by {name}",
    "open": "Conversation was reopened by {name}",
    "pending": "Conversation was marked as pending by {name}",
    "snoozed": "Conversation was snoozed by {name}",
}

FailStatus: TypeAlias = int | Literal["timeout"]
FileSpec: TypeAlias = tuple[str, bytes, str]  # (file name, bytes, content type)
Signing: TypeAlias = bool | Literal["account_only"]
UserRef: TypeAlias = "int | Mapping[str, Any] | None"


# --- small pure helpers -------------------------------------------------------------------------
def rails_json(value: Any) -> bytes:
    """Serialise like ActiveSupport's `to_json`: compact, UTF-8, `<` `>` `&` escaped as \\u00XX."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # Safe on the whole text: these characters can only occur inside JSON strings.
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode("utf-8")


def iso(ts: float | None) -> str | None:
    """A Rails `Time#to_json`: UTC with milliseconds and a Z."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def file_type_for(content_type: str | None) -> str:
    """Chatwoot's FileTypeHelper#file_type on the uploaded part's Content-Type."""
    if content_type in IMAGE_CONTENT_TYPES:
        return "image"
    if content_type in VIDEO_CONTENT_TYPES:
        return "video"
    if content_type and "audio/" in content_type:
        return "audio"
    return "file"


def like(pattern: str, value: str | None, *, case_insensitive: bool) -> bool:
    """PostgreSQL LIKE/ILIKE: `%` any run, `_` one character, backslash escapes; NULL never matches.

    Chatwoot interpolates the user's `q` into the pattern unescaped, so `%` and `_` in a search
    string are wildcards there too.
    """
    if value is None:
        return False
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.fullmatch("".join(out), value, flags) is not None


def present(value: Any) -> bool:
    """Ruby's `present?`: not nil, not false, not empty, not only whitespace."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, dict, tuple)):
        return bool(value)
    return True


def cast_bool(value: Any) -> bool | None:
    """ActiveModel::Type::Boolean: multipart sends booleans as text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip().lower() not in {"0", "f", "false", "off"}
    return bool(value)


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _token(length: int = 24) -> str:
    """has_secure_token's alphabet (base58)."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _nest(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Rack's nested params: `a[b]=1` -> {"a": {"b": 1}}, `a[]=x` -> {"a": ["x"]}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            out[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: dict[str, Any] = out
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if last:
                node[part] = value
            elif parts[index + 1] == "" and index + 1 == len(parts) - 1:
                existing = node.get(part)
                if not isinstance(existing, list):
                    existing = node[part] = []
                existing.append(value)
                break
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return out


# --- recorded traffic ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class FilePart:
    """One uploaded multipart file, as the fake received it."""

    name: str  # the form field, e.g. "attachments[]"
    filename: str
    content_type: str
    size: int
    data: bytes = field(repr=False)


@dataclass(slots=True, kw_only=True)
class Call:
    """One HTTP request the fake answered (or is still holding)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None  # parsed JSON body, if one was sent
    form: dict[str, str] | None = None  # multipart / urlencoded text fields
    files: list[FilePart] = field(default_factory=list)
    status: int = 0  # 0 while a "timeout" failure holds the request
    response: Any = None  # parsed JSON answer, the text of a non-JSON one, or None
    injected: str | None = None  # "500", "429", "timeout"... when a failure was injected
    at: float = 0.0

    @property
    def params(self) -> dict[str, Any]:
        """The body's fields whatever the encoding: JSON object or form fields."""
        if isinstance(self.json, dict):
            return self.json
        return dict(self.form or {})


@dataclass(slots=True, kw_only=True)
class Delivery:
    """One webhook POST the fake made, and what came back."""

    id: str  # X-Chatwoot-Delivery (also set when signing is off, for bookkeeping)
    url: str
    kind: Literal["api_inbox", "account"]
    event: str
    payload: dict[str, Any]
    body: bytes = field(repr=False)
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None  # the text stored as external_error on failure
    response_body: bytes = field(default=b"", repr=False)
    at: float = 0.0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True, kw_only=True)
class _WebhookJob:
    url: str
    kind: Literal["api_inbox", "account"]
    secret: str | None
    event: str
    payload: dict[str, Any]
    message_id: int | None


@dataclass(slots=True, kw_only=True)
class _FailRule:
    pattern: re.Pattern[str]
    method: str | None
    status: FailStatus
    remaining: int | None
    apply: bool


# --- stored records (the database) --------------------------------------------------------------
@dataclass(slots=True, kw_only=True)
class Account:
    id: int
    name: str
    next_display_id: int = 1


@dataclass(slots=True, kw_only=True)
class User:
    id: int
    name: str
    email: str
    access_token: str
    roles: dict[int, str]  # account id -> "administrator" | "agent"
    created_at: float
    pubsub_token: str = field(default_factory=_token)
    display_name: str | None = None


@dataclass(slots=True, kw_only=True)
class AgentBot:
    id: int
    name: str
    access_token: str
    account_id: int


@dataclass(slots=True, kw_only=True)
class Inbox:
    id: int
    account_id: int
    name: str
    channel_type: str
    channel_id: int
    webhook_url: str | None
    secret: str
    hmac_token: str
    inbox_identifier: str
    created_at: float
    lock_to_single_conversation: bool = False
    hmac_mandatory: bool = False
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    member_ids: set[int] = field(default_factory=set)

    @property
    def api(self) -> bool:
        return self.channel_type == API_CHANNEL


@dataclass(slots=True, kw_only=True)
class Contact:
    id: int
    account_id: int
    name: str
    email: str | None
    phone_number: str | None
    identifier: str | None
    custom_attributes: dict[str, Any]
    additional_attributes: dict[str, Any]
    created_at: float
    updated_at: float
    last_activity_at: float | None = None
    blocked: bool = False
    thumbnail: str = ""


@dataclass(slots=True, kw_only=True)
class ContactInbox:
    id: int
    contact_id: int
    inbox_id: int
    source_id: str
    created_at: float
    updated_at: float
    hmac_verified: bool = False
    pubsub_token: str = field(default_factory=_token)


@dataclass(slots=True, kw_only=True)
class Conversation:
    id: int  # internal; never shown
    display_id: int  # the `id` of paths, responses and webhooks
    uuid: str
    account_id: int
    inbox_id: int
    contact_id: int
    contact_inbox_id: int
    status: str
    created_at: float
    updated_at: float
    last_activity_at: float
    waiting_since: float | None
    assignee_id: int | None = None
    snoozed_until: float | None = None
    first_reply_created_at: float | None = None
    agent_last_seen_at: float | None = None
    contact_last_seen_at: float | None = None
    priority: str | None = None
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Attachment:
    id: int
    message_id: int
    account_id: int
    file_type: str
    content_type: str
    filename: str
    data: bytes = field(repr=False)
    key: str = field(default_factory=lambda: _token(28))  # the blob key in the disk URL
    signed_id: str = field(default_factory=lambda: _token(40))


@dataclass(slots=True, kw_only=True)
class Message:
    id: int
    account_id: int
    inbox_id: int
    conversation_id: int  # internal Conversation.id
    message_type: int
    content: str | None
    content_type: str
    content_attributes: dict[str, Any]
    private: bool
    status: int
    source_id: str | None
    sender_type: str | None  # "User" | "Contact" | "AgentBot" | None
    sender_id: int | None
    created_at: float
    updated_at: float
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class AccountWebhook:
    id: int
    account_id: int
    url: str
    name: str
    subscriptions: list[str]
    secret: str


Actor: TypeAlias = User | AgentBot


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One endpoint of the fake. `bots`: an AgentBot token may call it (README, Auth)."""

    method: str
    path: str  # {name} segments; all path values are read as strings
    handler: str
    auth: bool = True
    account: bool = True
    bots: bool = False
    api: bool = True  # False: not part of the REST API (ActiveStorage downloads)


_A = "/api/v1/accounts/{account_id}"
_CONV = f"{_A}/conversations/{{conversation_id}}"
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/api/v1/profile", "_h_profile", account=False),
    RouteSpec("GET", f"{_A}/inboxes", "_h_inboxes_index"),
    RouteSpec("POST", f"{_A}/inboxes", "_h_inboxes_create"),
    RouteSpec("GET", f"{_A}/inboxes/{{id}}", "_h_inboxes_show"),
    RouteSpec("PATCH", f"{_A}/inboxes/{{id}}", "_h_inboxes_update"),
    RouteSpec("POST", f"{_A}/inboxes/{{id}}/reset_secret", "_h_inboxes_reset_secret"),
    RouteSpec("GET", f"{_A}/agents", "_h_agents_index"),
    RouteSpec("POST", f"{_A}/agents", "_h_agents_create"),
    RouteSpec("GET", f"{_A}/webhooks", "_h_webhooks_index"),
    RouteSpec("POST", f"{_A}/webhooks", "_h_webhooks_create"),
    RouteSpec("GET", f"{_A}/contacts/search", "_h_contacts_search"),
    RouteSpec("POST", f"{_A}/contacts/filter", "_h_contacts_filter"),
    RouteSpec("POST", f"{_A}/contacts", "_h_contacts_create"),
    RouteSpec("GET", f"{_A}/contacts/{{id}}", "_h_contacts_show"),
    RouteSpec("PUT", f"{_A}/contacts/{{id}}", "_h_contacts_update"),
    RouteSpec("PATCH", f"{_A}/contacts/{{id}}", "_h_contacts_update"),
    RouteSpec("DELETE", f"{_A}/contacts/{{id}}", "_h_contacts_destroy"),
    RouteSpec("DELETE", f"{_A}/contacts/{{id}}/avatar", "_h_contacts_avatar_destroy"),
    RouteSpec("POST", f"{_A}/contacts/{{id}}/contact_inboxes", "_h_contact_inboxes_create"),
    RouteSpec("GET", f"{_A}/contacts/{{id}}/conversations", "_h_contacts_conversations"),
    RouteSpec("POST", f"{_A}/contact_inboxes/filter", "_h_contact_inboxes_filter"),
    RouteSpec("POST", f"{_A}/actions/contact_merge", "_h_contact_merge"),
    RouteSpec("GET", f"{_A}/conversations", "_h_conversations_index"),
    RouteSpec("POST", f"{_A}/conversations", "_h_conversations_create", bots=True),
    RouteSpec("GET", _CONV, "_h_conversations_show"),
    RouteSpec("DELETE", _CONV, "_h_conversations_destroy"),
    RouteSpec("POST", f"{_CONV}/toggle_status", "_h_conversations_toggle_status", bots=True),
    RouteSpec("GET", f"{_CONV}/messages", "_h_messages_index"),
    RouteSpec("POST", f"{_CONV}/messages", "_h_messages_create", bots=True),
    RouteSpec("PATCH", f"{_CONV}/messages/{{message_id}}", "_h_messages_update"),
    RouteSpec("DELETE", f"{_CONV}/messages/{{message_id}}", "_h_messages_destroy"),
    RouteSpec("GET", "/rails/active_storage/blobs/redirect/{signed_id}/{filename}",
              "_h_blob_redirect", auth=False, account=False, api=False),
    RouteSpec("GET", "/rails/active_storage/representations/redirect/{signed_id}/{variation}/"
              "{filename}", "_h_blob_redirect", auth=False, account=False, api=False),
    RouteSpec("GET", "/rails/active_storage/disk/{key}/{filename}", "_h_blob_serve",
              auth=False, account=False, api=False),
)


class ApiError(Exception):
    """An HTTP error answer. Raised inside handlers; the in-process helpers raise it too."""

    def __init__(self, status: int, body: Any = None, *, raw: bytes | None = None,
                 media_type: str | None = "application/json") -> None:
        super().__init__(f"{status} {body if raw is None else raw!r}")
        self.status = status
        self.body = body
        self.raw = raw
        self.media_type = media_type


def _not_found() -> ApiError:
    return ApiError(404, {"error": ERR_NOT_FOUND})


def _forbidden() -> ApiError:
    return ApiError(401, {"error": ERR_FORBIDDEN})


@dataclass(slots=True, kw_only=True)
class _Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    media_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else rails_json(self.body)


@dataclass(slots=True, kw_only=True)
class _Ctx:
    path: dict[str, str]
    params: dict[str, Any]
    files: list[FilePart]
    actor: Actor | None
    account: Account | None
    role: str | None  # the user's role in the account; None for bots

    @property
    def user(self) -> User | None:
        return self.actor if isinstance(self.actor, User) else None

    @property
    def is_admin(self) -> bool:
        return self.role == "administrator"

    @property
    def acct(self) -> Account:
        assert self.account is not None
        return self.account


class FakeChatwoot:
    """Chatwoot v4.13's Application API and webhooks, in memory, on a real loopback port.

    Seeded with account 1 ("Acme"), an administrator whose token is `token` (the bridge's user)
    and a second user, `default_agent`, the human agent of `agent_message`. Inboxes must be added
    with `add_inbox`. Ids come from separate ranges (contacts 101+, messages 10001+, ...) so a
    mixed-up id finds nothing instead of the wrong record.
    """

    def __init__(self, *, signing: Signing = True, webhook_timeout: float = 5.0,
                 timeout_hold: float = 30.0, webhook_delay: float = 0.0,
                 message_rate_limit: int = 200, message_rate_window: float = 60.0,
                 account_name: str = "Acme",
                 clock: Callable[[], float] = time.time) -> None:
        # True: v4.13 (API-inbox and account webhooks signed); "account_only": v4.12;
        # False: <= v4.11 (no signature, no X-Chatwoot-Delivery).
        self.signing: Signing = signing
        self.webhook_timeout = webhook_timeout  # WEBHOOK_TIMEOUT
        self.timeout_hold = timeout_hold  # how long an injected "timeout" holds a request
        # Rack::Attack sends no Retry-After; a proxy in front of Chatwoot (Cloudflare, an API
        # gateway) often does. Set (e.g. "2") to add it to injected 429s.
        self.retry_after: str | None = None
        self.webhook_delay = webhook_delay  # extra latency before each webhook POST
        self.message_rate_limit = message_rate_limit  # CONVERSATION_MESSAGE_PER_MINUTE_LIMIT
        # Chatwoot counts the last minute; tests shrink it (with the limit) to run in seconds.
        self.message_rate_window = message_rate_window
        self.clock = clock  # record timestamps; swap it to move time (rate limit window)
        self._account_name = account_name
        self._lock = threading.RLock()
        self._local = threading.local()  # per-thread list of webhooks deferred to after a reply
        self._stopping = threading.Event()
        self._queue: queue.Queue[_WebhookJob | None] = queue.Queue()
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._port = 0
        self._pending_replies = 0  # replies sent or sending whose webhooks are not queued yet
        # Stable across reset() so a bridge configured once keeps working.
        self.token = _token()
        self._agent_token = _token()
        self._app = Starlette(routes=self._routes())
        self._seed()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeChatwoot is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FakeChatwoot:
        if self._thread is not None:
            return self
        self._stopping.clear()
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it Nagle + delayed ACK add ~40 ms to every reply.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", access_log=False, lifespan="off",
                                ws="none", http="h11", loop="asyncio",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fake-chatwoot-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake Chatwoot did not start")
            time.sleep(0.005)
        self._worker = threading.Thread(target=self._webhook_loop, daemon=True,
                                        name=f"fake-chatwoot-webhooks-{self._port}")
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases held requests and drops undelivered webhooks
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=self.webhook_timeout + 5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._worker = self._sock = None

    def __enter__(self) -> FakeChatwoot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the seeded state: no inboxes, contacts, calls, deliveries or failure rules."""
        with self._lock:
            while True:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                except queue.Empty:
                    break
            self._seed()

    def _seed(self) -> None:
        with self._lock:
            now = self.clock()
            self._ids = {name: itertools.count(start) for name, start in (
                ("account", 1), ("user", 1), ("bot", 1), ("inbox", 1), ("channel", 1),
                ("contact", 101), ("contact_inbox", 201), ("attachment", 501),
                ("conversation", 1001), ("message", 10001), ("webhook", 1))}
            self._accounts: dict[int, Account] = {}
            self._users: dict[int, User] = {}
            self._bots: dict[int, AgentBot] = {}
            self._inboxes: dict[int, Inbox] = {}
            self._contacts: dict[int, Contact] = {}
            self._contact_inboxes: dict[int, ContactInbox] = {}
            self._conversations: dict[int, Conversation] = {}
            self._messages: dict[int, Message] = {}
            self._webhooks: dict[int, AccountWebhook] = {}
            self._attachments: dict[int, Attachment] = {}
            self._calls: list[Call] = []
            self._deliveries: list[Delivery] = []
            self._rules: list[_FailRule] = []
            self._ratio: tuple[float, tuple[FailStatus, ...], random.Random, float] | None = None
            self.internal_errors: list[str] = []  # fake bugs: the fixture fails the test on these
            account = self._new_account(self._account_name)
            self.account_id = account.id
            admin = User(id=next(self._ids["user"]), name="Ponte Admin", email="admin@acme.test",
                         access_token=self.token, roles={account.id: "administrator"},
                         created_at=now)
            agent = User(id=next(self._ids["user"]), name="Alice Agent", email="alice@acme.test",
                         access_token=self._agent_token, roles={account.id: "agent"},
                         created_at=now)
            self._users[admin.id] = admin
            self._users[agent.id] = agent
            self._admin_id, self._default_agent_id = admin.id, agent.id

    def _next(self, name: str) -> int:
        return next(self._ids[name])

    # ------------------------------------------------------------------ seeding helpers
    @property
    def admin(self) -> dict[str, Any]:
        """The administrator whose token (`token`) the bridge uses."""
        with self._lock:
            return self._user_dict(self._users[self._admin_id])

    @property
    def default_agent(self) -> dict[str, Any]:
        """The human agent `agent_message` writes as unless told otherwise."""
        with self._lock:
            return self._user_dict(self._users[self._default_agent_id])

    def add_account(self, name: str) -> dict[str, Any]:
        """Another account; the seeded users are not members of it."""
        with self._lock:
            account = self._new_account(name)
            return {"id": account.id, "name": account.name}

    def add_inbox(self, name: str = "WhatsApp", webhook_url: str | None = None, *,
                  lock_to_single_conversation: bool = False, channel_type: str = API_CHANNEL,
                  account_id: int = 1, members: Sequence[int] | None = None) -> dict[str, Any]:
        """An inbox (API channel unless told); its dict includes `secret` and `hmac_token`.

        `members`: user ids that are inbox members; default every user of the account.
        """
        with self._lock:
            account = self._account(account_id)
            inbox = self._new_inbox(account, name, channel_type=channel_type,
                                    webhook_url=webhook_url,
                                    lock_to_single_conversation=lock_to_single_conversation)
            if members is None:
                members = [u.id for u in self._users.values() if account.id in u.roles]
            inbox.member_ids.update(members)
            return self._inbox_json(inbox, admin=True)

    def update_inbox(self, inbox_id: int, **changes: Any) -> dict[str, Any]:
        """Change `webhook_url`, `lock_to_single_conversation`, `name` or `hmac_mandatory`."""
        with self._lock:
            inbox = self._inboxes[inbox_id]
            for key, value in changes.items():
                if key not in {"webhook_url", "lock_to_single_conversation", "name",
                               "hmac_mandatory"}:
                    raise TypeError(f"update_inbox: unknown field {key}")
                setattr(inbox, key, value)
            return self._inbox_json(inbox, admin=True)

    def add_agent(self, name: str, email: str, role: str = "agent", *, account_id: int = 1,
                  inbox_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """A user of the account with their own `access_token`; member of `inbox_ids` (default:
        every existing inbox of the account)."""
        with self._lock:
            account = self._account(account_id)
            user = User(id=self._next("user"), name=name, email=email.lower(),
                        access_token=_token(), roles={account.id: role}, created_at=self.clock())
            self._users[user.id] = user
            for inbox in self._inboxes.values():
                if inbox.account_id == account.id and (inbox_ids is None or inbox.id in inbox_ids):
                    inbox.member_ids.add(user.id)
            return self._user_dict(user)

    def add_agent_bot(self, name: str = "Bot", *, account_id: int = 1) -> dict[str, Any]:
        """An AgentBot with an `access_token` (bots may call only a few endpoints)."""
        with self._lock:
            bot = AgentBot(id=self._next("bot"), name=name, access_token=_token(),
                           account_id=self._account(account_id).id)
            self._bots[bot.id] = bot
            return {"id": bot.id, "name": bot.name, "access_token": bot.access_token,
                    "account_id": bot.account_id}

    def add_webhook(self, url: str, subscriptions: Sequence[str] | None = None, *,
                    account_id: int = 1, name: str = "") -> dict[str, Any]:
        """An account webhook (all inboxes, subscribed events, its own signing `secret`)."""
        with self._lock:
            hook = AccountWebhook(id=self._next("webhook"), account_id=account_id, url=url,
                                  name=name, secret=_token(),
                                  subscriptions=list(subscriptions
                                                     or DEFAULT_WEBHOOK_SUBSCRIPTIONS))
            self._webhooks[hook.id] = hook
            return self._webhook_json(hook)

    def add_contact(self, name: str = "", *, phone_number: str | None = None,
                    identifier: str | None = None, email: str | None = None,
                    custom_attributes: Mapping[str, Any] | None = None,
                    additional_attributes: Mapping[str, Any] | None = None,
                    inbox_id: int | None = None, source_id: str | None = None,
                    account_id: int = 1) -> dict[str, Any]:
        """A contact as if created in the UI; validated like POST /contacts (raises ApiError)."""
        params: dict[str, Any] = {"name": name, "phone_number": phone_number,
                                  "identifier": identifier, "email": email,
                                  "custom_attributes": dict(custom_attributes or {}),
                                  "additional_attributes": dict(additional_attributes or {})}
        with self._lock:
            account = self._account(account_id)
            inbox = self._inbox_in(account, inbox_id) if inbox_id is not None else None
            contact, _ = self._create_contact(account, params, inbox, source_id)
            return self._contact_json(contact, with_inboxes=True)

    # ------------------------------------------------------------------ UI / channel helpers
    def create_conversation_for(self, contact: int | str | Mapping[str, Any],
                                inbox: int | Mapping[str, Any], *, message: str | None = None,
                                status: str = "open", agent: UserRef = None,
                                account_id: int = 1) -> dict[str, Any]:
        """An agent starts a conversation from the UI: a new contact_inbox with a random UUID
        source_id (contract rule 8). `contact`: id, contact dict, or a phone number (found or
        created). `message`: the agent's first outgoing message."""
        with self._lock:
            account = self._account(account_id)
            box = self._inbox_in(account, inbox["id"] if isinstance(inbox, Mapping) else inbox)
            person = self._resolve_contact(account, contact)
            user = self._resolve_user(agent)
            ci = self._find_or_create_contact_inbox(person, box, str(uuid.uuid4()), conflict=500)
            conv = self._create_conversation(ci, status=status)
            if message is not None:
                self._create_message(conv, message_type=OUTGOING, sender=user, actor=user,
                                     content=message)
            return self._conversation_json(conv)

    def agent_message(self, conversation_id: int, content: str | None, *, agent: UserRef = None,
                      private: bool = False, attachments: Sequence[FileSpec] = (),
                      content_attributes: Mapping[str, Any] | None = None,
                      account_id: int = 1) -> dict[str, Any]:
        """An agent types in the UI: outgoing, sender the agent (default `default_agent`)."""
        with self._lock:
            conv = self._conversation(account_id, conversation_id)
            user = self._resolve_user(agent)
            msg = self._create_message(conv, message_type=OUTGOING, sender=user, actor=user,
                                       content=content, private=private, files=attachments,
                                       content_attributes=dict(content_attributes or {}))
            return self._message_json(msg)

    def contact_message(self, conversation_id: int, content: str | None, *,
                        attachments: Sequence[FileSpec] = (), source_id: str | None = None,
                        content_attributes: Mapping[str, Any] | None = None,
                        account_id: int = 1) -> dict[str, Any]:
        """The contact writes through the channel or widget: incoming, sender the contact."""
        with self._lock:
            conv = self._conversation(account_id, conversation_id)
            contact = self._contacts[conv.contact_id]
            msg = self._create_message(conv, message_type=INCOMING, sender=contact, actor=None,
                                       content=content, files=attachments, source_id=source_id,
                                       content_attributes=dict(content_attributes or {}))
            return self._message_json(msg)

    def template_message(self, conversation_id: int, content: str, *, content_type: str = "text",
                         content_attributes: Mapping[str, Any] | None = None,
                         account_id: int = 1) -> dict[str, Any]:
        """A message Chatwoot generates itself (greeting, out-of-office, CSAT): sender null."""
        with self._lock:
            conv = self._conversation(account_id, conversation_id)
            msg = self._create_message(conv, message_type=TEMPLATE, sender=None, actor=None,
                                       content=content, content_type=content_type,
                                       content_attributes=dict(content_attributes or {}))
            return self._message_json(msg)

    def set_status(self, conversation_id: int, status: str, *, agent: UserRef = None,
                   snoozed_until: float | None = None, account_id: int = 1) -> dict[str, Any]:
        """An agent changes the status in the UI (fires the status webhooks)."""
        with self._lock:
            conv = self._conversation(account_id, conversation_id)
            self._set_status(conv, status, actor=self._resolve_user(agent),
                             snoozed_until=snoozed_until)
            return self._conversation_json(conv)

    def agent_delete_message(self, conversation_id: int, message_id: int, *,
                             account_id: int = 1) -> dict[str, Any]:
        """An agent deletes a message in the UI: message_updated, content_attributes.deleted."""
        with self._lock:
            conv = self._conversation(account_id, conversation_id)
            msg = self._message_in(conv, message_id)
            self._soft_delete(msg)
            return self._message_json(msg)

    def delete_contact(self, contact_id: int) -> None:
        """The contact disappears with its contact_inboxes, conversations and messages."""
        with self._lock:
            self._destroy_contact(self._contacts[contact_id])

    def delete_conversation(self, conversation_id: int, *, account_id: int = 1) -> None:
        with self._lock:
            self._destroy_conversation(self._conversation(account_id, conversation_id))

    # ------------------------------------------------------------------ inspection
    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str | None, path_regex: str) -> list[Call]:
        """Recorded calls whose method matches (None: any) and whose path `re.search`es."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self._calls
                    if (method is None or c.method == method.upper()) and pattern.search(c.path)]

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def deliveries_for(self, event: str | None = None, *, url: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._deliveries
                    if (event is None or d.event == event) and (url is None or d.url == url)]

    def messages(self, conversation_id: int | None = None, *, account_id: int = 1,
                 include_activity: bool = False) -> list[dict[str, Any]]:
        """REST message objects, oldest first; activity messages only when asked for."""
        with self._lock:
            conv_id = (self._conversation(account_id, conversation_id).id
                       if conversation_id is not None else None)
            ordered = sorted(self._messages.values(), key=lambda m: m.id)
            return [self._message_json(m) for m in ordered
                    if (conv_id is None or m.conversation_id == conv_id)
                    and (include_activity or m.message_type != ACTIVITY)]

    def message(self, message_id: int) -> dict[str, Any]:
        with self._lock:
            return self._message_json(self._messages[message_id])

    @property
    def contacts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._contact_json(c, with_inboxes=True)
                    for c in sorted(self._contacts.values(), key=lambda c: c.id)]

    def contact(self, contact_id: int) -> dict[str, Any]:
        with self._lock:
            return self._contact_json(self._contacts[contact_id], with_inboxes=True)

    @property
    def conversations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._conversation_json(c)
                    for c in sorted(self._conversations.values(), key=lambda c: c.id)]

    def conversation(self, conversation_id: int, *, account_id: int = 1) -> dict[str, Any]:
        with self._lock:
            return self._conversation_json(self._conversation(account_id, conversation_id))

    @property
    def inboxes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._inbox_json(i, admin=True) for i in self._inboxes.values()]

    def attachment_bytes(self, attachment_id: int) -> bytes:
        with self._lock:
            return self._attachments[attachment_id].data

    # ------------------------------------------------------------------ failure injection
    def fail(self, path_regex: str, method: str | None = None, status: FailStatus = 500,
             times: int | None = 1, *, apply: bool = False) -> None:
        """The next `times` matching requests (None: all) fail with `status` (500, 429 ->
        text/plain "Retry later\\n", any other code, or "timeout": held `timeout_hold` seconds,
        then 504). `apply=True`: the request still takes effect (webhooks included) before the
        failure is answered, as when Chatwoot commits but the client never sees the reply."""
        with self._lock:
            self._rules.append(_FailRule(pattern=re.compile(path_regex),
                                         method=method.upper() if method else None,
                                         status=status, remaining=times, apply=apply))

    def fail_ratio(self, ratio: float, statuses: Sequence[FailStatus] = (500, 429, "timeout"),
                   seed: int | None = None, *, applied: float = 0.0) -> None:
        """Fail each /api/ request with probability `ratio`, picking from `statuses`. 0: off.
        `applied`: the share of those failures whose request still takes effect (a 500 or a
        timeout after Chatwoot committed: the client cannot tell that it worked)."""
        with self._lock:
            self._ratio = ((ratio, tuple(statuses), random.Random(seed), applied)
                           if ratio > 0 else None)

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()
            self._ratio = None

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0,
                 interval: float = 0.01) -> T:
        """Poll `predicate` until it returns something truthy and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_for_delivery(self, event: str, predicate: Callable[[Delivery], bool] | None = None,
                          timeout: float = 10.0) -> Delivery:
        """The first delivery of `event` (matching `predicate`), waiting for it if needed."""
        def found() -> list[Delivery]:
            return [d for d in self.deliveries_for(event) if predicate is None or predicate(d)]
        return self.wait_for(found, timeout)[0]

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every webhook caused so far (answered requests included) was attempted."""
        self.wait_for(lambda: self._pending_replies == 0 and self._queue.unfinished_tasks == 0,
                      timeout)

    # =================================================================== HTTP plumbing
    def _routes(self) -> list[Route]:
        routes = [Route(spec.path, self._endpoint(spec), methods=[spec.method]) for spec in ROUTES]
        # Anything else: a loud 501, so a bridge calling an endpoint the fake lacks fails visibly
        # instead of taking a plausible 404 for "deleted".
        routes.append(Route("/{path:path}", self._endpoint(None),
                            methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
        return routes

    def _endpoint(self, spec: RouteSpec | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._handle(request, spec)
        return endpoint

    async def _handle(self, request: Request, spec: RouteSpec | None) -> Response:
        call = Call(method=request.method, path=request.url.path,
                    query=dict(request.query_params), headers=dict(request.headers),
                    at=time.time())
        with self._lock:
            self._calls.append(call)
        try:
            params, call.json, call.form, call.files = await self._read(request)
        except ApiError as err:
            return self._respond(call, _Reply(status=err.status, body=err.body))
        rule = self._take_failure(call.method, call.path)
        if rule is not None:
            call.injected = str(rule.status)
            if rule.apply and spec is not None:
                _, jobs = self._dispatch(spec, request, params, call.files)
                self._enqueue(jobs)
            return await self._injected(call, rule.status)
        if spec is None:
            reply = _Reply(status=501, body={
                "error": f"fake Chatwoot: {call.method} {call.path} is not implemented"})
            return self._respond(call, reply)
        reply, jobs = self._dispatch(spec, request, params, call.files)
        if not jobs:
            return self._respond(call, reply)
        # Webhooks leave after the reply is written, from another thread: one may still reach
        # the bridge before it has read this answer, as with Chatwoot's Sidekiq jobs. Counted
        # from now so that flush_webhooks() cannot miss them.
        with self._lock:
            self._pending_replies += 1
        return self._respond(call, reply, BackgroundTask(self._enqueue_after_reply, jobs))

    def _enqueue_after_reply(self, jobs: list[_WebhookJob]) -> None:
        self._enqueue(jobs)
        with self._lock:
            self._pending_replies -= 1

    def _respond(self, call: Call, reply: _Reply,
                 background: BackgroundTask | None = None) -> Response:
        content = reply.content()
        call.status = reply.status
        if reply.raw is not None:
            call.response = reply.raw.decode("utf-8", "replace")
        else:
            call.response = copy.deepcopy(reply.body)
        return Response(content, status_code=reply.status, headers=reply.headers or None,
                        media_type=reply.media_type if content else None, background=background)

    async def _read(self, request: Request) -> tuple[dict[str, Any], Any, dict[str, str] | None,
                                                     list[FilePart]]:
        """Rails-style params: query string, then the body (JSON only with a JSON content type)."""
        params = _nest(request.query_params.multi_items())
        content_type = request.headers.get("content-type", "")
        body_json: Any = None
        form: dict[str, str] | None = None
        files: list[FilePart] = []
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            pairs: list[tuple[str, Any]] = []
            form = {}
            async with request.form(max_files=1000, max_fields=10_000,
                                    max_part_size=64 * 1024 * 1024) as data:
                for key, value in data.multi_items():
                    if isinstance(value, UploadFile):
                        blob = await value.read()
                        part = FilePart(
                            name=key, filename=value.filename or "", size=len(blob), data=blob,
                            content_type=value.content_type or "application/octet-stream")
                        files.append(part)
                        pairs.append((key, part))
                    else:
                        form[key] = value
                        pairs.append((key, value))
            params.update(_nest(pairs))
        else:
            raw = await request.body()
            if raw.strip() and "json" in content_type:
                try:
                    body_json = json.loads(raw)
                except ValueError:
                    raise ApiError(400, {"status": 400, "error": "Bad Request"}) from None
                if isinstance(body_json, dict):
                    params.update(body_json)
                else:
                    params["_json"] = body_json
        return params, body_json, form, files

    def _take_failure(self, method: str, path: str) -> _FailRule | None:
        with self._lock:
            for rule in self._rules:
                if (rule.method in (None, method) and rule.pattern.search(path)
                        and (rule.remaining is None or rule.remaining > 0)):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
            if self._ratio is not None and path.startswith("/api/"):
                ratio, statuses, rng, applied = self._ratio
                if rng.random() < ratio:
                    status = rng.choice(statuses)
                    return _FailRule(pattern=re.compile(""), method=None, status=status,
                                     remaining=None,
                                     apply=status != 429 and rng.random() < applied)
        return None

    async def _injected(self, call: Call, status: FailStatus) -> Response:
        if status == "timeout":
            deadline = time.monotonic() + self.timeout_hold
            while time.monotonic() < deadline and not self._stopping.is_set():
                await asyncio.sleep(0.02)
            page = b"<html><body><h1>504 Gateway Time-out</h1></body></html>\n"
            return self._respond(call, _Reply(status=504, raw=page, media_type="text/html"))
        if status == 429:
            # Rack::Attack's throttled answer: text/plain, no Retry-After (unless a proxy adds it).
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            return self._respond(call, _Reply(status=429, raw=b"Retry later\n",
                                              media_type="text/plain", headers=headers))
        if status == 500:
            return self._respond(call, _Reply(status=500, body=RAILS_500))
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        return self._respond(call, _Reply(status=status, body={"status": status, "error": phrase}))

    def _dispatch(self, spec: RouteSpec, request: Request, params: dict[str, Any],
                  files: list[FilePart]) -> tuple[_Reply, list[_WebhookJob]]:
        """Authenticate and run one handler atomically; collect the webhooks it caused."""
        with self._lock:
            self._local.deferred = []
            try:
                ctx = self._authenticate(spec, request, params, files)
                reply = getattr(self, spec.handler)(ctx)
                jobs: list[_WebhookJob] = self._local.deferred
            except ApiError as err:
                # Rails rolls the transaction back; the fake validates before it writes, so only
                # the webhooks need dropping.
                reply = _Reply(status=err.status, body=err.body, raw=err.raw,
                               media_type=err.media_type)
                jobs = []
            except Exception:  # a bug in the fake: answer like Rails, and fail the test later
                self.internal_errors.append(traceback.format_exc())
                reply, jobs = _Reply(status=500, body=RAILS_500), []
            finally:
                self._local.deferred = None
            return reply, jobs

    def _authenticate(self, spec: RouteSpec, request: Request, params: dict[str, Any],
                      files: list[FilePart]) -> _Ctx:
        path = {k: str(v) for k, v in request.path_params.items()}
        actor: Actor | None = None
        account: Account | None = None
        role: str | None = None
        if spec.auth:
            # Rails reads request.headers[:api_access_token] or HTTP_API_ACCESS_TOKEN, so both
            # the underscore and the dash spelling work.
            token = (request.headers.get("api_access_token")
                     or request.headers.get("api-access-token"))
            if not token:
                raise ApiError(401, {"error": ERR_NO_TOKEN})
            actor = self._actor_for(token)
            if actor is None:
                raise ApiError(401, {"error": ERR_BAD_TOKEN})
            if isinstance(actor, AgentBot) and not spec.bots:
                raise ApiError(401, {"error": ERR_BOT})
        if spec.account:
            account_id = _to_int(path.get("account_id"))
            account = self._accounts.get(account_id) if account_id is not None else None
            if account is None:
                raise _not_found()
            if isinstance(actor, User):
                role = actor.roles.get(account.id)
                if role is None:
                    raise ApiError(401, {"error": ERR_NOT_MEMBER})
            elif isinstance(actor, AgentBot) and actor.account_id != account.id:
                raise ApiError(401, {"error": ERR_NOT_MEMBER})
        return _Ctx(path=path, params=params, files=files, actor=actor, account=account, role=role)

    def _actor_for(self, token: str) -> Actor | None:
        wanted = token.encode("utf-8", "surrogateescape")
        for user in self._users.values():
            if hmac.compare_digest(user.access_token.encode(), wanted):
                return user
        for bot in self._bots.values():
            if hmac.compare_digest(bot.access_token.encode(), wanted):
                return bot
        return None

    # ------------------------------------------------------------------ lookups
    def _new_account(self, name: str) -> Account:
        account = Account(id=self._next("account"), name=name)
        self._accounts[account.id] = account
        return account

    def _new_inbox(self, account: Account, name: str, *, channel_type: str,
                   webhook_url: str | None, lock_to_single_conversation: bool = False,
                   hmac_mandatory: bool = False,
                   additional_attributes: dict[str, Any] | None = None) -> Inbox:
        inbox = Inbox(id=self._next("inbox"), account_id=account.id, name=name,
                      channel_type=channel_type, channel_id=self._next("channel"),
                      webhook_url=webhook_url, secret=_token(), hmac_token=_token(),
                      inbox_identifier=_token(), created_at=self.clock(),
                      lock_to_single_conversation=lock_to_single_conversation,
                      hmac_mandatory=hmac_mandatory,
                      additional_attributes=dict(additional_attributes or {}))
        self._inboxes[inbox.id] = inbox
        return inbox

    def _account(self, account_id: int) -> Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise _not_found()
        return account

    def _inbox_in(self, account: Account, inbox_id: Any) -> Inbox:
        inbox = self._inboxes.get(_to_int(inbox_id) or 0)
        if inbox is None or inbox.account_id != account.id:
            raise _not_found()
        return inbox

    def _contact_in(self, account: Account, contact_id: Any) -> Contact:
        contact = self._contacts.get(_to_int(contact_id) or 0)
        if contact is None or contact.account_id != account.id:
            raise _not_found()
        return contact

    def _conversation(self, account_id: int, display_id: Any) -> Conversation:
        wanted = _to_int(display_id)
        for conv in self._conversations.values():
            if conv.account_id == account_id and conv.display_id == wanted:
                return conv
        raise _not_found()

    def _message_in(self, conv: Conversation, message_id: Any) -> Message:
        msg = self._messages.get(_to_int(message_id) or 0)
        if msg is None or msg.conversation_id != conv.id:
            raise _not_found()
        return msg

    def _contact_inbox_by_source(self, inbox_id: int, source_id: str) -> ContactInbox | None:
        return next((ci for ci in self._contact_inboxes.values()
                     if ci.inbox_id == inbox_id and ci.source_id == source_id), None)

    def _resolve_user(self, ref: UserRef) -> User:
        if ref is None:
            return self._users[self._default_agent_id]
        user_id = ref["id"] if isinstance(ref, Mapping) else ref
        return self._users[int(user_id)]

    def _resolve_contact(self, account: Account, ref: int | str | Mapping[str, Any]) -> Contact:
        if isinstance(ref, Mapping):
            return self._contact_in(account, ref["id"])
        if isinstance(ref, int):
            return self._contact_in(account, ref)
        phone = ref if ref.startswith("+") else f"+{ref}"
        found = next((c for c in self._contacts.values()
                      if c.account_id == account.id and c.phone_number == phone), None)
        if found is not None:
            return found
        contact, _ = self._create_contact(account, {"name": phone, "phone_number": phone},
                                          None, None)
        return contact

    def _visible(self, ctx: _Ctx, inbox: Inbox) -> bool:
        """Agents see only inboxes they are members of; admins and the account's bots all."""
        return ctx.is_admin or isinstance(ctx.actor, AgentBot) or (
            ctx.actor is not None and ctx.actor.id in inbox.member_ids)

    def _conversation_for(self, ctx: _Ctx) -> Conversation:
        conv = self._conversation(ctx.acct.id, ctx.path["conversation_id"])
        if not self._visible(ctx, self._inboxes[conv.inbox_id]):
            raise _forbidden()
        return conv

    @staticmethod
    def _require_admin(ctx: _Ctx) -> None:
        if not ctx.is_admin:
            raise _forbidden()

    # =================================================================== serialisers
    def _user_dict(self, user: User) -> dict[str, Any]:
        account_id = next(iter(user.roles), None)
        return {"id": user.id, "name": user.name, "email": user.email,
                "role": user.roles.get(account_id) if account_id else None,
                "access_token": user.access_token, "account_id": account_id}

    @staticmethod
    def _user_push(user: User) -> dict[str, Any]:
        return {"id": user.id, "name": user.name, "available_name": user.display_name or user.name,
                "avatar_url": "", "type": "user", "availability_status": "offline",
                "thumbnail": ""}

    def _agent_json(self, user: User, account_id: int) -> dict[str, Any]:
        return {"id": user.id, "account_id": account_id, "availability_status": "offline",
                "auto_offline": True, "confirmed": True, "email": user.email,
                "provider": "email", "available_name": user.display_name or user.name,
                "name": user.name, "role": user.roles.get(account_id, "agent"), "thumbnail": "",
                "custom_role_id": None}

    def _user_model(self, user: User) -> dict[str, Any]:
        """`json.assignee @conversation.assignee`: the record itself, Devise secrets excluded."""
        return {"id": user.id, "provider": "email", "uid": user.email, "name": user.name,
                "display_name": user.display_name, "email": user.email,
                "created_at": iso(user.created_at), "updated_at": iso(user.created_at),
                "pubsub_token": user.pubsub_token, "availability": 0, "ui_settings": {},
                "custom_attributes": {}, "type": None, "message_signature": None}

    def _profile_json(self, user: User) -> dict[str, Any]:
        account_id = next(iter(user.roles), None)
        return {
            "id": user.id, "access_token": user.access_token, "account_id": account_id,
            "available_name": user.display_name or user.name, "avatar_url": "",
            "confirmed": True, "display_name": user.display_name, "message_signature": None,
            "email": user.email, "hmac_identifier": hashlib.sha256(user.email.encode()).hexdigest(),
            "inviter_id": None, "name": user.name, "provider": "email",
            "pubsub_token": user.pubsub_token,
            "role": user.roles.get(account_id) if account_id else None,
            "ui_settings": {}, "uid": user.email, "type": None, "custom_attributes": {},
            "accounts": [{"id": a, "name": self._accounts[a].name, "status": "active",
                          "active_at": None, "role": role, "permissions": [role],
                          "availability": "online", "availability_status": "offline",
                          "auto_offline": True, "custom_role_id": None, "custom_role": None}
                         for a, role in user.roles.items() if a in self._accounts],
        }

    @staticmethod
    def _bot_push(bot: AgentBot) -> dict[str, Any]:
        return {"id": bot.id, "name": bot.name, "avatar_url": "", "type": "agent_bot"}

    def _inbox_json(self, inbox: Inbox, *, admin: bool) -> dict[str, Any]:
        """app/views/api/v1/models/_inbox.json.jbuilder for the channel types the fake knows."""
        data: dict[str, Any] = {
            "id": inbox.id, "avatar_url": "", "channel_id": inbox.channel_id, "name": inbox.name,
            "channel_type": inbox.channel_type, "greeting_enabled": False,
            "greeting_message": None, "working_hours_enabled": False,
            "enable_email_collect": True, "csat_survey_enabled": False,
            "csat_response_visible": False, "enable_auto_assignment": True,
            "auto_assignment_config": {}, "out_of_office_message": None, "working_hours": [],
            "timezone": "UTC", "callback_webhook_url": None,
            "allow_messages_after_resolved": True,
            "lock_to_single_conversation": inbox.lock_to_single_conversation,
            "sender_name_type": "friendly", "business_name": None,
            # Web-widget keys are rendered with channel.try(...), so null on an API inbox.
            "widget_color": None, "website_url": None,
            "hmac_mandatory": inbox.hmac_mandatory if inbox.api else None,
            "welcome_title": None, "welcome_tagline": None, "web_widget_script": None,
            "website_token": None, "selected_feature_flags": None, "reply_time": None,
            "messaging_service_sid": None, "phone_number": None,
        }
        if inbox.api:
            if admin:
                data["hmac_token"] = inbox.hmac_token
                data["secret"] = inbox.secret
            data["webhook_url"] = inbox.webhook_url
            data["inbox_identifier"] = inbox.inbox_identifier
            data["additional_attributes"] = copy.deepcopy(inbox.additional_attributes)
        data["provider"] = None
        return data

    @staticmethod
    def _inbox_slim(inbox: Inbox) -> dict[str, Any]:
        return {"id": inbox.id, "avatar_url": "", "channel_id": inbox.channel_id,
                "name": inbox.name, "channel_type": inbox.channel_type, "provider": None}

    def _inbox_model(self, inbox: Inbox) -> dict[str, Any]:
        """`json.inbox @contact_inbox&.inbox` in contacts/create: the raw record."""
        return {"id": inbox.id, "channel_id": inbox.channel_id, "account_id": inbox.account_id,
                "name": inbox.name, "created_at": iso(inbox.created_at),
                "updated_at": iso(inbox.created_at), "channel_type": inbox.channel_type,
                "enable_auto_assignment": True, "greeting_enabled": False,
                "greeting_message": None, "email_address": None,
                "working_hours_enabled": False, "out_of_office_message": None,
                "timezone": "UTC", "enable_email_collect": True, "csat_survey_enabled": False,
                "allow_messages_after_resolved": True, "auto_assignment_config": {},
                "lock_to_single_conversation": inbox.lock_to_single_conversation,
                "portal_id": None, "sender_name_type": "friendly", "business_name": None}

    def _webhook_json(self, hook: AccountWebhook) -> dict[str, Any]:
        return {"id": hook.id, "name": hook.name, "url": hook.url, "account_id": hook.account_id,
                "subscriptions": list(hook.subscriptions), "secret": hook.secret}

    def _contact_json(self, contact: Contact, *, with_inboxes: bool) -> dict[str, Any]:
        """app/views/api/v1/models/_contact.json.jbuilder."""
        data: dict[str, Any] = {
            "additional_attributes": copy.deepcopy(contact.additional_attributes),
            "availability_status": "offline", "email": contact.email, "id": contact.id,
            "name": contact.name, "phone_number": contact.phone_number,
            "blocked": contact.blocked, "identifier": contact.identifier,
            "thumbnail": contact.thumbnail,
            "custom_attributes": copy.deepcopy(contact.custom_attributes),
        }
        if contact.last_activity_at is not None:
            data["last_activity_at"] = int(contact.last_activity_at)
        data["created_at"] = int(contact.created_at)
        if with_inboxes:
            data["contact_inboxes"] = [
                {"source_id": ci.source_id, "inbox": self._inbox_slim(self._inboxes[ci.inbox_id])}
                for ci in sorted(self._contact_inboxes.values(), key=lambda ci: ci.id)
                if ci.contact_id == contact.id]
        return data

    @staticmethod
    def _contact_push(contact: Contact) -> dict[str, Any]:
        return {"additional_attributes": copy.deepcopy(contact.additional_attributes),
                "custom_attributes": copy.deepcopy(contact.custom_attributes),
                "email": contact.email, "id": contact.id, "identifier": contact.identifier,
                "name": contact.name, "phone_number": contact.phone_number,
                "thumbnail": contact.thumbnail, "blocked": contact.blocked, "type": "contact"}

    def _contact_webhook(self, contact: Contact) -> dict[str, Any]:
        account = self._accounts[contact.account_id]
        return {"account": {"id": account.id, "name": account.name},
                "additional_attributes": copy.deepcopy(contact.additional_attributes),
                "avatar": contact.thumbnail,
                "custom_attributes": copy.deepcopy(contact.custom_attributes),
                "email": contact.email, "id": contact.id, "identifier": contact.identifier,
                "name": contact.name, "phone_number": contact.phone_number,
                "thumbnail": contact.thumbnail, "blocked": contact.blocked}

    @staticmethod
    def _contact_model(contact: Contact) -> dict[str, Any]:
        """`json.contact @conversation.contact` in the messages index: the raw record."""
        return {"id": contact.id, "name": contact.name, "email": contact.email,
                "phone_number": contact.phone_number, "account_id": contact.account_id,
                "created_at": iso(contact.created_at), "updated_at": iso(contact.updated_at),
                "additional_attributes": copy.deepcopy(contact.additional_attributes),
                "identifier": contact.identifier,
                "custom_attributes": copy.deepcopy(contact.custom_attributes),
                "last_activity_at": iso(contact.last_activity_at), "contact_type": "lead",
                "middle_name": "", "last_name": "", "location": "", "country_code": "",
                "blocked": contact.blocked, "company_id": None}

    @staticmethod
    def _contact_inbox_model(ci: ContactInbox) -> dict[str, Any]:
        return {"id": ci.id, "contact_id": ci.contact_id, "inbox_id": ci.inbox_id,
                "source_id": ci.source_id, "created_at": iso(ci.created_at),
                "updated_at": iso(ci.updated_at), "hmac_verified": ci.hmac_verified,
                "pubsub_token": ci.pubsub_token}

    def _attachment_push(self, att: Attachment) -> dict[str, Any]:
        """Attachment#push_event_data (with v4.13's content_type and extension)."""
        name = quote(att.filename or "file")
        data_url = f"{self.url}/rails/active_storage/blobs/redirect/{att.signed_id}/{name}"
        thumb_url = (f"{self.url}/rails/active_storage/representations/redirect/{att.signed_id}/"
                     f"thumb/{name}" if att.file_type == "image" else "")
        extension = att.filename.rsplit(".", 1)[1].lower() if "." in att.filename else None
        data: dict[str, Any] = {
            "id": att.id, "message_id": att.message_id, "file_type": att.file_type,
            "account_id": att.account_id, "extension": extension,
            "content_type": att.content_type, "data_url": data_url, "thumb_url": thumb_url,
            "file_size": len(att.data), "width": None, "height": None,
        }
        if att.file_type == "audio":
            data["transcribed_text"] = ""
        return data

    def _sender_push(self, msg: Message) -> dict[str, Any] | None:
        if msg.sender_type == "User" and msg.sender_id in self._users:
            return self._user_push(self._users[msg.sender_id])
        if msg.sender_type == "AgentBot" and msg.sender_id in self._bots:
            return self._bot_push(self._bots[msg.sender_id])
        if msg.sender_type == "Contact" and msg.sender_id in self._contacts:
            return self._contact_push(self._contacts[msg.sender_id])
        return None

    def _sender_webhook(self, msg: Message) -> dict[str, Any] | None:
        """`sender.try(:webhook_data)`: by type, and null for template/system messages."""
        if msg.sender_type == "User" and msg.sender_id in self._users:
            user = self._users[msg.sender_id]
            return {"id": user.id, "name": user.name, "email": user.email, "type": "user"}
        if msg.sender_type == "AgentBot" and msg.sender_id in self._bots:
            bot = self._bots[msg.sender_id]
            return {"id": bot.id, "name": bot.name, "type": "agent_bot"}
        if msg.sender_type == "Contact" and msg.sender_id in self._contacts:
            return self._contact_webhook(self._contacts[msg.sender_id])
        return None

    def _message_json(self, msg: Message, *, echo_id: Any = None) -> dict[str, Any]:
        """The REST message (app/views/api/v1/models/_message.json.jbuilder)."""
        conv = self._conversations[msg.conversation_id]
        data: dict[str, Any] = {"id": msg.id, "content": msg.content, "inbox_id": msg.inbox_id}
        if echo_id is not None:
            data["echo_id"] = echo_id
        data.update({
            "conversation_id": conv.display_id, "message_type": msg.message_type,
            "content_type": msg.content_type, "status": MESSAGE_STATUS_NAMES[msg.status],
            "content_attributes": copy.deepcopy(msg.content_attributes),
            "created_at": int(msg.created_at), "private": msg.private,
            "source_id": msg.source_id,
        })
        sender = self._sender_push(msg)
        if sender is not None:
            data["sender"] = sender
        if msg.attachments:
            data["attachments"] = [self._attachment_push(a) for a in msg.attachments]
        return data

    def _message_push(self, msg: Message) -> dict[str, Any]:
        """Message#push_event_data: the record's attributes plus conversation and sender."""
        conv = self._conversations[msg.conversation_id]
        ci = self._contact_inboxes.get(conv.contact_inbox_id)
        data: dict[str, Any] = {
            "id": msg.id, "content": msg.content, "account_id": msg.account_id,
            "inbox_id": msg.inbox_id, "conversation_id": conv.display_id,
            "message_type": msg.message_type, "created_at": int(msg.created_at),
            "updated_at": iso(msg.updated_at), "private": msg.private,
            "status": MESSAGE_STATUS_NAMES[msg.status], "source_id": msg.source_id,
            "content_type": msg.content_type,
            "content_attributes": copy.deepcopy(msg.content_attributes),
            "sender_type": msg.sender_type, "sender_id": msg.sender_id,
            "external_source_ids": {},
            "additional_attributes": copy.deepcopy(msg.additional_attributes),
            "processed_message_content": msg.content, "sentiment": {},
            "conversation": {"assignee_id": conv.assignee_id,
                             "unread_count": self._unread(conv),
                             "last_activity_at": int(conv.last_activity_at),
                             "contact_inbox": {"source_id": ci.source_id} if ci else {}},
        }
        if msg.attachments:
            data["attachments"] = [self._attachment_push(a) for a in msg.attachments]
        sender = self._sender_push(msg)
        if sender is not None:
            data["sender"] = sender
        return data

    def _message_webhook(self, msg: Message, event: str) -> dict[str, Any]:
        """Message#webhook_data merged with the event, in Ruby's key order."""
        conv = self._conversations[msg.conversation_id]
        inbox = self._inboxes[msg.inbox_id]
        account = self._accounts[msg.account_id]
        content = msg.content.replace("\\\n", "\n") if msg.content else msg.content  # v4.13
        data: dict[str, Any] = {
            "account": {"id": account.id, "name": account.name},
            "additional_attributes": copy.deepcopy(msg.additional_attributes),
            "content_attributes": copy.deepcopy(msg.content_attributes),
            "content_type": msg.content_type, "content": content,
            "conversation": self._conversation_webhook(conv),
            "created_at": iso(msg.created_at), "id": msg.id,
            "inbox": {"id": inbox.id, "name": inbox.name},
            "message_type": MESSAGE_TYPE_NAMES[msg.message_type], "private": msg.private,
            "sender": self._sender_webhook(msg), "source_id": msg.source_id,
        }
        if msg.attachments:
            data["attachments"] = [self._attachment_push(a) for a in msg.attachments]
        data["event"] = event
        return data

    def _conversation_messages(self, conv: Conversation) -> list[Message]:
        return sorted((m for m in self._messages.values() if m.conversation_id == conv.id),
                      key=lambda m: (m.created_at, m.id))

    def _unread(self, conv: Conversation) -> int:
        seen = conv.agent_last_seen_at
        return sum(1 for m in self._conversation_messages(conv)
                   if m.message_type == INCOMING and (seen is None or m.created_at > seen))

    def _conversation_json(self, conv: Conversation) -> dict[str, Any]:
        """app/views/api/v1/conversations/partials/_conversation.json.jbuilder."""
        contact = self._contacts[conv.contact_id]
        inbox = self._inboxes[conv.inbox_id]
        ci = self._contact_inboxes.get(conv.contact_inbox_id)
        meta: dict[str, Any] = {"sender": self._contact_json(contact, with_inboxes=False),
                                "channel": inbox.channel_type}
        if conv.assignee_id in self._users:
            meta["assignee"] = self._agent_json(self._users[conv.assignee_id], conv.account_id)
        meta["hmac_verified"] = ci.hmac_verified if ci else None
        messages = self._conversation_messages(conv)
        non_activity = [m for m in messages if m.message_type != ACTIVITY]
        return {
            "meta": meta, "id": conv.display_id,
            "messages": [self._message_push(messages[-1])] if messages else [],
            "account_id": conv.account_id, "uuid": conv.uuid,
            "additional_attributes": copy.deepcopy(conv.additional_attributes),
            "agent_last_seen_at": int(conv.agent_last_seen_at or 0),
            "assignee_last_seen_at": 0, "can_reply": True,
            "contact_last_seen_at": int(conv.contact_last_seen_at or 0),
            "custom_attributes": copy.deepcopy(conv.custom_attributes),
            "inbox_id": conv.inbox_id, "labels": list(conv.labels), "muted": False,
            "snoozed_until": iso(conv.snoozed_until), "status": conv.status,
            "created_at": int(conv.created_at), "timestamp": int(conv.last_activity_at),
            "first_reply_created_at": int(conv.first_reply_created_at or 0),
            "unread_count": self._unread(conv),
            "last_non_activity_message":
                self._message_push(non_activity[-1]) if non_activity else None,
            "last_activity_at": int(conv.last_activity_at), "priority": conv.priority,
            "waiting_since": int(conv.waiting_since or 0), "sla_policy_id": None,
        }

    def _conversation_webhook(self, conv: Conversation) -> dict[str, Any]:
        """Conversations::EventDataPresenter#push_data (the README's conversation object)."""
        contact = self._contacts[conv.contact_id]
        inbox = self._inboxes[conv.inbox_id]
        ci = self._contact_inboxes.get(conv.contact_inbox_id)
        assignee = self._users.get(conv.assignee_id) if conv.assignee_id else None
        chat = [m for m in self._conversation_messages(conv)
                if m.message_type != ACTIVITY and not m.private]
        return {
            "id": conv.display_id, "inbox_id": conv.inbox_id, "channel": inbox.channel_type,
            "status": conv.status, "can_reply": True,
            "contact_inbox": self._contact_inbox_model(ci) if ci else None,
            "meta": {"sender": self._contact_push(contact),
                     "assignee": self._user_push(assignee) if assignee else None,
                     "assignee_type": "User" if assignee else None, "team": None,
                     "hmac_verified": ci.hmac_verified if ci else False},
            "messages": [self._message_push(chat[-1])] if chat else [],
            "labels": list(conv.labels),
            "additional_attributes": copy.deepcopy(conv.additional_attributes),
            "custom_attributes": copy.deepcopy(conv.custom_attributes),
            "snoozed_until": iso(conv.snoozed_until), "unread_count": self._unread(conv),
            "first_reply_created_at": iso(conv.first_reply_created_at),
            "priority": conv.priority, "waiting_since": int(conv.waiting_since or 0),
            "agent_last_seen_at": int(conv.agent_last_seen_at or 0),
            "contact_last_seen_at": int(conv.contact_last_seen_at or 0),
            "last_activity_at": int(conv.last_activity_at),
            "timestamp": int(conv.last_activity_at), "created_at": int(conv.created_at),
            "updated_at": round(conv.updated_at, 6),
        }

    # =================================================================== domain operations
    def _validate_contact(self, account: Account, contact: Contact) -> None:
        """Contact's validations, in model order; 422 {"message","attributes"} like Rails."""
        errors: list[tuple[str, str]] = []
        others = [c for c in self._contacts.values()
                  if c.account_id == account.id and c.id != contact.id]
        if contact.email:
            if any(c.email and c.email.lower() == contact.email.lower() for c in others):
                errors.append(("email", "Email has already been taken"))
            if not EMAIL.match(contact.email):
                errors.append(("email", "Email Invalid email"))
        if contact.identifier and any(c.identifier == contact.identifier for c in others):
            errors.append(("identifier", "Identifier has already been taken"))
        if contact.phone_number:
            if any(c.phone_number == contact.phone_number for c in others):
                errors.append(("phone_number", "Phone number has already been taken"))
            if not E164.search(contact.phone_number):
                errors.append(("phone_number", "Phone number should be in e164 format"))
        if len(contact.name) > 255:
            errors.append(("name", "Name is too long (maximum is 255 characters)"))
        if errors:
            attributes = list(dict.fromkeys(attr for attr, _ in errors))
            raise ApiError(422, {"message": ", ".join(m for _, m in errors),
                                 "attributes": attributes})

    @staticmethod
    def _blank_to_none(value: Any) -> str | None:
        return str(value) if present(value) else None

    def _create_contact(self, account: Account, params: Mapping[str, Any], inbox: Inbox | None,
                        source_id: str | None) -> tuple[Contact, ContactInbox | None]:
        now = self.clock()
        email = self._blank_to_none(params.get("email"))
        contact = Contact(
            id=0, account_id=account.id, name=str(params.get("name") or ""),
            email=email.lower() if email else None,
            phone_number=self._blank_to_none(params.get("phone_number")),
            identifier=self._blank_to_none(params.get("identifier")),
            custom_attributes=dict(params.get("custom_attributes") or {}),
            additional_attributes=dict(params.get("additional_attributes") or {}),
            blocked=bool(cast_bool(params.get("blocked"))), created_at=now, updated_at=now)
        self._validate_contact(account, contact)
        sid: str | None = None
        if inbox is not None:
            sid = str(source_id) if present(source_id) else str(uuid.uuid4())
            if self._contact_inbox_by_source(inbox.id, sid) is not None:
                # ActiveRecord::RecordNotUnique is not rescued: 500, contact rolled back.
                raise ApiError(500, RAILS_500)
        contact.id = self._next("contact")
        self._contacts[contact.id] = contact
        self._emit("contact_created", self._contact_webhook(contact) | {"event": "contact_created"},
                   account_id=account.id, inbox=None)
        ci = (self._find_or_create_contact_inbox(contact, inbox, sid, conflict=500)
              if inbox is not None else None)
        return contact, ci

    def _find_or_create_contact_inbox(self, contact: Contact, inbox: Inbox, source_id: str | None,
                                      *, conflict: Literal[500, 422]) -> ContactInbox:
        """ContactInboxBuilder: API inboxes get a UUID; a source_id owned by someone else is
        RecordNotUnique (a 500, or 422 "source_id should be unique" in conversations#create)."""
        sid = source_id if present(source_id) else str(uuid.uuid4())
        assert sid is not None
        existing = self._contact_inbox_by_source(inbox.id, sid)
        if existing is not None:
            if existing.contact_id == contact.id:
                return existing
            if conflict == 422:
                raise ApiError(422, {"error": ERR_SOURCE_ID})
            raise ApiError(500, RAILS_500)
        now = self.clock()
        ci = ContactInbox(id=self._next("contact_inbox"), contact_id=contact.id,
                          inbox_id=inbox.id, source_id=sid, created_at=now, updated_at=now)
        self._contact_inboxes[ci.id] = ci
        return ci

    def _update_contact(self, contact: Contact, params: Mapping[str, Any]) -> None:
        before = self._contact_webhook(contact)
        candidate = copy.deepcopy(contact)
        if "name" in params:
            candidate.name = str(params.get("name") or "")
        if "email" in params:
            email = self._blank_to_none(params.get("email"))
            candidate.email = email.lower() if email else None
        for key in ("phone_number", "identifier"):
            if key in params:
                setattr(candidate, key, self._blank_to_none(params.get(key)))
        if "blocked" in params:
            candidate.blocked = bool(cast_bool(params.get("blocked")))
        # contacts_controller#contact_update_params: both attribute hashes are merged, not replaced.
        if isinstance(params.get("custom_attributes"), Mapping):
            candidate.custom_attributes = {**contact.custom_attributes,
                                           **params["custom_attributes"]}
        if isinstance(params.get("additional_attributes"), Mapping):
            candidate.additional_attributes = {**contact.additional_attributes,
                                               **params["additional_attributes"]}
        self._validate_contact(self._accounts[contact.account_id], candidate)
        avatar_url = params.get("avatar_url")
        if isinstance(avatar_url, str) and avatar_url.startswith(("http://", "https://")):
            # Avatar::AvatarFromUrlJob downloads it later; the fake shows it at once.
            contact.thumbnail = avatar_url
        changes = [(k, before[k], v) for k, v in self._contact_webhook(candidate).items()
                   if k in {"name", "email", "phone_number", "identifier", "blocked",
                            "custom_attributes", "additional_attributes"} and before[k] != v]
        if not changes:
            return
        previous_update = contact.updated_at
        for name in ("name", "email", "phone_number", "identifier", "blocked",
                     "custom_attributes", "additional_attributes"):
            setattr(contact, name, getattr(candidate, name))
        contact.updated_at = self.clock()
        changes.append(("updated_at", iso(previous_update), iso(contact.updated_at)))
        self._emit_contact_updated(contact, changes)

    def _emit_contact_updated(self, contact: Contact, changes: list[tuple[str, Any, Any]]) -> None:
        payload = self._contact_webhook(contact) | {
            "event": "contact_updated",
            "changed_attributes": [{k: {"previous_value": old, "current_value": new}}
                                   for k, old, new in changes]}
        self._emit("contact_updated", payload, account_id=contact.account_id, inbox=None)

    def _destroy_contact(self, contact: Contact) -> None:
        for conv in [c for c in self._conversations.values() if c.contact_id == contact.id]:
            self._destroy_conversation(conv)
        for ci_id in [ci.id for ci in self._contact_inboxes.values()
                      if ci.contact_id == contact.id]:
            del self._contact_inboxes[ci_id]
        del self._contacts[contact.id]

    def _destroy_conversation(self, conv: Conversation) -> None:
        for msg in self._conversation_messages(conv):
            for att in msg.attachments:
                self._attachments.pop(att.id, None)
            del self._messages[msg.id]
        del self._conversations[conv.id]

    def _create_conversation(self, ci: ContactInbox, *, status: str | None = None,
                             assignee_id: Any = None,
                             additional_attributes: Mapping[str, Any] | None = None,
                             custom_attributes: Mapping[str, Any] | None = None,
                             snoozed_until: float | None = None) -> Conversation:
        inbox = self._inboxes[ci.inbox_id]
        account = self._accounts[inbox.account_id]
        status = status or "open"
        if status not in CONVERSATION_STATUSES:
            raise ApiError(422, {"error": f"'{status}' is not a valid status"})
        assignee = _to_int(assignee_id)
        if assignee not in self._users or account.id not in self._users[assignee].roles:
            assignee = None
        now = self.clock()
        conv = Conversation(
            id=self._next("conversation"), display_id=account.next_display_id,
            uuid=str(uuid.uuid4()), account_id=account.id, inbox_id=inbox.id,
            contact_id=ci.contact_id, contact_inbox_id=ci.id, status=status, created_at=now,
            updated_at=now, last_activity_at=now,
            waiting_since=now,  # Conversation#ensure_waiting_since (before_create)
            assignee_id=assignee,
            snoozed_until=snoozed_until if status == "snoozed" else None,
            additional_attributes=dict(additional_attributes or {}),
            custom_attributes=dict(custom_attributes or {}))
        account.next_display_id += 1
        self._conversations[conv.id] = conv
        self._emit("conversation_created", self._conversation_webhook(conv) | {
            "event": "conversation_created"}, account_id=account.id, inbox=inbox)
        return conv

    def _set_status(self, conv: Conversation, status: str, *, actor: Actor | None,
                    snoozed_until: float | None = None) -> None:
        """Status change with its side effects: conversation_status_changed (changed_attributes
        null, as Chatwoot reads it after commit), conversation_updated and an activity message."""
        if status not in CONVERSATION_STATUSES:
            raise ApiError(422, {"error": f"'{status}' is not a valid status"})
        new_snooze = snoozed_until if status == "snoozed" else None
        changes: list[tuple[str, Any, Any]] = []
        if conv.status != status:
            changes.append(("status", conv.status, status))
        if conv.snoozed_until != new_snooze:
            changes.append(("snoozed_until", iso(conv.snoozed_until), iso(new_snooze)))
        if not changes:
            return
        status_changed = conv.status != status
        previous_update = conv.updated_at
        conv.status, conv.snoozed_until = status, new_snooze
        conv.updated_at = self.clock()
        changes.append(("updated_at", iso(previous_update), iso(conv.updated_at)))
        inbox = self._inboxes[conv.inbox_id]
        if status_changed:
            self._emit("conversation_status_changed", self._conversation_webhook(conv) | {
                "event": "conversation_status_changed", "changed_attributes": None},
                account_id=conv.account_id, inbox=inbox)
            if actor is not None and status in STATUS_ACTIVITY:
                self._activity(conv, STATUS_ACTIVITY[status].format(name=actor.name))
        self._emit_conversation_updated(conv, changes)

    def _emit_conversation_updated(self, conv: Conversation,
                                   changes: list[tuple[str, Any, Any]]) -> None:
        if not any(key in CONVERSATION_UPDATE_KEYS for key, _, _ in changes):
            return
        payload = self._conversation_webhook(conv) | {
            "event": "conversation_updated",
            "changed_attributes": [{k: {"previous_value": old, "current_value": new}}
                                   for k, old, new in changes]}
        self._emit("conversation_updated", payload, account_id=conv.account_id,
                   inbox=self._inboxes[conv.inbox_id])

    def _assign(self, conv: Conversation, user: User) -> None:
        if conv.assignee_id == user.id:
            return
        previous, previous_update = conv.assignee_id, conv.updated_at
        conv.assignee_id = user.id
        conv.updated_at = self.clock()
        self._emit_conversation_updated(conv, [("assignee_id", previous, user.id),
                                               ("updated_at", iso(previous_update),
                                                iso(conv.updated_at))])

    def _activity(self, conv: Conversation, content: str) -> None:
        """An activity message: listed by the API, never sent as a webhook."""
        now = self.clock()
        msg = Message(id=self._next("message"), account_id=conv.account_id,
                      inbox_id=conv.inbox_id, conversation_id=conv.id, message_type=ACTIVITY,
                      content=content, content_type="text", content_attributes={},
                      private=False, status=SENT, source_id=None, sender_type=None,
                      sender_id=None, created_at=now, updated_at=now)
        self._messages[msg.id] = msg
        conv.last_activity_at = now

    def _create_message(self, conv: Conversation, *, message_type: int,
                        sender: User | AgentBot | Contact | None, actor: Actor | None,
                        content: str | None, private: bool = False, content_type: str = "text",
                        content_attributes: dict[str, Any] | None = None,
                        source_id: str | None = None, files: Sequence[FileSpec] = ()) -> Message:
        """Message creation with Chatwoot's validations and after-commit side effects."""
        if len(files) > MAX_ATTACHMENTS:
            raise ApiError(422, {"error": "Validation failed: Attachments exceeded the maximum "
                                          f"of {MAX_ATTACHMENTS} per message"})
        errors: list[str] = []
        if content is not None and len(content) > MAX_CONTENT_LENGTH:
            errors.append(f"Content is too long (maximum is {MAX_CONTENT_LENGTH} characters)")
        now = self.clock()
        recent = sum(1 for m in self._messages.values()
                     if m.conversation_id == conv.id
                     and m.created_at >= now - self.message_rate_window)
        if recent >= self.message_rate_limit:
            errors.append("Too many messages")
        if errors:
            raise ApiError(422, {"error": "Validation failed: " + ", ".join(errors)})
        attrs = dict(content_attributes or {})
        if present(attrs.get("in_reply_to")) or present(attrs.get("in_reply_to_external_id")):
            # Messages::InReplyToMessageBuilder: look up in this conversation, rewrite both keys.
            target: Message | None = None
            if present(attrs.get("in_reply_to")):
                wanted = _to_int(attrs.get("in_reply_to"))
                target = next((m for m in self._conversation_messages(conv) if m.id == wanted),
                              None)
            else:
                wanted_sid = str(attrs.get("in_reply_to_external_id"))
                target = next((m for m in self._conversation_messages(conv)
                               if m.source_id == wanted_sid), None)
            attrs["in_reply_to_external_id"] = target.source_id if target else None
            attrs["in_reply_to"] = target.id if target else None
        sender_type = {User: "User", AgentBot: "AgentBot", Contact: "Contact"}.get(
            type(sender)) if sender is not None else None
        msg = Message(id=self._next("message"), account_id=conv.account_id,
                      inbox_id=conv.inbox_id, conversation_id=conv.id,
                      message_type=message_type, content=content, content_type=content_type,
                      content_attributes=attrs, private=private, status=SENT,
                      source_id=source_id, sender_type=sender_type,
                      sender_id=sender.id if sender is not None else None, created_at=now,
                      updated_at=now)
        for filename, data, part_type in files:
            att = Attachment(id=self._next("attachment"), message_id=msg.id,
                             account_id=conv.account_id, file_type=file_type_for(part_type),
                             # ActiveStorage keeps the bare MIME type.
                             content_type=part_type.split(";")[0].strip().lower(),
                             filename=filename, data=bytes(data))
            msg.attachments.append(att)
            self._attachments[att.id] = att
        self._messages[msg.id] = msg
        conv.updated_at = now  # belongs_to :conversation, touch: true
        # Message#execute_after_create_commit_callbacks, in order.
        if message_type == INCOMING and conv.status in ("resolved", "snoozed"):
            self._set_status(conv, "open", actor=actor if isinstance(actor, User) else None)
        conv.last_activity_at = now
        if message_type != ACTIVITY:
            self._emit("message_created", self._message_webhook(msg, "message_created"),
                       account_id=conv.account_id, inbox=self._inboxes[conv.inbox_id],
                       message_id=msg.id)
        self._after_message_created(conv, msg)
        if isinstance(sender, Contact):
            previous = sender.last_activity_at
            sender.last_activity_at = now
            previous_update, sender.updated_at = sender.updated_at, now
            self._emit_contact_updated(sender, [("last_activity_at", iso(previous), iso(now)),
                                                ("updated_at", iso(previous_update), iso(now))])
        return msg

    def _after_message_created(self, conv: Conversation, msg: Message) -> None:
        """First reply and waiting_since bookkeeping (Message#dispatch_create_events)."""
        human_reply = msg.message_type == OUTGOING and msg.sender_type == "User"
        changes: list[tuple[str, Any, Any]] = []
        if human_reply and not msg.private and conv.first_reply_created_at is None and sum(
                1 for m in self._conversation_messages(conv)
                if m.message_type == OUTGOING and m.sender_type != "AgentBot"
                and not m.private) <= 1:
            changes.append(("first_reply_created_at", None, iso(msg.created_at)))
            conv.first_reply_created_at = msg.created_at
            if conv.waiting_since is not None:
                changes.append(("waiting_since", iso(conv.waiting_since), None))
                conv.waiting_since = None
        elif human_reply and not msg.private and conv.waiting_since is not None:
            changes.append(("waiting_since", iso(conv.waiting_since), None))
            conv.waiting_since = None
        elif msg.message_type == INCOMING and conv.waiting_since is None:
            changes.append(("waiting_since", None, iso(msg.created_at)))
            conv.waiting_since = msg.created_at
        if changes:
            previous_update = conv.updated_at
            conv.updated_at = self.clock()
            changes.append(("updated_at", iso(previous_update), iso(conv.updated_at)))
            self._emit_conversation_updated(conv, changes)

    def _update_message_status(self, msg: Message, status: Any, external_error: Any) -> None:
        """Messages::StatusUpdateService: unknown statuses and read->delivered are ignored;
        external_error is kept only for "failed"."""
        if not isinstance(status, str) or status not in MESSAGE_STATUSES:
            return
        if msg.status == READ and status == "delivered":
            return
        attrs = dict(msg.content_attributes)
        attrs["external_error"] = external_error if status == "failed" else None
        new_status = MESSAGE_STATUSES[status]
        if new_status == msg.status and attrs == msg.content_attributes:
            return  # no previous_changes: Chatwoot sends no message_updated
        msg.status, msg.content_attributes = new_status, attrs
        msg.updated_at = self.clock()
        self._emit_message_updated(msg)

    def _soft_delete(self, msg: Message) -> None:
        msg.content = DELETED_CONTENT
        msg.content_type = "text"
        msg.content_attributes = {"deleted": True}
        for att in msg.attachments:
            self._attachments.pop(att.id, None)
        msg.attachments = []
        msg.updated_at = self.clock()
        self._emit_message_updated(msg)

    def _emit_message_updated(self, msg: Message) -> None:
        if msg.message_type == ACTIVITY:
            return
        conv = self._conversations[msg.conversation_id]
        self._emit("message_updated", self._message_webhook(msg, "message_updated"),
                   account_id=conv.account_id, inbox=self._inboxes[conv.inbox_id],
                   message_id=msg.id)

    # =================================================================== webhooks
    def _emit(self, event: str, payload: dict[str, Any], *, account_id: int, inbox: Inbox | None,
              message_id: int | None = None) -> None:
        """Queue one delivery per API-inbox webhook and per subscribed account webhook
        (webhook_listener.rb). Inside a request they wait until the reply is sent."""
        jobs: list[_WebhookJob] = []
        if inbox is not None and inbox.api and inbox.webhook_url and event in API_INBOX_EVENTS:
            jobs.append(_WebhookJob(url=inbox.webhook_url, kind="api_inbox", secret=inbox.secret,
                                    event=event, payload=copy.deepcopy(payload),
                                    message_id=message_id))
        for hook in self._webhooks.values():
            if hook.account_id == account_id and event in hook.subscriptions:
                jobs.append(_WebhookJob(url=hook.url, kind="account", secret=hook.secret,
                                        event=event, payload=copy.deepcopy(payload),
                                        message_id=message_id))
        deferred: list[_WebhookJob] | None = getattr(self._local, "deferred", None)
        if deferred is not None:
            deferred.extend(jobs)
        else:
            self._enqueue(jobs)

    def _enqueue(self, jobs: Iterable[_WebhookJob]) -> None:
        for job in jobs:
            self._queue.put(job)

    def _webhook_loop(self) -> None:
        # One sender thread: deliveries go out in the order they were caused, which keeps tests
        # deterministic (Chatwoot's Sidekiq gives no order guarantee at all).
        with httpx.Client(follow_redirects=False, trust_env=False) as client:
            while True:
                job = self._queue.get()
                try:
                    if job is None:
                        return
                    if self._stopping.is_set():
                        continue
                    if self.webhook_delay:
                        time.sleep(self.webhook_delay)
                    self._deliver(client, job)
                except Exception:
                    self.internal_errors.append(traceback.format_exc())
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, job: _WebhookJob) -> None:
        """lib/webhooks/trigger.rb: one POST, WEBHOOK_TIMEOUT, no redirects, no retry."""
        body = rails_json(job.payload)
        delivery_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "rest-client/2.1.0 (linux x86_64) ruby/3.4.4p34"}
        if self.signing is not False:  # v4.12+
            headers["X-Chatwoot-Delivery"] = delivery_id
            signed = self.signing is True or job.kind == "account"
            if signed and job.secret:
                timestamp = str(int(time.time()))
                digest = hmac.new(job.secret.encode(), timestamp.encode() + b"." + body,
                                  hashlib.sha256).hexdigest()
                headers["X-Chatwoot-Timestamp"] = timestamp
                headers["X-Chatwoot-Signature"] = f"sha256={digest}"
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        answer = b""
        try:
            response = client.post(job.url, content=body, headers=headers,
                                   timeout=self.webhook_timeout)
            status, answer = response.status_code, response.content
            if not 200 <= status < 300:
                # RestClient raises for anything else, redirects included (POST is not followed).
                error = f"{status} {response.reason_phrase}".strip()
        except httpx.ConnectTimeout:
            error = "Timed out connecting to server"
        except httpx.TimeoutException:
            error = "Timed out reading data from server"
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        record = Delivery(id=delivery_id, url=job.url, kind=job.kind, event=job.event,
                          payload=job.payload, body=body, headers=headers, status=status,
                          error=error, response_body=answer, at=time.time(),
                          duration=time.monotonic() - started)
        with self._lock:
            self._deliveries.append(record)
            if (error is not None and job.kind == "api_inbox" and job.message_id is not None
                    and job.event in FAILURE_MARKING_EVENTS):
                msg = self._messages.get(job.message_id)
                if msg is not None:
                    self._update_message_status(msg, "failed", error)

    # =================================================================== handlers
    def _h_profile(self, ctx: _Ctx) -> _Reply:
        assert isinstance(ctx.actor, User)
        return _Reply(body=self._profile_json(ctx.actor))

    # --- inboxes
    def _h_inboxes_index(self, ctx: _Ctx) -> _Reply:
        inboxes = [i for i in self._inboxes.values()
                   if i.account_id == ctx.acct.id and self._visible(ctx, i)]
        return _Reply(body={"payload": [self._inbox_json(i, admin=ctx.is_admin) for i in inboxes]})

    def _visible_inbox(self, ctx: _Ctx, inbox_id: Any) -> Inbox:
        inbox = self._inbox_in(ctx.acct, inbox_id)
        if not self._visible(ctx, inbox):
            raise _forbidden()
        return inbox

    def _h_inboxes_show(self, ctx: _Ctx) -> _Reply:
        inbox = self._visible_inbox(ctx, ctx.path["id"])
        return _Reply(body=self._inbox_json(inbox, admin=ctx.is_admin))

    def _h_inboxes_create(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        params = ctx.params
        raw_channel = params.get("channel")
        channel: Mapping[str, Any] = raw_channel if isinstance(raw_channel, Mapping) else {}
        if channel.get("type") != "api":
            raise ApiError(422, {"error": "fake Chatwoot creates only channel type 'api' "
                                          f"(got {channel.get('type')!r})"})
        if not present(params.get("name")):
            raise ApiError(422, {"message": "Name can't be blank", "attributes": ["name"]})
        inbox = self._new_inbox(
            ctx.acct, str(params["name"]), channel_type=API_CHANNEL,
            webhook_url=self._blank_to_none(channel.get("webhook_url")),
            lock_to_single_conversation=bool(cast_bool(params.get("lock_to_single_conversation"))),
            hmac_mandatory=bool(cast_bool(channel.get("hmac_mandatory"))),
            additional_attributes=channel.get("additional_attributes") or {})
        return _Reply(body=self._inbox_json(inbox, admin=True))

    def _h_inboxes_update(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        inbox = self._inbox_in(ctx.acct, ctx.path["id"])
        params = ctx.params
        if present(params.get("name")):
            inbox.name = str(params["name"])
        if "lock_to_single_conversation" in params:
            inbox.lock_to_single_conversation = bool(
                cast_bool(params["lock_to_single_conversation"]))
        channel = params.get("channel")
        if isinstance(channel, Mapping) and inbox.api:
            if "webhook_url" in channel:
                inbox.webhook_url = self._blank_to_none(channel["webhook_url"])
            if "hmac_mandatory" in channel:
                inbox.hmac_mandatory = bool(cast_bool(channel["hmac_mandatory"]))
            if isinstance(channel.get("additional_attributes"), Mapping):
                inbox.additional_attributes = dict(channel["additional_attributes"])
        return _Reply(body=self._inbox_json(inbox, admin=True))

    def _h_inboxes_reset_secret(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        inbox = self._inbox_in(ctx.acct, ctx.path["id"])
        if not inbox.api:
            raise ApiError(422, {"error": "Secret reset is only available for API inboxes"})
        inbox.secret = _token()
        return _Reply(body=self._inbox_json(inbox, admin=True))

    # --- agents and account webhooks
    def _h_agents_index(self, ctx: _Ctx) -> _Reply:
        users = [u for u in sorted(self._users.values(), key=lambda u: u.id)
                 if ctx.acct.id in u.roles]
        return _Reply(body=[self._agent_json(u, ctx.acct.id) for u in users])

    def _h_agents_create(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        params = ctx.params
        email = str(params.get("email") or "").strip().lower()
        role = str(params.get("role") or "agent")
        if not EMAIL.match(email):
            raise ApiError(422, {"message": "Email is invalid", "attributes": ["email"]})
        if role not in ("agent", "administrator"):
            raise ApiError(422, {"error": f"'{role}' is not a valid role"})
        user = next((u for u in self._users.values() if u.email == email), None)
        if user is not None and ctx.acct.id in user.roles:
            raise ApiError(422, {"message": "Email has already been taken",
                                 "attributes": ["email"]})
        if user is None:
            user = User(id=self._next("user"), name=str(params.get("name") or email), email=email,
                        access_token=_token(), roles={}, created_at=self.clock())
            self._users[user.id] = user
        user.roles[ctx.acct.id] = role
        return _Reply(body=self._agent_json(user, ctx.acct.id))

    def _h_webhooks_index(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        hooks = [self._webhook_json(h) for h in self._webhooks.values()
                 if h.account_id == ctx.acct.id]
        return _Reply(body={"payload": {"webhooks": hooks}})

    def _h_webhooks_create(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        nested = ctx.params.get("webhook")  # accepted wrapped or flat
        params: Mapping[str, Any] = nested if isinstance(nested, Mapping) else ctx.params
        url = str(params.get("url") or "")
        if not re.match(r"https?://", url):
            raise ApiError(422, {"message": "Url is invalid", "attributes": ["url"]})
        subscriptions = params.get("subscriptions") or list(DEFAULT_WEBHOOK_SUBSCRIPTIONS)
        hook = AccountWebhook(id=self._next("webhook"), account_id=ctx.acct.id, url=url,
                              name=str(params.get("name") or ""), secret=_token(),
                              subscriptions=[str(s) for s in subscriptions])
        self._webhooks[hook.id] = hook
        return _Reply(body={"payload": {"webhook": self._webhook_json(hook)}})

    # --- contacts
    @staticmethod
    def _contact_order(contact: Contact) -> tuple[bool, float, int]:
        # Most recent activity first, contacts never active last, then oldest id first.
        return (contact.last_activity_at is None, -(contact.last_activity_at or 0.0), contact.id)

    def _h_contacts_search(self, ctx: _Ctx) -> _Reply:
        query = ctx.params.get("q")
        if not present(query):
            raise ApiError(422, {"error": ERR_NO_Q})
        pattern = f"%{str(query).strip()}%"
        found = sorted((c for c in self._contacts.values()
                        if c.account_id == ctx.acct.id and (
                            like(pattern, c.name, case_insensitive=True)
                            or like(pattern, c.email, case_insensitive=True)
                            or like(pattern, c.phone_number, case_insensitive=True)
                            or like(pattern, c.identifier, case_insensitive=False))),
                       key=self._contact_order)
        raw_page = ctx.params.get("page")
        page = max(_to_int(raw_page) or 1, 1)
        window = found[(page - 1) * CONTACTS_PER_PAGE: page * CONTACTS_PER_PAGE + 1]
        has_more = len(window) > CONTACTS_PER_PAGE
        window = window[:CONTACTS_PER_PAGE]
        with_inboxes = str(ctx.params.get("include_contact_inboxes", "true")) == "true"
        # `@current_page = params[:page] || 1`: the raw string when given; count is this page's.
        return _Reply(body={
            "meta": {"count": len(window), "current_page": raw_page if raw_page else 1,
                     "has_more": has_more},
            "payload": [self._contact_json(c, with_inboxes=with_inboxes) for c in window]})

    def _h_contacts_filter(self, ctx: _Ctx) -> _Reply:
        conditions = ctx.params.get("payload")
        if not isinstance(conditions, list) or not conditions:
            raise ApiError(500, RAILS_500)  # FilterService calls .each on nil
        checks: list[tuple[Callable[[Contact], bool], str | None]] = []
        for cond in conditions:
            if not isinstance(cond, Mapping):
                raise ApiError(500, RAILS_500)
            checks.append((self._filter_condition(cond), cond.get("query_operator")))
        groups: list[list[Callable[[Contact], bool]]] = [[]]
        for index, (check, _) in enumerate(checks):
            if index > 0 and str(checks[index - 1][1] or "and").upper() == "OR":
                groups.append([])
            groups[-1].append(check)
        # Contacts::FilterService starts from resolved_contacts: email, phone or identifier set.
        found = sorted((c for c in self._contacts.values()
                        if c.account_id == ctx.acct.id
                        and (c.email or c.phone_number or c.identifier)
                        and any(all(check(c) for check in group) for group in groups)),
                       key=self._contact_order)
        raw_page = ctx.params.get("page")
        page = max(_to_int(raw_page) or 1, 1)
        window = found[(page - 1) * CONTACTS_PER_PAGE: page * CONTACTS_PER_PAGE]
        return _Reply(body={
            "meta": {"count": len(found), "current_page": raw_page if raw_page else 1},
            "payload": [self._contact_json(c, with_inboxes=True) for c in window]})

    @staticmethod
    def _filter_condition(cond: Mapping[str, Any]) -> Callable[[Contact], bool]:
        key = cond.get("attribute_key")
        operator = cond.get("filter_operator")
        query_operator = cond.get("query_operator")
        if key not in ("name", "email", "phone_number", "identifier"):
            raise ApiError(422, {"error": f"Invalid attribute key - [{key}]"})
        if operator not in ("equal_to", "not_equal_to", "contains", "does_not_contain"):
            raise ApiError(422, {"error": f"Invalid filter operator - [{operator}]"})
        if query_operator is not None and str(query_operator).upper() not in ("AND", "OR"):
            raise ApiError(422, {"error": f"Invalid query operator - [{query_operator}]"})
        values = cond.get("values")
        first = values[0] if isinstance(values, list) and values else values
        # Contacts::FilterService#filter_values uses the first value only; phone numbers get
        # "+" + the value without its pluses, everything else is downcased (against LOWER(col)).
        value: str | None
        if first is None:
            value = None
        elif operator in ("equal_to", "not_equal_to") and key == "phone_number":
            value = f"+{str(first).replace('+', '')}"
        else:
            value = str(first).lower()

        def check(contact: Contact) -> bool:
            raw: str | None = getattr(contact, key)
            if raw is None or value is None:
                return False  # SQL NULL compares to nothing
            column = raw.lower()
            if operator == "equal_to":
                return column == value
            if operator == "not_equal_to":
                return column != value
            matched = like(f"%{value}%", column, case_insensitive=False)
            return matched if operator == "contains" else not matched
        return check

    def _h_contact_inboxes_filter(self, ctx: _Ctx) -> _Reply:
        inbox = self._inbox_in(ctx.acct, ctx.params.get("inbox_id"))
        ci = self._contact_inbox_by_source(inbox.id, str(ctx.params.get("source_id")))
        if ci is None:
            return _Reply(status=404)  # `head :not_found`: an empty body
        return _Reply(body=self._contact_json(self._contacts[ci.contact_id], with_inboxes=True))

    def _h_contacts_create(self, ctx: _Ctx) -> _Reply:
        params = ctx.params
        # contacts#create looks the inbox up without an authorize (contact_inboxes#create does).
        inbox = (self._inbox_in(ctx.acct, params["inbox_id"])
                 if present(params.get("inbox_id")) else None)
        contact, ci = self._create_contact(ctx.acct, params, inbox, params.get("source_id"))
        return _Reply(body={"payload": {
            "contact": self._contact_json(contact, with_inboxes=False),
            "contact_inbox": {"inbox": self._inbox_model(inbox) if inbox else None,
                              "source_id": ci.source_id if ci else None}}})

    def _h_contacts_show(self, ctx: _Ctx) -> _Reply:
        contact = self._contact_in(ctx.acct, ctx.path["id"])
        return _Reply(body={"payload": self._contact_json(contact, with_inboxes=True)})

    def _h_contacts_update(self, ctx: _Ctx) -> _Reply:
        contact = self._contact_in(ctx.acct, ctx.path["id"])
        self._update_contact(contact, ctx.params)
        return _Reply(body={"payload": self._contact_json(contact, with_inboxes=True)})

    def _h_contact_merge(self, ctx: _Ctx) -> _Reply:
        """ContactMergeAction: the base keeps its values and takes the mergee's where it has
        none; the mergee's contact_inboxes, conversations and messages move to the base; the
        mergee is deleted (app/actions/contact_merge_action.rb)."""
        base_id, mergee_id = ctx.params.get("base_contact_id"), ctx.params.get("mergee_contact_id")
        if not present(base_id) or not present(mergee_id):
            raise ApiError(422, {"error": "base_contact_id and mergee_contact_id are required"})
        base = self._contact_in(ctx.acct, base_id)
        mergee = self._contact_in(ctx.acct, mergee_id)
        if base.id == mergee.id:
            raise ApiError(400, {"error": "contacts are the same"})
        for ci in self._contact_inboxes.values():
            if ci.contact_id == mergee.id:
                ci.contact_id = base.id
        for conv in self._conversations.values():
            if conv.contact_id == mergee.id:
                conv.contact_id = base.id
        for msg in self._messages.values():
            if msg.sender_type == "Contact" and msg.sender_id == mergee.id:
                msg.sender_id = base.id
        # The mergee is gone before the base takes its unique values (identifier, phone...).
        del self._contacts[mergee.id]
        for attr in ("email", "phone_number", "identifier"):
            if not getattr(base, attr) and getattr(mergee, attr):
                setattr(base, attr, getattr(mergee, attr))
        base.custom_attributes = {**mergee.custom_attributes, **base.custom_attributes}
        base.additional_attributes = {**mergee.additional_attributes,
                                      **base.additional_attributes}
        base.updated_at = self.clock()
        return _Reply(body=self._contact_json(base, with_inboxes=False))

    def _h_contacts_destroy(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        self._destroy_contact(self._contact_in(ctx.acct, ctx.path["id"]))
        return _Reply(status=200)  # head :ok

    def _h_contacts_avatar_destroy(self, ctx: _Ctx) -> _Reply:
        contact = self._contact_in(ctx.acct, ctx.path["id"])
        contact.thumbnail = ""
        return _Reply(body={"payload": self._contact_json(contact, with_inboxes=True)})

    def _h_contact_inboxes_create(self, ctx: _Ctx) -> _Reply:
        contact = self._contact_in(ctx.acct, ctx.path["id"])
        inbox = self._visible_inbox(ctx, ctx.params.get("inbox_id"))
        sid = ctx.params.get("source_id")
        ci = self._find_or_create_contact_inbox(contact, inbox, str(sid) if present(sid) else None,
                                                conflict=500)
        return _Reply(body={"source_id": ci.source_id, "inbox": self._inbox_slim(inbox)})

    def _h_contacts_conversations(self, ctx: _Ctx) -> _Reply:
        contact = self._contact_in(ctx.acct, ctx.path["id"])
        convs = sorted((c for c in self._conversations.values()
                        if c.contact_id == contact.id
                        and self._visible(ctx, self._inboxes[c.inbox_id])),
                       key=lambda c: (-c.last_activity_at, -c.id))[:CONTACT_CONVERSATIONS_LIMIT]
        return _Reply(body={"payload": [self._conversation_json(c) for c in convs]})

    # --- conversations
    def _h_conversations_index(self, ctx: _Ctx) -> _Reply:
        params = ctx.params
        status = str(params.get("status") or "open")
        inbox_id = _to_int(params.get("inbox_id"))
        source_id = params.get("source_id")
        convs = [c for c in self._conversations.values()
                 if c.account_id == ctx.acct.id
                 and self._visible(ctx, self._inboxes[c.inbox_id])
                 and (status == "all" or c.status == status)
                 and (inbox_id is None or c.inbox_id == inbox_id)
                 and (not present(source_id)
                      or self._contact_inboxes[c.contact_inbox_id].source_id == str(source_id))]
        me = ctx.actor.id if isinstance(ctx.actor, User) else None
        counts = {"mine_count": sum(1 for c in convs if me is not None and c.assignee_id == me),
                  "assigned_count": sum(1 for c in convs if c.assignee_id is not None),
                  "unassigned_count": sum(1 for c in convs if c.assignee_id is None),
                  "all_count": len(convs)}
        assignee_type = params.get("assignee_type")
        if assignee_type == "me":
            convs = [c for c in convs if me is not None and c.assignee_id == me]
        elif assignee_type == "unassigned":
            convs = [c for c in convs if c.assignee_id is None]
        elif assignee_type == "assigned":
            convs = [c for c in convs if c.assignee_id is not None]
        convs.sort(key=lambda c: (-c.last_activity_at, -c.id))
        page = max(_to_int(params.get("page")) or 1, 1)
        window = convs[(page - 1) * CONVERSATIONS_PER_PAGE: page * CONVERSATIONS_PER_PAGE]
        return _Reply(body={"data": {"meta": counts,
                                     "payload": [self._conversation_json(c) for c in window]}})

    def _h_conversations_create(self, ctx: _Ctx) -> _Reply:
        params = ctx.params
        if present(params.get("contact_id")) and present(params.get("inbox_id")):
            contact = self._contact_in(ctx.acct, params["contact_id"])
            inbox = self._inbox_in(ctx.acct, params["inbox_id"])
            sid = params.get("source_id")
            ci = self._find_or_create_contact_inbox(
                contact, inbox, str(sid) if present(sid) else None, conflict=422)
        else:
            # The legacy lookup: source_id alone, in any inbox (ContactInbox.find_by!).
            wanted = str(params.get("source_id"))
            found = next((ci for ci in sorted(self._contact_inboxes.values(), key=lambda x: x.id)
                          if ci.source_id == wanted), None)
            if found is None:
                raise _not_found()
            ci = found
            inbox = self._inboxes[ci.inbox_id]
        if not self._visible(ctx, inbox):
            raise _forbidden()
        message = params.get("message") if isinstance(params.get("message"), Mapping) else None
        if message is not None:
            # Validate before writing: Rails would roll the conversation back with the message.
            self._message_args(ctx, None, message, [], inbox)
            if len(str(message.get("content") or "")) > MAX_CONTENT_LENGTH:
                raise ApiError(422, {"error": "Validation failed: Content is too long (maximum "
                                              f"is {MAX_CONTENT_LENGTH} characters)"})
        existing = None
        if inbox.lock_to_single_conversation:
            mine = [c for c in self._conversations.values() if c.contact_inbox_id == ci.id]
            existing = max(mine, key=lambda c: (c.created_at, c.id)) if mine else None
        if existing is not None:
            conv = existing
        else:
            snooze = _to_int(params.get("snoozed_until"))
            conv = self._create_conversation(
                ci, status=str(params["status"]) if present(params.get("status")) else None,
                assignee_id=params.get("assignee_id"),
                additional_attributes=params.get("additional_attributes")
                if isinstance(params.get("additional_attributes"), Mapping) else None,
                custom_attributes=params.get("custom_attributes")
                if isinstance(params.get("custom_attributes"), Mapping) else None,
                snoozed_until=float(snooze) if snooze is not None else None)
        if message is not None:
            kwargs = self._message_args(ctx, conv, message, [], inbox)
            self._create_message(conv, **kwargs)
        return _Reply(body=self._conversation_json(conv))

    def _h_conversations_show(self, ctx: _Ctx) -> _Reply:
        return _Reply(body=self._conversation_json(self._conversation_for(ctx)))

    def _h_conversations_destroy(self, ctx: _Ctx) -> _Reply:
        self._require_admin(ctx)
        self._destroy_conversation(self._conversation_for(ctx))
        return _Reply(status=200)

    def _h_conversations_toggle_status(self, ctx: _Ctx) -> _Reply:
        conv = self._conversation_for(ctx)
        status = ctx.params.get("status")
        if present(status):
            snooze = _to_int(ctx.params.get("snoozed_until"))
            self._set_status(conv, str(status), actor=ctx.actor,
                             snoozed_until=float(snooze) if snooze is not None else None)
        else:
            self._set_status(conv, "resolved" if conv.status == "open" else "open",
                             actor=ctx.actor)
        # Reopening with an agent-role token self-assigns the conversation.
        if conv.status == "open" and isinstance(ctx.actor, User) and ctx.role == "agent":
            self._assign(conv, ctx.actor)
        return _Reply(body={"meta": {}, "payload": {
            "success": True, "conversation_id": conv.display_id,
            "current_status": conv.status, "snoozed_until": iso(conv.snoozed_until)}})

    # --- messages
    def _h_messages_index(self, ctx: _Ctx) -> _Reply:
        conv = self._conversation_for(ctx)
        messages = self._conversation_messages(conv)
        after = _to_int(ctx.params.get("after")) if present(ctx.params.get("after")) else None
        before = _to_int(ctx.params.get("before")) if present(ctx.params.get("before")) else None
        if after is not None and before is not None:
            window = [m for m in messages if after <= m.id < before][:1000]
        elif before is not None:
            window = [m for m in messages if m.id < before][-MESSAGES_LATEST:]
        elif after is not None:
            window = [m for m in messages if m.id > after][:MESSAGES_AFTER]
        else:
            window = messages[-MESSAGES_LATEST:]
        assignee = self._users.get(conv.assignee_id) if conv.assignee_id else None
        return _Reply(body={
            "meta": {"labels": list(conv.labels),
                     "additional_attributes": copy.deepcopy(conv.additional_attributes),
                     "contact": self._contact_model(self._contacts[conv.contact_id]),
                     "assignee": self._user_model(assignee) if assignee else None,
                     "agent_last_seen_at": iso(conv.agent_last_seen_at),
                     "assignee_last_seen_at": None},
            "payload": [self._message_json(m) for m in window]})

    def _message_args(self, ctx: _Ctx, conv: Conversation | None, params: Mapping[str, Any],
                      files: list[FilePart], inbox: Inbox) -> dict[str, Any]:
        """Messages::MessageBuilder's reading of params (JSON or multipart)."""
        raw_type = params.get("message_type")
        if raw_type is None:
            message_type = OUTGOING  # `params[:message_type] || 'outgoing'`
        elif isinstance(raw_type, int) and raw_type in MESSAGE_TYPE_NAMES:
            message_type = raw_type
        elif isinstance(raw_type, str) and raw_type in MESSAGE_TYPES:
            message_type = MESSAGE_TYPES[raw_type]
        else:
            raise ApiError(422, {"error": f"'{raw_type}' is not a valid message_type"})
        if raw_type == "incoming" and not inbox.api:
            raise ApiError(422, {"error": ERR_INCOMING_NOT_API})
        content_type = params.get("content_type") or "text"
        if content_type not in CONTENT_TYPES:
            raise ApiError(422, {"error": f"'{content_type}' is not a valid content_type"})
        raw_attrs = params.get("content_attributes")
        if isinstance(raw_attrs, str):
            try:  # multipart sends it as a JSON string; unparsable means {}
                parsed = json.loads(raw_attrs)
            except ValueError:
                parsed = {}
            attrs = parsed if isinstance(parsed, dict) else {}
        elif isinstance(raw_attrs, Mapping):
            attrs = dict(raw_attrs)
        else:
            attrs = {}
        if params.get("external_created_at") is not None:
            attrs["external_created_at"] = params["external_created_at"]
        if message_type == OUTGOING:
            sender: User | AgentBot | Contact | None = ctx.actor
            if params.get("sender_type") == "AgentBot":
                bot = self._bots.get(_to_int(params.get("sender_id")) or 0)
                if bot is not None and bot.account_id == inbox.account_id:
                    sender = bot
        else:
            sender = self._contacts[conv.contact_id] if conv is not None else None
        content = params.get("content")
        source_id = params.get("source_id")
        if len(files) > MAX_ATTACHMENTS:
            raise ApiError(422, {"error": "Validation failed: Attachments exceeded the maximum "
                                          f"of {MAX_ATTACHMENTS} per message"})
        return {"message_type": message_type, "sender": sender, "actor": ctx.actor,
                "content": None if content is None else str(content),
                "private": bool(cast_bool(params.get("private"))),
                "content_type": content_type, "content_attributes": attrs,
                "source_id": None if source_id is None else str(source_id),
                "files": [(f.filename, f.data, f.content_type) for f in files]}

    def _h_messages_create(self, ctx: _Ctx) -> _Reply:
        conv = self._conversation_for(ctx)
        files = [f for f in ctx.files if f.name in ("attachments[]", "attachments")]
        kwargs = self._message_args(ctx, conv, ctx.params, files, self._inboxes[conv.inbox_id])
        msg = self._create_message(conv, **kwargs)
        return _Reply(body=self._message_json(msg, echo_id=ctx.params.get("echo_id")))

    def _h_messages_update(self, ctx: _Ctx) -> _Reply:
        conv = self._conversation_for(ctx)
        if not self._inboxes[conv.inbox_id].api:
            raise ApiError(403, {"error": ERR_STATUS_NOT_API})
        msg = self._message_in(conv, ctx.path["message_id"])
        self._update_message_status(msg, ctx.params.get("status"),
                                    ctx.params.get("external_error"))
        return _Reply(body=self._message_json(msg))

    def _h_messages_destroy(self, ctx: _Ctx) -> _Reply:
        conv = self._conversation_for(ctx)
        msg = self._message_in(conv, ctx.path["message_id"])
        self._soft_delete(msg)
        return _Reply(body=self._message_json(msg))

    # --- ActiveStorage
    def _h_blob_redirect(self, ctx: _Ctx) -> _Reply:
        att = next((a for a in self._attachments.values()
                    if a.signed_id == ctx.path["signed_id"]), None)
        if att is None:
            raise ApiError(404, raw=b"", media_type=None)
        location = f"{self.url}/rails/active_storage/disk/{att.key}/{quote(att.filename or 'file')}"
        return _Reply(status=302, raw=b"", media_type=None, headers={"location": location})

    def _h_blob_serve(self, ctx: _Ctx) -> _Reply:
        att = next((a for a in self._attachments.values() if a.key == ctx.path["key"]), None)
        if att is None:
            raise ApiError(404, raw=b"", media_type=None)
        disposition = "inline" if att.file_type in ("image", "video", "audio") else "attachment"
        return _Reply(raw=att.data, media_type=att.content_type, headers={
            "content-disposition": f'{disposition}; filename="{att.filename}"'})


@pytest.fixture
def fake_chatwoot() -> Iterator[FakeChatwoot]:
    """A started FakeChatwoot with fresh state; fails the test if the fake itself crashed."""
    with FakeChatwoot() as fake:
        yield fake
        errors = list(fake.internal_errors)
    assert not errors, "fake Chatwoot crashed:\n" + "\n".join(errors)
