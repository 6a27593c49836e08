"""Ponte as a user first runs it: every default, relative paths included. `ponte redis`,
`ponte serve` and `ponte worker` start in a directory of their own with only what must point at
the fakes set (Chatwoot, the webhook secret, who may type commands, the port, the simulated
WhatsApp), so SERVER_DATA_DIR is the default `data`, the embedded Redis keeps its socket under it,
and the sidecar is the default command. An agent's image then goes through the real sidecar."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import load_settings
from tests.conftest import ROOT, free_port, wait_for
from tests.desk import Desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import WhatsAppSimulator
from tests.processes import PonteProcess

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@whiskeysockets").exists(),
    reason="needs node and `npm ci` (make test does both)")

CUSTOMER = "5511988887777"


@pytest.fixture
def default_desk(fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator,
                 tmp_path: Path) -> Iterator[tuple[Desk, Path]]:
    work = tmp_path / "ponte"  # the working directory: `data/` appears here
    work.mkdir()
    ca = tmp_path / "simulator-ca.pem"  # the simulator's HTTPS upload host, as a trusted CA
    ca.write_text(whatsapp.tls_cert())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    inbox = fake_chatwoot.add_inbox("WhatsApp Loja", webhook_url=f"{base}/webhook/chatwoot")
    ops = fake_chatwoot.create_conversation_for("+5585999990000", inbox["id"])
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    env.update(
        CHATWOOT_BASE_URL=fake_chatwoot.url, CHATWOOT_API_ACCESS_TOKEN=fake_chatwoot.token,
        WEBHOOK_SECRET=inbox["secret"],
        WEBHOOK_AUTHORIZED_AGENT_EMAILS=fake_chatwoot.default_agent["email"],
        SERVER_PORT=str(port), BAILEYS_WA_WEBSOCKET_URL=whatsapp.websocket_url,
        NODE_EXTRA_CA_CERTS=str(ca))
    # Nothing else: no SERVER_DATA_DIR, no REDIS_URL (the embedded Redis, its socket under
    # data/redis/), the default sidecar command (rc14 accepts the simulator's certificate chain
    # without the test preload: tests/simulator/README.md).
    redis = PonteProcess("redis", env, tmp_path / "redis.log", cwd=work)
    serve = PonteProcess("serve", env, tmp_path / "serve.log", cwd=work)
    worker = PonteProcess("worker", env, tmp_path / "worker.log", cwd=work)
    settings = load_settings(_env_file=None, chatwoot_base_url=fake_chatwoot.url,
                             server_data_dir=work / "data")  # only for Desk's bookkeeping
    desk = Desk(fake_chatwoot, settings, base, inbox, ops["id"], serve, worker)
    try:
        serve.wait_http(f"{base}/healthz", timeout=40)
        yield desk, work
    finally:
        serve.stop()
        worker.stop()
        redis.stop()
        for process in (serve, worker, redis):  # captured: shown only when the test failed
            print(f"--- {process.command} ---\n" + process.log.read_text(errors="replace"))
        print("--- simulator ---\n" + whatsapp.output())


def test_an_agent_image_reaches_whatsapp_byte_exact_with_every_default(
        default_desk: tuple[Desk, Path], whatsapp: WhatsAppSimulator) -> None:
    desk, work = default_desk
    desk.command("erga")
    note = wait_for(lambda: next((n for n in desk.notes() if n.get("attachments")), None),
                    timeout=40, message="QR note")
    whatsapp.scan_qr(desk.qr_from_note(note))
    wait_for(lambda: desk.status().get("status") == "open", timeout=40, message="open")
    assert (work / "data" / "sessions" / desk.instance / "creds.json").exists()

    whatsapp.add_contact(CUSTOMER, push_name="Maria")
    wa_id = whatsapp.send_text(CUSTOMER, "Manda a foto do produto?")
    (first,) = wait_for(lambda: [m for m in desk.fake.messages() if m["source_id"] == wa_id],
                        timeout=30, message="the customer's message in Chatwoot")
    photo = bytes(range(256)) * 300 + b"\xff\xd9"
    reply = desk.fake.agent_message(first["conversation_id"], "Aqui está",
                                    attachments=[("produto.jpg", photo, "image/jpeg")])

    # Unfixed, the sidecar refused the relative spool path and the message ended `failed`.
    status = wait_for(lambda: (lambda s: s if s in ("delivered", "read", "failed") else None)(
        desk.fake.message(reply["id"])["status"]), timeout=40, message="a final status")
    assert status != "failed", desk.fake.messages(first["conversation_id"])[-1]["content"]
    (image,) = [r for r in whatsapp.received(CUSTOMER) if r["type"] == "image"]
    assert image["text"] == "Aqui está"
    assert whatsapp.received_media(CUSTOMER, image["id"]) == photo
    spool = work / "data" / "spool" / desk.instance
    wait_for(lambda: not any(spool.iterdir()), timeout=10, message="an empty spool")
