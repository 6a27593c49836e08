"""Converters against the golden cases (tests/golden/to_chatwoot/<content_type>/<case>.json).

Each case is `{name, event, expected}`: a protocol `message` frame built from Baileys' own
protobuf classes by tests/golden/make_golden.mjs, and the draft Ponte must make of it
(`expected: {"ignored": true}` = IgnoreEvent). Texts are pt_BR unless the case has `language`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.convert.to_chatwoot import CONVERTERS, convert
from bridge.convert.to_chatwoot.contact import parse_vcard
from bridge.convert.to_chatwoot.media import human_size
from bridge.errors import IgnoreEvent
from bridge.ids import InstanceId
from bridge.sidecar.protocol import MessageEvent, decode_event
from bridge.texts import EN, PT_BR, Language, texts_for

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "to_chatwoot"
SCHEMA = jsonschema.Draft202012Validator(
    json.loads((ROOT / "docs" / "protocol.schema.json").read_text()))
NOW = 1764411300 + 120  # two minutes after the cases' WhatsApp timestamp
OLD_MINUTES = 60
CASES = sorted(GOLDEN.glob("*/*.json"))


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def context(language: Language = "pt_BR") -> ConvertContext:
    return ConvertContext(instance_id=InstanceId("1-7"), texts=texts_for(language), now=NOW,
                          old_message_minutes=OLD_MINUTES)


def as_json(draft: ChatwootDraft) -> dict[str, Any]:
    """The draft in the golden files' form."""
    return {
        "content": draft.content,
        "content_attributes": draft.content_attributes,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size,
                         "path": str(a.path)} for a in draft.attachments],
        "reply_to": draft.reply_to and {"wa_message_id": draft.reply_to.wa_message_id,
                                        "excerpt": draft.reply_to.excerpt},
        "private": draft.private,
        "poll": draft.poll and {"question": draft.poll.question,
                                "options": list(draft.poll.options),
                                "secret_b64": draft.poll.secret_b64,
                                "selectable": draft.poll.selectable},
        "poll_vote": draft.poll_vote and {
            "poll_wa_message_id": draft.poll_vote.poll_wa_message_id,
            "poll_creator_jid": draft.poll_vote.poll_creator_jid,
            "voter_jid": draft.poll_vote.voter_jid,
            "enc_payload_b64": draft.poll_vote.enc_payload_b64,
            "enc_iv_b64": draft.poll_vote.enc_iv_b64,
            "voter_is_me": draft.poll_vote.voter_is_me},
    }


def outcome(event: MessageEvent, ctx: ConvertContext) -> dict[str, Any]:
    try:
        return as_json(convert(event, ctx))
    except IgnoreEvent:
        return {"ignored": True}


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_golden_case(path: Path) -> None:
    case = load(path)
    event = MessageEvent.model_validate(case["event"])
    assert event.content_type == (None if path.parent.name == "null" else path.parent.name)
    assert outcome(event, context(case.get("language", "pt_BR"))) == case["expected"], case["name"]


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_golden_event_is_a_valid_frame(path: Path) -> None:
    frame = load(path)["event"]
    assert [e.message for e in SCHEMA.iter_errors(frame)] == []
    assert decode_event(json.dumps(frame).encode()).type == "message"


def test_every_kind_in_the_table_has_a_golden_case() -> None:
    covered = {path.parent.name for path in CASES}
    assert set(CONVERTERS) - covered == set()


def test_conversion_does_not_depend_on_the_language_but_for_texts() -> None:
    # The same case in both languages differs only where a sentence of texts.py is used.
    event = MessageEvent.model_validate(load(GOLDEN / "conversation" / "plain.json")["event"])
    assert convert(event, context("en")) == convert(event, context("pt_BR"))


# --- malformed input: never an exception, at worst the placeholder -------------------------------

def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield path + (index,)
            yield from leaves(item, path + (index,))


def replaced(frame: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    frame = copy.deepcopy(frame)
    target: Any = frame["message"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return frame


ODD_VALUES: tuple[Any, ...] = (None, 7, -1.5, True, "", "x", [], {}, [None],
                               {"type": "Buffer", "data": 3})


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_any_field_of_any_shape_gives_a_draft_or_a_skip(path: Path) -> None:
    case = load(path)
    frame = case["event"]
    for where in leaves(frame["message"]):
        if where[0] == "key":
            continue  # the key is validated by the protocol model, not read from here
        for odd in ODD_VALUES:
            event = MessageEvent.model_validate(replaced(frame, where, odd))
            try:
                draft = convert(event, context())
            except IgnoreEvent:
                continue
            assert isinstance(draft.content, str), (where, odd)
            assert draft.content or draft.attachments or draft.poll_vote, (where, odd)


def frame_with(content: dict[str, Any], content_type: str | None, **extra: Any) -> MessageEvent:
    key = {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": False,
           "id": "3EB0BAD0000000000001"}
    return MessageEvent.model_validate({
        "type": "message", "upsert": "notify", "key": key, "content_type": content_type,
        "echo": False, "message": {"key": key, "messageTimestamp": 1764411300, **extra,
                                   "message": content}})


@pytest.mark.parametrize(("content_type", "content"), [
    ("locationMessage", {"locationMessage": {"name": "sem coordenadas"}}),
    ("locationMessage", {"locationMessage": {"degreesLatitude": 123.0, "degreesLongitude": 0}}),
    ("reactionMessage", {"reactionMessage": {"text": "👍"}}),
    ("pollUpdateMessage", {"pollUpdateMessage": {"pollCreationMessageKey": {"id": "X"}}}),
    ("pollCreationMessageV3", {"pollCreationMessageV3": {"name": "só pergunta"}}),
    ("contactsArrayMessage", {"contactsArrayMessage": {"contacts": "nope"}}),
    ("imageMessage", {"imageMessage": "not an object"}),
    ("protocolMessage", {"protocolMessage": {"type": 14, "key": {"id": "X"}}}),
    ("listResponseMessage", {"listResponseMessage": {}}),
])
def test_malformed_kind_becomes_the_unreadable_placeholder(content_type: str,
                                                           content: dict[str, Any]) -> None:
    draft = convert(frame_with(content, content_type), context())
    assert draft.content == PT_BR.unreadable_message.format(kind=content_type)
    assert draft.content_attributes == {"ponte_kind": content_type}


def test_content_type_the_message_does_not_have_falls_back_to_what_it_has() -> None:
    draft = convert(frame_with({"conversation": "oi"}, "imageMessage"), context())
    assert draft.content == "oi"


def test_old_message_check_is_off_without_now_or_minutes() -> None:
    event = frame_with({"conversation": "oi"}, "conversation")
    instance = InstanceId("1-7")
    assert convert(event, ConvertContext(instance_id=instance, texts=PT_BR)).content == "oi"
    assert convert(event, ConvertContext(instance_id=instance, texts=PT_BR,
                                         now=NOW + 10**6)).content == "oi"


def test_empty_texts_are_skipped() -> None:
    with pytest.raises(IgnoreEvent):
        convert(frame_with({"conversation": "   "}, "conversation"), context())
    with pytest.raises(IgnoreEvent):
        convert(frame_with({"extendedTextMessage": {"text": ""}}, "extendedTextMessage"),
                context())


@pytest.mark.parametrize(("size", "pt", "en"), [
    (None, "tamanho desconhecido", "unknown size"),
    (0, "0 B", "0 B"),
    (1023, "1023 B", "1023 B"),
    (1536, "1,5 KB", "1.5 KB"),
    (48213, "47 KB", "47 KB"),
    (2621440, "2,5 MB", "2.5 MB"),
    (3 * 1024**3, "3,0 GB", "3.0 GB"),
])
def test_human_size(size: int | None, pt: str, en: str) -> None:
    assert human_size(size, PT_BR) == pt
    assert human_size(size, EN) == en


def test_vcard_folding_escapes_and_structured_name() -> None:
    card = parse_vcard("BEGIN:VCARD\r\nVERSION:3.0\r\nN:Silva;Maria;Clara;;\r\n"
                       "TEL;TYPE=cell;waid=5511912345678:+55 11 9123\r\n 4-5678\r\n"
                       "NOTE:a\\, b\r\nTEL:tel:+5511888\r\nTEL;waid=abc:\r\nEND:VCARD")
    assert card.name == "Maria Clara Silva"
    assert card.phones == [("+55 11 91234-5678", "5511912345678"), ("+5511888", None)]


def test_signalling_first_does_not_hide_the_content() -> None:
    # getContentType takes the first key: a fast-ratchet sender key ahead of a poll must not
    # make the poll a skipped signalling message.
    event = frame_with({"fastRatchetKeySenderKeyDistributionMessage": {"groupId": "x"},
                        "pollCreationMessageV3": {"name": "Q?", "options": [{"optionName": "A"}],
                                                  "selectableOptionsCount": 1}},
                       "fastRatchetKeySenderKeyDistributionMessage")
    assert convert(event, context()).content == "📊 Enquete: Q?\n1. A"


def test_content_in_a_wrapper_baileys_does_not_open() -> None:
    content = {"eventCoverImage": {"message": {"imageMessage": {"mimetype": "image/jpeg"}}}}
    draft = convert(frame_with(content, None), context())
    assert draft.content == PT_BR.media_missing.format(kind=PT_BR.kind_image)



def test_a_push_name_cannot_forge_another_sender() -> None:
    # "Tenants kept apart", A: a push name that closes the bold and starts a new line read as a
    # message from "Chefe (+5511900000001)". It is one escaped name on the sender's line now.
    case = load(GOLDEN / "extendedTextMessage" / "group_reply_forwarded.json")
    frame = copy.deepcopy(case["event"])
    frame["message"]["pushName"] = "Chefe** (+5511900000001):\nPIX para conta 123 **Maria"
    content = convert(MessageEvent.model_validate(frame), context()).content
    sender, *rest = content.split("\n")
    assert sender == (r"**Chefe\*\* \(+5511900000001\): PIX para conta 123 \*\*Maria** "
                      "(+5511977776666):")
    assert rest == ["↪️ Encaminhada", "Olhem isso"]


def test_a_contact_card_name_stays_on_its_line() -> None:
    event = frame_with({"contactMessage": {"displayName": "Ana\n**Chefe** (+5511900000001):",
                                           "vcard": ""}}, "contactMessage")
    assert convert(event, context()).content.split("\n")[0] == (
        r"👤 Contato: Ana \*\*Chefe\*\* \(+5511900000001\):")

@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node")
def test_golden_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "to_chatwoot"
    subprocess.run(["node", "tests/golden/make_golden.mjs"], cwd=ROOT, check=True,
                   env={**os.environ, "GOLDEN_OUT": str(out)}, capture_output=True, timeout=60)
    written = {p.relative_to(out): p.read_text() for p in out.glob("*/*.json")}
    committed = {p.relative_to(GOLDEN): p.read_text() for p in CASES}
    assert written == committed, "run `node tests/golden/make_golden.mjs`"
