"""THE seam: the sidecar protocol v1 (docs/protocol.md), the only module that sees raw lines.

One pydantic model per frame, discriminated on `type`. Events come from the sidecar's stdout,
commands go to its stdin. `decode_event` raises ProtocolError for anything that is not a valid
event; the caller logs, counts and keeps reading.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.errors import ProtocolError

PROTOCOL_VERSION = 1
# The longest `send_text` the protocol carries (the schema's maxLength), in code points as
# pydantic counts a str; longer agent replies are split before they get here (convert/split.py).
TEXT_MAX_CHARS = 65536

CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Frame(BaseModel):
    # Newer sidecars may add optional fields; a receiver ignores what it does not know.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Me(Frame):
    """The linked account as Baileys reports it (`id` carries a device suffix)."""

    id: str = Field(min_length=1)
    lid: str | None = None
    name: str | None = None


class WaMessageKeyModel(Frame):
    """Baileys' WAMessageKey, with v7's alternate addresses."""

    remoteJid: str = Field(min_length=1)
    fromMe: bool
    id: str = Field(min_length=1)
    participant: str | None = None
    remoteJidAlt: str | None = None
    participantAlt: str | None = None
    addressingMode: str | None = None


class ReadyEvent(Frame):
    """First frame of every sidecar process: Baileys is loaded, this is the protocol it speaks."""

    type: Literal["ready"]
    protocol: int = Field(ge=1)
    sidecar: str
    baileys: str
    pid: int = Field(ge=1)


class QrEvent(Frame):
    """A new QR reference for the phone to scan (carries pairing secrets: never log it)."""

    type: Literal["qr"]
    qr: str = Field(min_length=1)


class PairingCodeEvent(Frame):
    """The code to type on the phone, instead of QR codes (PONTE_PAIRING_PHONE set)."""

    type: Literal["pairing_code"]
    code: str = Field(pattern=r"^[A-Z0-9]{8}$")
    phone: str = Field(pattern=r"^[0-9]{8,15}$")


class ConnectionEvent(Frame):
    """The WhatsApp connection changed state (Baileys `connection.update`)."""

    type: Literal["connection"]
    state: Literal["connecting", "open", "close"]
    status_code: int | None = None
    reason: str | None = None
    message: str | None = None
    me: Me | None = None
    is_new_login: bool = False
    will_reconnect: bool = False

    @model_validator(mode="before")
    @classmethod
    def _required_by_state(cls, data: Any) -> Any:
        # Mirrors the schema's if/then: `open` names the account, `close` says why.
        if isinstance(data, dict):
            if data.get("state") == "open" and not data.get("me"):
                raise ValueError("an open connection must carry `me`")
            if data.get("state") == "close":
                missing = [k for k in ("status_code", "reason", "will_reconnect") if k not in data]
                if missing:
                    raise ValueError(f"a close must carry {', '.join(missing)}")
        return data


class MediaInfo(Frame):
    """A media message's file in the sidecar's spool, or why there is none."""

    path: str | None = None
    mimetype: str
    size: int | None = None
    file_name: str | None = None
    error: Literal["too_large", "download_failed"] | None = None
    message: str | None = None

    @model_validator(mode="after")
    def _path_xor_error(self) -> MediaInfo:
        if (self.path is None) == (self.error is None):
            raise ValueError("media carries either `path` or `error`")
        return self


class MessageEvent(Frame):
    """A message arrived, or was sent from the phone or by us (Baileys `messages.upsert`)."""

    type: Literal["message"]
    upsert: Literal["notify", "append"]
    key: WaMessageKeyModel
    content_type: str | None
    echo: bool
    message: dict[str, Any]  # Baileys' own WAMessage JSON, untouched
    media: MediaInfo | None = None
    chat_name: str | None = None  # a group's subject


class LidMappingEvent(Frame):
    """A LID and a phone number are the same person (Baileys `lid-mapping.update`)."""

    type: Literal["lid_mapping"]
    lid: str = Field(pattern=r"^[0-9]+@lid$")
    pn: str = Field(pattern=r"^[0-9]+@s\.whatsapp\.net$")


class MessageStatusEvent(Frame):
    """What WhatsApp says happened to a message (Baileys `messages.update` status)."""

    type: Literal["message_status"]
    key: WaMessageKeyModel
    status: Literal["error", "pending", "server_ack", "delivered", "read", "played"]


class ResultError(Frame):
    code: str
    message: str


class ResultEvent(Frame):
    """The answer to the command with the same id."""

    type: Literal["result"]
    id: CommandId
    ok: bool
    data: dict[str, Any] | None = None
    error: ResultError | None = None

    @model_validator(mode="after")
    def _data_xor_error(self) -> ResultEvent:
        if self.ok != (self.data is not None) or self.ok == (self.error is not None):
            raise ValueError("ok:true carries `data` only, ok:false carries `error` only")
        return self


class FatalEvent(Frame):
    """The sidecar cannot run this instance (exits 78 right after); do not restart it."""

    type: Literal["fatal"]
    code: str
    message: str


SidecarEvent = (ReadyEvent | QrEvent | PairingCodeEvent | ConnectionEvent | MessageEvent
                | LidMappingEvent | MessageStatusEvent | ResultEvent | FatalEvent)
# Discriminated on `type`: the decoder looks the model up, then validates against it alone.
_EVENTS: dict[str, type[SidecarEvent]] = {
    "ready": ReadyEvent, "qr": QrEvent, "pairing_code": PairingCodeEvent,
    "connection": ConnectionEvent, "message": MessageEvent, "lid_mapping": LidMappingEvent,
    "message_status": MessageStatusEvent, "result": ResultEvent, "fatal": FatalEvent,
}
EVENT_TYPES = frozenset(_EVENTS)


class Command(Frame):
    id: CommandId


class Quote(Frame):
    """The message a send answers; `text` is shown when the phone no longer has it."""

    id: str
    from_me: bool
    participant: str | None = None
    text: str | None = None


class SendTextCommand(Command):
    """Send a text message to a chat."""

    type: Literal["send_text"] = "send_text"
    jid: str
    text: str = Field(min_length=1, max_length=TEXT_MAX_CHARS)
    quote: Quote | None = None


class SendMediaCommand(Command):
    """Send a file from the media spool."""

    type: Literal["send_media"] = "send_media"
    jid: str
    path: str
    mimetype: str
    kind: Literal["image", "video", "audio", "document", "sticker"]
    file_name: str | None = None
    caption: str | None = None
    ptt: bool = False
    quote: Quote | None = None


class RevokeCommand(Command):
    """Delete a message this number sent, for everyone."""

    type: Literal["revoke"] = "revoke"
    jid: str
    message_id: str


class MarkReadCommand(Command):
    """Send read receipts for the customer's messages."""

    type: Literal["mark_read"] = "mark_read"
    jid: str
    message_ids: list[str] = Field(min_length=1, max_length=100)
    participant: str | None = None


class LogoutCommand(Command):
    """Unlink the device; the connection then closes with 401."""

    type: Literal["logout"] = "logout"


class ShutdownCommand(Command):
    """Finish auth writes, close without unlinking, exit 0."""

    type: Literal["shutdown"] = "shutdown"


class ProfilePictureCommand(Command):
    """The chat's current profile picture URL (or null)."""

    type: Literal["profile_picture"] = "profile_picture"
    jid: str


SidecarCommand = (SendTextCommand | SendMediaCommand | RevokeCommand | MarkReadCommand
                  | ProfilePictureCommand | LogoutCommand | ShutdownCommand)


class UnknownEventType(ProtocolError):
    """A well-formed frame of a type this bridge does not know (a newer sidecar)."""


MAX_FRAME_DEPTH = 128
"""Objects and arrays inside each other in one frame. Baileys' message JSON nests about a dozen
deep (a quoted message inside contextInfo adds a few); past this a line is refused rather than
handed to code that recurses (pydantic, the converters, json.dumps), whose limit is ~1,000."""


def _refuse_constant(name: str) -> Any:
    # JSON.stringify writes null for NaN and Infinity: these come from no sidecar.
    raise ProtocolError(f"not JSON: {name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):  # 1e400: no JavaScript number is that large
        raise ProtocolError(f"not JSON: the number {literal[:40]} is out of range")
    return value


def _sound(raw: dict[str, Any], line: bytes) -> None:
    """Refuse nesting past MAX_FRAME_DEPTH; replace lone UTF-16 surrogates by U+FFFD, in place.

    JSON.stringify writes a JavaScript string's unpaired surrogate as an escape (`\\ud83d`),
    and Python decodes it into a str that no encoder (Redis, httpx, the log) accepts; a text cut
    in the middle of an emoji is still the customer's message, so it is kept, that half shown
    as U+FFFD. Iterative, and skipped when the line cannot hold either (most lines)."""
    surrogates = b"\\ud" in line or b"\\uD" in line  # the only way one can reach the str
    if not surrogates and line.count(b"[") + line.count(b"{") <= MAX_FRAME_DEPTH:
        return
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(raw, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_FRAME_DEPTH:
            raise ProtocolError(f"nested deeper than {MAX_FRAME_DEPTH} levels")
        if isinstance(container, dict):
            if surrogates and any(_lone_surrogate(k) for k in container):
                fixed = {_unpaired_replaced(k): v for k, v in container.items()}
                container.clear()
                container.update(fixed)
            items: Any = container.items()
        else:
            items = enumerate(container)
        for key, value in items:
            if isinstance(value, dict | list):
                stack.append((value, depth + 1))
            elif surrogates and isinstance(value, str) and _lone_surrogate(value):
                container[key] = _unpaired_replaced(value)


def _lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unpaired_replaced(text: str) -> str:
    # Through UTF-16, where an unpaired surrogate is a decoding error: "replace" makes it U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decode_event(line: bytes) -> SidecarEvent:
    """Parse one stdout line into an event; raises ProtocolError (never returns garbage)."""
    try:
        # Strictly UTF-8, as the protocol says: json.loads(bytes) would also take UTF-16/32,
        # and let UTF-8-encoded surrogates through.
        raw = json.loads(line.decode("utf-8"), parse_constant=_refuse_constant,
                         parse_float=_finite_float)
    except UnicodeDecodeError as err:
        raise ProtocolError(f"not UTF-8 JSON: {err.reason} at byte {err.start}") from err
    except RecursionError:
        raise ProtocolError(f"nested deeper than {MAX_FRAME_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, and int() refusing 4,300+ digits
        raise ProtocolError(f"not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise ProtocolError(f"not a JSON object but {type(raw).__name__}")
    _sound(raw, line)
    kind = raw.get("type")
    model = _EVENTS.get(kind) if isinstance(kind, str) else None
    if model is None:  # the type as sent, cut: the reason is logged
        raise UnknownEventType(f"unknown event type {repr(kind)[:60]}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])[:80] or "frame"
        raise ProtocolError(f"invalid {kind} event: {where}: {first['msg']}") from err


def encode_command(command: SidecarCommand) -> bytes:
    """One command as a protocol line (compact JSON, UTF-8, newline-terminated)."""
    return command.model_dump_json(exclude_none=True).encode() + b"\n"
