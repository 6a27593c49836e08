"""Agent actions reaching WhatsApp, through real `ponte serve` + `ponte worker`, the fake
Chatwoot (sending signed webhooks as Chatwoot does) and the scripted sidecar."""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for, write_script
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot

CUSTOMER = "5511988887777@s.whatsapp.net"
READY = {"emit": {"type": "ready", "protocol": 1, "sidecar": "s", "baileys": "7", "pid": "$pid"}}
OPEN = {"emit": {"type": "connection", "state": "open",
                 "me": {"id": "5511999990000:3@s.whatsapp.net", "lid": None, "name": "Loja"}}}


def customer_message(wa_id: str, text: str) -> dict[str, Any]:
    key = {"remoteJid": CUSTOMER, "fromMe": False, "id": wa_id}
    return {"emit": {"type": "message", "upsert": "notify", "key": key,
                     "content_type": "conversation", "echo": False,
                     "message": {"key": key, "messageTimestamp": int(time.time()),
                                 "pushName": "Maria", "message": {"conversation": text}}}}


class Shop(Desk):
    control: Path

    def commands(self, kind: str | None = None) -> list[dict[str, Any]]:
        record = self.control / f"{self.instance}.commands.jsonl"
        if not record.exists():
            return []
        found = [json.loads(line) for line in record.read_text().splitlines()]
        return [c for c in found if kind is None or c["type"] == kind]

    def customer_conversation(self) -> int:
        messages = wait_for(lambda: [m for m in self.fake.messages()
                                     if m["source_id"] == "WA-HELLO"], timeout=20,
                            message="the customer's first message")
        return int(messages[0]["conversation_id"])


Script = Callable[..., Shop]


@pytest.fixture
def shop(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
         tmp_path: Path) -> Iterator[Script]:
    """A linked number whose customer wrote once ("WA-HELLO"); extra directives follow."""
    stack: list[Any] = []

    def start(*directives: dict[str, Any], **settings: Any) -> Shop:
        control = tmp_path / "control"
        script = write_script(tmp_path / "wa.jsonl", [
            READY, OPEN, {"ticks": True}, customer_message("WA-HELLO", "Oi, preciso de ajuda"),
            *directives])
        context = open_desk(fake_chatwoot, make_settings, tmp_path,
                            baileys_sidecar_command=scripted_sidecar_command(control, script),
                            **settings)
        desk = context.__enter__()
        stack.append(context)
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        wait_for(lambda: shop.status().get("status") == "open", message="open")
        return shop

    yield start
    for context in stack:
        context.__exit__(None, None, None)


def wav_bytes(seconds: float = 0.4) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(n / 8)))
                                 for n in range(int(16000 * seconds))))
    return buffer.getvalue()


def test_text_with_attachments_goes_in_parts_caption_on_the_first_image(
        shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    photo, pdf = b"\xff\xd8\xff\xe0foto" * 500, b"%PDF-1.4 boleto" * 500
    desk.fake.agent_message(conversation, "Segue a **foto** e o boleto", attachments=[
        ("foto.jpg", photo, "image/jpeg"), ("boleto.pdf", pdf, "application/pdf")])
    first, second = wait_for(lambda: (lambda sent: sent if len(sent) == 2 else None)(
        desk.commands("send_media")), timeout=20, message="two media parts")
    assert desk.commands("send_text") == []  # the text rode on the photo
    assert (first["kind"], first["caption"], first["mimetype"]) == (
        "image", "Segue a *foto* e o boleto", "image/jpeg")
    assert first["file"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (second["kind"], second["file_name"], second.get("caption")) == (
        "document", "boleto.pdf", None)
    assert second["file"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    spool = desk.settings.spool_dir / desk.instance
    assert Path(first["path"]).parent == spool.resolve()
    wait_for(lambda: not any(spool.iterdir()), message="files removed after sending")


def test_a_crash_after_part_one_never_sends_part_one_twice(
        fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path) -> None:
    control = tmp_path / "control"
    first_run = write_script(tmp_path / "run1.jsonl", [
        READY, OPEN, customer_message("WA-HELLO", "Oi"),
        {"expect": "send_text", "reply": {"ok": True, "data": {
            "message_id": "$id", "jid": "$jid", "timestamp": "$now"}}},
        {"exit": 3},  # crashes before the attachment goes
    ])
    later_runs = write_script(tmp_path / "run2.jsonl", [READY, OPEN])
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=scripted_sidecar_command(control, first_run,
                                                                     later_runs)) as desk:
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        conversation = shop.customer_conversation()
        shop.fake.agent_message(conversation, "Veja o manual", attachments=[
            ("manual.pdf", b"%PDF manual", "application/pdf")])
        wait_for(lambda: shop.commands("send_media"), timeout=30, message="part 2 after restart")
        assert [c["text"] for c in shop.commands("send_text")] == ["Veja o manual"]
        assert len(shop.commands("send_media")) == 1


def test_a_reply_quotes_the_customer_message(shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    original = next(m for m in desk.fake.messages() if m["source_id"] == "WA-HELLO")
    desk.fake.agent_message(conversation, "Claro, em que posso ajudar?",
                            content_attributes={"in_reply_to": original["id"]})
    (sent,) = wait_for(lambda: desk.commands("send_text"), message="the reply")
    assert sent["quote"] == {"id": "WA-HELLO", "from_me": False}


def test_ticks_become_the_chatwoot_message_status(shop: Script) -> None:
    desk = shop()
    reply = desk.fake.agent_message(desk.customer_conversation(), "Já verifico.")
    wait_for(lambda: desk.fake.message(reply["id"])["status"] == "read", timeout=20,
             message="read in Chatwoot")


def test_an_agent_deleting_a_sent_message_revokes_it_on_whatsapp(shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    reply = desk.fake.agent_message(conversation, "Mensagem errada")
    (sent,) = wait_for(lambda: desk.commands("send_text"), message="sent")
    wait_for(lambda: desk.fake.message(reply["id"])["status"] == "read", message="mapped")
    desk.fake.agent_delete_message(conversation, reply["id"])
    (revoke,) = wait_for(lambda: desk.commands("revoke"), message="revoke")
    assert revoke["jid"] == CUSTOMER
    assert revoke["message_id"].startswith("3EB0")


def test_a_number_without_whatsapp_fails_visibly(shop: Script) -> None:
    desk = shop({"expect": "send_text", "reply": {"ok": False, "error": {
        "code": "not_on_whatsapp", "message": "no account"}}})
    reply = desk.fake.agent_message(desk.customer_conversation(), "Olá?")
    failed = wait_for(lambda: desk.fake.message(reply["id"])["status"] == "failed" and
                      desk.fake.message(reply["id"]), timeout=20, message="failed")
    assert "não tem WhatsApp" in failed["content_attributes"]["external_error"]
    # The note and the status are separate jobs: either may land first.
    wait_for(lambda: any("não tem WhatsApp" in (m["content"] or "") for m in
                         desk.fake.messages(reply["conversation_id"]) if m["private"]),
             timeout=20, message="the note saying why")


def test_audio_goes_as_a_voice_note(shop: Script) -> None:
    desk = shop()
    desk.fake.agent_message(desk.customer_conversation(), None,
                            attachments=[("gravacao.wav", wav_bytes(), "audio/wav")])
    (sent,) = wait_for(lambda: desk.commands("send_media"), timeout=30, message="voice note")
    assert (sent["kind"], sent["ptt"], sent["mimetype"]) == (
        "audio", True, "audio/ogg; codecs=opus")
    assert bytes.fromhex(sent["file"]["head"]).startswith(b"OggS")


def test_agent_reply_marks_the_customer_messages_read_when_configured(shop: Script) -> None:
    desk = shop(chatwoot_mark_read_on_reply=True)
    desk.fake.agent_message(desk.customer_conversation(), "Respondendo")
    (read,) = wait_for(lambda: desk.commands("mark_read"), message="read receipts")
    assert (read["jid"], read["message_ids"]) == (CUSTOMER, ["WA-HELLO"])


def test_a_restart_between_the_answer_and_the_send_loses_nothing(
        fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path) -> None:
    from tests.conftest import settings_env
    from tests.processes import PonteProcess

    control = tmp_path / "control"
    online = write_script(tmp_path / "run1.jsonl", [
        READY, OPEN, customer_message("WA-HELLO", "Oi"), {"wait_file": "drop"},
        {"emit": {"type": "connection", "state": "close", "status_code": 428,
                  "reason": "connectionClosed", "message": "lost", "will_reconnect": False}},
        {"exit": 0}])
    stuck = write_script(tmp_path / "run2.jsonl", [
        READY, {"emit": {"type": "connection", "state": "connecting"}}, {"sleep": 60}])
    back = write_script(tmp_path / "run3.jsonl", [READY, OPEN])
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=scripted_sidecar_command(control, online, stuck,
                                                                     back)) as desk:
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        conversation = shop.customer_conversation()
        (control / f"{shop.instance}.drop").touch()  # WhatsApp drops; the sidecar reconnects
        wait_for(lambda: (control / f"{shop.instance}.runs").read_text() == "2",
                 message="reconnecting")
        shop.fake.agent_message(conversation, "Chega hoje")  # answered 200, waiting to go
        wait_for(lambda: shop.status().get("outboxDepth") == 1, message="queued")
        shop.serve.stop()  # Ponte restarts before the number is back
        shop.serve = PonteProcess("serve", settings_env(shop.settings), tmp_path / "serve2.log")
        desk.serve = shop.serve
        shop.serve.wait_http(f"{shop.base}/healthz")
        sent = wait_for(lambda: shop.commands("send_text"), timeout=20, message="sent")
        assert [c["text"] for c in sent] == ["Chega hoje"]
        wait_for(lambda: shop.status().get("outboxDepth") == 0, message="outbox empty")
