"""The walking skeleton end to end: real `ponte serve` and `ponte worker` processes, the fake
Chatwoot sending signed webhooks like Chatwoot does, the scripted sidecar playing WhatsApp."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.jobs.notes import qr_png
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for, write_script
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot

QR = "2@Xf7pLq0aBcD,MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=,aWRlbnRpdHk=,YWR2,Mac OS"
CUSTOMER = "5511988887777@s.whatsapp.net"


def frame_message(wa_id: str, text: str, *, from_me: bool = False,
                  push_name: str = "Maria") -> dict[str, Any]:
    key = {"remoteJid": CUSTOMER, "fromMe": from_me, "id": wa_id}
    return {"emit": {"type": "message", "upsert": "notify", "key": key,
                     "content_type": "conversation", "echo": False,
                     "message": {"key": key, "messageTimestamp": int(time.time()),
                                 "pushName": push_name, "message": {"conversation": text}}}}


def whatsapp_script(path: Path) -> Path:
    """Pairing by QR, then a customer writes twice, and the phone's owner answers once."""
    ready = {"emit": {"type": "ready", "protocol": 1, "sidecar": "scripted",
                      "baileys": "7.0.0-rc14", "pid": "$pid"}}
    connecting = {"emit": {"type": "connection", "state": "connecting"}}
    return write_script(path, [
        ready, connecting,
        {"emit": {"type": "qr", "qr": QR}},
        {"wait_file": "scanned"},
        {"emit": {"type": "connection", "state": "connecting", "is_new_login": True}},
        {"emit": {"type": "connection", "state": "close", "status_code": 515,
                  "reason": "restartRequired", "message": "restart required",
                  "will_reconnect": True}},
        connecting,
        {"emit": {"type": "connection", "state": "open", "me": {
            "id": "5511999990000:3@s.whatsapp.net", "lid": "998877@lid", "name": "Loja"}}},
        {"wait_file": "customer_writes"},
        frame_message("WAID-0001", "Oi, quero saber do meu pedido"),
        frame_message("WAID-0002", "É o 4512"),
        frame_message("WAID-0003", "Bom dia! Já vou ver.", from_me=True, push_name="Loja"),
    ])


class Flow(Desk):
    control: Path

    def trigger(self, name: str) -> None:
        (self.control / f"{self.instance}.{name}").touch()

    def sidecar_commands(self, kind: str) -> list[dict[str, Any]]:
        record = self.control / f"{self.instance}.commands.jsonl"
        if not record.exists():
            return []
        return [c for c in map(json.loads, record.read_text().splitlines()) if c["type"] == kind]


@pytest.fixture
def flow(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
         tmp_path: Path) -> Iterator[Flow]:
    control = tmp_path / "control"
    command = scripted_sidecar_command(control, whatsapp_script(tmp_path / "whatsapp.jsonl"))
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=command) as desk:
        flow = Flow(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        flow.control = control
        yield flow


def test_link_by_qr_then_relay_text_both_ways(flow: Flow) -> None:
    fake = flow.fake
    # 1. An authorized agent types the command as a private note in any conversation.
    fake.agent_message(flow.ops_conversation, "erga", private=True)
    qr_note = wait_for(lambda: next((n for n in flow.notes() if n.get("attachments")), None),
                       timeout=20, message="QR note with an image")
    (attachment,) = qr_note["attachments"]
    assert attachment["file_type"] == "image"
    assert fake.attachment_bytes(attachment["id"]) == qr_png(QR)  # the sidecar's QR, whole
    assert "1/4" in qr_note["content"]

    # 2. The phone scans: 515, reconnect, open, and the agents are told which number linked.
    flow.trigger("scanned")
    wait_for(lambda: any("5511999990000" in (n["content"] or "") for n in flow.notes()),
             timeout=20, message="linked note")
    status = httpx.get(f"{flow.base}/global-status").json()
    (instance,) = status["instancesGlobal"]
    assert (instance["status"], instance["connectedJid"]) == (
        "open", "5511999990000@s.whatsapp.net")

    # 3. The customer writes: one contact, one conversation, each message once, in order.
    flow.trigger("customer_writes")

    def customer_messages() -> list[dict[str, Any]]:
        return [m for m in fake.messages() if m["source_id"] in ("WAID-0001", "WAID-0002",
                                                                  "WAID-0003")]
    wait_for(lambda: len(customer_messages()) == 3, timeout=20, message="three messages")
    messages = customer_messages()
    assert [m["content"] for m in messages] == [
        "Oi, quero saber do meu pedido", "É o 4512", "Bom dia! Já vou ver."]
    assert [m["message_type"] for m in messages] == [0, 0, 1]  # incoming, incoming, outgoing
    (customer,) = [c for c in fake.contacts if c["identifier"] == CUSTOMER]
    assert customer["phone_number"] == "+5511988887777" and customer["name"] == "Maria"
    conversation_id = messages[0]["conversation_id"]
    assert {m["conversation_id"] for m in messages} == {conversation_id}
    assert CUSTOMER in {ci["source_id"] for ci in customer["contact_inboxes"]}
    # Their WhatsApp picture becomes the contact's avatar: looked up once for three messages.
    wait_for(lambda: flow.sidecar_commands("profile_picture"), timeout=20,
             message="profile picture asked")
    assert [c["jid"] for c in flow.sidecar_commands("profile_picture")] == [CUSTOMER]
    wait_for(lambda: fake.contact(customer["id"])["thumbnail"].endswith("/ponte-test.jpg"),
             timeout=20, message="avatar set")

    # 4. The agent answers in Chatwoot; the sidecar is asked to send exactly that text.
    reply = fake.agent_message(conversation_id, "Seu pedido 4512 sai hoje.")
    sent = wait_for(lambda: flow.sidecar_commands("send_text"), timeout=20,
                    message="send_text at the sidecar")
    assert sent == [{"type": "send_text", "id": sent[0]["id"], "jid": CUSTOMER,
                     "text": "Seu pedido 4512 sai hoje."}]
    # Our own posts came back as webhooks and were not relayed; nothing was posted twice.
    fake.flush_webhooks()
    assert len(flow.sidecar_commands("send_text")) == 1
    assert len(customer_messages()) == 3
    assert fake.message(reply["id"])["status"] != "failed"  # answered 2xx in time
    refused = [(d.event, d.status, d.error) for d in fake.deliveries
               if d.event.startswith("message_") and not d.ok]
    assert refused == []  # every message webhook was answered 2xx within Chatwoot's 5 s
