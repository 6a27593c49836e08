"""The seam: golden lines against the JSON Schema, and the Python decoder against both."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bridge.errors import ProtocolError
from bridge.sidecar.protocol import (
    PROTOCOL_VERSION,
    ConnectionEvent,
    LogoutCommand,
    MarkReadCommand,
    MessageEvent,
    Quote,
    RevokeCommand,
    SendMediaCommand,
    SendTextCommand,
    ShutdownCommand,
    UnknownEventType,
    decode_event,
    encode_command,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "protocol"
SCHEMA = json.loads((ROOT / "docs" / "protocol.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
COMMAND_TYPES = {"send_text", "send_media", "revoke", "mark_read", "logout", "shutdown"}


def lines(name: str) -> list[str]:
    return [line for line in (GOLDEN / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("line", lines("events.jsonl") + lines("commands.jsonl"))
def test_golden_line_matches_schema(line: str) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(json.loads(line))]
    assert errors == []


@pytest.mark.parametrize("line", lines("invalid.jsonl"))
def test_invalid_golden_line_is_refused_by_schema(line: str) -> None:
    assert not VALIDATOR.is_valid(json.loads(line))


@pytest.mark.parametrize("line", lines("events.jsonl"))
def test_decoder_accepts_every_golden_event(line: str) -> None:
    event = decode_event(line.encode())
    assert event.type == json.loads(line)["type"]


@pytest.mark.parametrize("line", [
    line for line in lines("invalid.jsonl")
    if isinstance(json.loads(line), list) or json.loads(line).get("type") not in COMMAND_TYPES
])
def test_decoder_refuses_invalid_events(line: str) -> None:
    with pytest.raises(ProtocolError):
        decode_event(line.encode())


def test_decoder_refuses_garbage_with_a_reason() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_event(b"Opening session: SessionEntry {")
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decode_event(b"[1, 2]")
    with pytest.raises(UnknownEventType):
        decode_event(b'{"type":"teleport"}')
    with pytest.raises(ProtocolError, match="state"):
        decode_event(b'{"type":"connection","state":"half-open"}')


def test_decoder_ignores_fields_a_newer_sidecar_adds() -> None:
    event = decode_event(b'{"type":"connection","state":"connecting","rtt_ms":12}')
    assert isinstance(event, ConnectionEvent) and event.state == "connecting"


def test_message_event_keeps_baileys_json_untouched() -> None:
    line = next(x for x in lines("events.jsonl") if '"messageSecret"' in x)
    event = decode_event(line.encode())
    assert isinstance(event, MessageEvent)
    assert event.message == json.loads(line)["message"]


@pytest.mark.parametrize("command", [
    SendTextCommand(id="c1", jid="5511988887777@s.whatsapp.net", text="Olá"),
    SendTextCommand(id="c4", jid="5511988887777@s.whatsapp.net", text="Sim",
                    quote=Quote(id="3EB0A", from_me=False, text="Sai hoje?")),
    SendMediaCommand(id="c5", jid="5511988887777@s.whatsapp.net", path="/spool/1-7/out-1.ogg",
                     mimetype="audio/ogg; codecs=opus", kind="audio", ptt=True),
    RevokeCommand(id="c6", jid="5511988887777@s.whatsapp.net", message_id="3EB0B"),
    MarkReadCommand(id="c7", jid="5511988887777@s.whatsapp.net", message_ids=["3EB0C"]),
    LogoutCommand(id="c2"),
    ShutdownCommand(id="c3"),
])
def test_encoded_commands_match_schema(command: SendTextCommand) -> None:
    line = encode_command(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert VALIDATOR.is_valid(json.loads(line))


def test_protocol_version_matches_schema_and_docs() -> None:
    assert PROTOCOL_VERSION == 1
    assert "version 1" in (ROOT / "docs" / "protocol.md").read_text().splitlines()[0]


def test_media_carries_a_path_or_an_error_never_both() -> None:
    media = [x for x in lines("events.jsonl") if '"media"' in x]
    assert {type(decode_event(x.encode())).__name__ for x in media} == {"MessageEvent"}
    both = next(x for x in lines("invalid.jsonl") if '"media"' in x)
    with pytest.raises(ProtocolError, match="media"):
        decode_event(both.encode())
