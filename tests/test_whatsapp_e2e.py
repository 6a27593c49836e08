"""End to end with the real sidecar and real Baileys against the simulated WhatsApp Web server:
`ponte serve` + `ponte worker` + fake Chatwoot + tests/simulator. Every step goes through the
same doors as in production: Chatwoot webhooks in, Chatwoot API calls out, WhatsApp's protocol on
the other side."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SettingsFactory, settings_env, wait_for
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import PHONE, WhatsAppSimulator
from tests.processes import PonteProcess

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@whiskeysockets").exists(),
    reason="needs node and `npm ci` (make test does both)")

CUSTOMER = "5511988887777"
CUSTOMER_JID = f"{CUSTOMER}@s.whatsapp.net"


@pytest.fixture
def desk(fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator,
         make_settings: SettingsFactory, tmp_path: Path) -> Iterator[Desk]:
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=whatsapp.sidecar_command,
                   baileys_wa_websocket_url=whatsapp.websocket_url,
                   baileys_reconnect_delay_ms=300, baileys_reconnect_max_delay_ms=2000,
                   baileys_qr_timeout_ms=4000) as opened:
        try:
            yield opened
        except BaseException:
            print("--- simulator ---\n" + whatsapp.output())
            raise


def qr_notes(desk: Desk) -> list[dict[str, Any]]:
    return [n for n in desk.notes() if n.get("attachments")]


def link(desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    """`erga` in Chatwoot, the phone scans the QR it finds there, the link comes up."""
    desk.command("erga")
    note = wait_for(lambda: (qr_notes(desk) or [None])[-1], timeout=30, message="QR note")
    qr = desk.qr_from_note(note)
    whatsapp.scan_qr(qr)
    desk.wait_note(PHONE)
    wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open")


def session_dir(desk: Desk) -> Path:
    return desk.settings.sessions_dir / desk.instance


def test_erga_posts_a_scannable_qr_and_the_scan_links_the_number(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    desk.command("erga")
    note = wait_for(lambda: (qr_notes(desk) or [None])[0], timeout=30, message="QR note")
    qr = desk.qr_from_note(note)  # decoded from the PNG in Chatwoot
    ref = qr.removeprefix("https://wa.me/settings/linked_devices#").split(",")[0]
    # The very QR the sidecar was given:
    assert ref in [r["ref"] for r in whatsapp.state()["pending_qr_refs"]]
    assert "1/4" in note["content"]
    paired = whatsapp.scan_qr(qr)
    assert paired["device_signature_valid"]
    linked = desk.wait_note(PHONE)
    assert "+5511999990000" in linked["content"]
    status = wait_for(lambda: desk.status().get("status") == "open" and desk.status(),
                      timeout=30, message="open")
    assert status["connectedJid"] == f"{PHONE}@s.whatsapp.net"
    assert status["qrSendAttempts"] == 0 and status["lastError"] is None
    assert (session_dir(desk) / "creds.json").exists()
    assert oct(session_dir(desk).stat().st_mode & 0o777) == "0o700"


def test_pairing_code_links_the_number(desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    desk.command(f"erga pair +{PHONE}")
    note = desk.wait_note("*")
    code = re.search(r"\*([A-Z0-9]{8})\*", note["content"] or "")
    assert code, note["content"]
    assert qr_notes(desk) == []  # a code pairing shows no QR codes
    whatsapp.type_pairing_code(code.group(1))
    desk.wait_note("conectado: o número +5511999990000")
    wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open")


def test_text_reaches_chatwoot_once_and_the_reply_reaches_the_customer(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    link(desk, whatsapp)
    whatsapp.add_contact(CUSTOMER, push_name="Maria")
    wa_id = whatsapp.send_text(CUSTOMER, "Oi! Vocês entregam hoje?")
    posted = wait_for(lambda: [m for m in desk.fake.messages() if m["source_id"] == wa_id],
                      timeout=20, message="message in Chatwoot")
    (message,) = posted
    assert message["content"] == "Oi! Vocês entregam hoje?" and message["message_type"] == 0
    (contact,) = [c for c in desk.fake.contacts if c["identifier"] == CUSTOMER_JID]
    assert contact["name"] == "Maria" and contact["phone_number"] == f"+{CUSTOMER}"

    before = len(desk.fake.messages(message["conversation_id"]))
    desk.fake.agent_message(message["conversation_id"], "Entregamos sim, até as 18h.")
    received = wait_for(lambda: whatsapp.received(CUSTOMER), timeout=20,
                        message="the customer receives the reply")
    assert [r["text"] for r in received] == ["Entregamos sim, até as 18h."]
    # Baileys reports our own send back (an `append` upsert): it must not be posted again.
    desk.fake.flush_webhooks()
    wait_for(lambda: desk.status().get("outboxDepth") == 0, message="outbox drained")
    assert len(desk.fake.messages(message["conversation_id"])) == before + 1
    assert [m["source_id"] for m in desk.fake.messages() if m["source_id"] == wa_id] == [wa_id]


def test_lid_addressed_message_lands_in_the_same_contact(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    link(desk, whatsapp)
    whatsapp.add_contact(CUSTOMER, lid="207365884047522", push_name="Maria")
    first = whatsapp.send_text(CUSTOMER, "pelo número", addressing="pn")
    # Baileys locks per address, so a PN and a LID message sent within milliseconds can come
    # out in either order; people write seconds apart. The identity is what is under test.
    wait_for(lambda: [m for m in desk.fake.messages() if m["source_id"] == first], timeout=20,
             message="the first message")
    second = whatsapp.send_text(CUSTOMER, "pelo LID", addressing="lid")
    posted = wait_for(
        lambda: [m for m in desk.fake.messages() if m["source_id"] in (first, second)]
        if len([m for m in desk.fake.messages() if m["source_id"] in (first, second)]) == 2
        else None, timeout=20, message="both messages")
    assert [m["content"] for m in posted] == ["pelo número", "pelo LID"]
    assert len({m["conversation_id"] for m in posted}) == 1
    assert len([c for c in desk.fake.contacts if c["identifier"] == CUSTOMER_JID]) == 1
    assert not any(c["identifier"] and c["identifier"].endswith("@lid")
                   for c in desk.fake.contacts)


@pytest.mark.parametrize(("kind", "code", "expected"), [
    ("restart", None, 515),
    ("stream-error", 503, 503),
    ("stream-error", None, 500),
    ("xmlstreamend", None, 428),
    ("drop", None, 428),
])
def test_transient_disconnects_reconnect_with_the_saved_session(
        desk: Desk, whatsapp: WhatsAppSimulator, kind: str, code: int | None,
        expected: int) -> None:
    link(desk, whatsapp)
    notes_before = desk.note_texts()
    restarts = desk.status()["restarts"]
    whatsapp.kick(kind, code)
    wait_for(lambda: desk.status().get("lastCloseCode") == expected, timeout=20,
             message=f"close {expected}")
    wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open again")
    assert desk.note_texts() == notes_before  # no QR, no note per reconnect
    assert desk.status()["restarts"] <= restarts + 1  # one reconnect, not a storm
    whatsapp.add_contact(CUSTOMER)
    wa_id = whatsapp.send_text(CUSTOMER, "ainda funciona?")
    wait_for(lambda: [m for m in desk.fake.messages() if m["source_id"] == wa_id],
             timeout=20, message="message after the reconnect")


@pytest.mark.parametrize(("kind", "code", "reason"), [
    ("conflict", None, "connectionReplaced (440)"),
    ("failure", 403, "forbidden (403)"),
    ("failure", 405, "versionRejected (405)"),
])
def test_fatal_disconnects_stop_keep_the_session_and_tell(
        desk: Desk, whatsapp: WhatsAppSimulator, kind: str, code: int | None,
        reason: str) -> None:
    link(desk, whatsapp)
    whatsapp.kick(kind, code)
    note = desk.wait_note(reason)
    assert "erga" in note["content"]
    wait_for(lambda: desk.status().get("status") == "stopped", timeout=20, message="stopped")
    status = desk.status()
    assert status["desired"] == "stopped" and status["linked"]
    assert (session_dir(desk) / "creds.json").exists()
    restarts = status["restarts"]
    wait_for(lambda: whatsapp.open_connections() == [], timeout=10, message="no connection")
    assert desk.status()["restarts"] == restarts  # it stays down


def test_unlinked_on_the_phone_wipes_the_session_and_tells(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    link(desk, whatsapp)
    whatsapp.unlink()
    desk.wait_note("desconectado pelo celular")
    wait_for(lambda: not session_dir(desk).exists(), timeout=20, message="session wiped")
    status = desk.status()
    assert (status["linked"], status["connectedJid"], status["desired"]) == (
        False, None, "stopped")


def test_expired_qr_codes_stop_the_attempt_without_qr_spam(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    whatsapp.configure(qr_refs=2)
    desk.command("erga")
    desk.wait_note("qrRefsExhausted", timeout=40)
    assert len(qr_notes(desk)) == 2
    wait_for(lambda: desk.status().get("status") == "stopped", timeout=20, message="stopped")
    assert len(qr_notes(desk)) == 2


def test_unanswered_keepalive_is_a_lost_connection_and_reconnects(
        fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator,
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=whatsapp.sidecar_command,
                   baileys_wa_websocket_url=whatsapp.websocket_url,
                   baileys_reconnect_delay_ms=300, baileys_keepalive_ms=1000) as desk:
        link(desk, whatsapp)
        whatsapp.kick("stop-pings")
        wait_for(lambda: desk.status().get("lastCloseCode") == 408, timeout=20, message="408")
        whatsapp.kick("resume-pings")
        wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open")


def test_restart_with_a_saved_session_opens_without_a_qr(
        desk: Desk, whatsapp: WhatsAppSimulator, tmp_path: Path) -> None:
    link(desk, whatsapp)
    qr_count = len(qr_notes(desk))
    desk.serve.stop()
    wait_for(lambda: whatsapp.open_connections() == [], timeout=10, message="disconnected")
    desk.serve = PonteProcess("serve", settings_env(desk.settings), tmp_path / "serve2.log")
    desk.serve.wait_http(f"{desk.base}/healthz")
    wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open again")
    assert len(qr_notes(desk)) == qr_count
    assert len(whatsapp.open_connections()) == 1  # exactly one sidecar on the identity


def test_a_sidecar_stuck_connecting_is_restarted(
        fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator,
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    # WhatsApp answers the WebSocket upgrade with 503 and hangs up: rc14 then waits forever.
    whatsapp.configure(reject_ws_upgrade=503, reject_ws_upgrade_close=True)
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=whatsapp.sidecar_command,
                   baileys_wa_websocket_url=whatsapp.websocket_url,
                   baileys_connect_timeout_ms=1000, baileys_reconnect_delay_ms=300) as desk:
        desk.command("erga")
        wait_for(lambda: (desk.status().get("lastError") or "").startswith("stuck connecting"),
                 timeout=30, message="the watchdog")
        whatsapp.configure(reject_ws_upgrade=None, reject_ws_upgrade_close=False)
        note = wait_for(lambda: (qr_notes(desk) or [None])[0], timeout=30, message="a QR")
        assert desk.qr_from_note(note)


def test_media_reaches_chatwoot_byte_exact_and_leaves_the_spool(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    link(desk, whatsapp)
    whatsapp.add_contact(CUSTOMER, push_name="Maria")
    photo = bytes(range(256)) * 400  # 100 KiB
    pdf = b"%PDF-1.4\n" + b"boleto " * 3000
    photo_id = whatsapp.send_media(CUSTOMER, "image", photo, "image/jpeg",
                                   caption="chegou quebrado")
    pdf_id = whatsapp.send_media(CUSTOMER, "document", pdf, "application/pdf",
                                 file_name="boleto-4512.pdf")
    posted = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        [m for m in desk.fake.messages() if m["source_id"] in (photo_id, pdf_id)]),
        timeout=30, message="both media messages")
    image, document = posted
    assert image["content"] == "chegou quebrado"
    assert desk.fake.attachment_bytes(image["attachments"][0]["id"]) == photo
    assert image["attachments"][0]["file_type"] == "image"
    assert desk.fake.attachment_bytes(document["attachments"][0]["id"]) == pdf
    assert document["attachments"][0]["data_url"].endswith("boleto-4512.pdf")
    spool = desk.settings.spool_dir / desk.instance
    wait_for(lambda: not any(spool.iterdir()), timeout=10, message="an empty spool")
