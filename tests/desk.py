"""A help desk for end-to-end tests: the fake Chatwoot, and real `ponte serve` + `ponte worker`
processes wired to it, with one API inbox whose webhook points at serve."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bridge.config import Settings
from tests.conftest import SettingsFactory, free_port, settings_env, wait_for
from tests.fakes.chatwoot import FakeChatwoot
from tests.processes import PonteProcess


@dataclass
class Desk:
    fake: FakeChatwoot
    settings: Settings
    base: str
    inbox: dict[str, Any]
    ops_conversation: int  # where the operator types commands and reads Ponte's notes
    serve: PonteProcess
    worker: PonteProcess

    @property
    def instance(self) -> str:
        return f"1-{self.inbox['id']}"

    def notes(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.messages(self.ops_conversation) if m["private"]]

    def note_texts(self) -> list[str]:
        return [n["content"] or "" for n in self.notes()]

    def wait_note(self, needle: str, timeout: float = 30.0) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: next((n for n in self.notes() if needle in (n["content"] or "")), None),
            timeout=timeout, message=f"a note containing {needle!r}")
        return found

    def command(self, text: str) -> None:
        """An authorized agent types a command as a private note."""
        self.fake.agent_message(self.ops_conversation, text, private=True)

    def status(self) -> dict[str, Any]:
        instances = httpx.get(f"{self.base}/global-status").json()["instancesGlobal"]
        return next((i for i in instances if i["instanceId"] == self.instance), {})

    def qr_from_note(self, note: dict[str, Any]) -> str:
        """Read the QR code out of the PNG Ponte attached, as the phone's camera would."""
        import zxingcpp
        from PIL import Image

        (attachment,) = note["attachments"]
        png = self.fake.attachment_bytes(attachment["id"])
        (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
        return str(barcode.text)


@contextmanager
def open_desk(fake: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path,
              **overrides: Any) -> Iterator[Desk]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    inbox = fake.add_inbox("WhatsApp Loja", webhook_url=f"{base}/webhook/chatwoot")
    ops = fake.create_conversation_for("+5585999990000", inbox["id"])
    settings = make_settings(**{
        "server_port": port, "chatwoot_base_url": fake.url,
        "chatwoot_api_access_token": fake.token, "webhook_secret": inbox["secret"],
        "webhook_authorized_agent_emails": fake.default_agent["email"],
        "chatwoot_queue_concurrency": 2, **overrides})
    env = settings_env(settings)
    desk = Desk(fake, settings, base, inbox, ops["id"],
                PonteProcess("serve", env, tmp_path / "serve.log"),
                PonteProcess("worker", env, tmp_path / "worker.log"))
    try:
        desk.serve.wait_http(f"{base}/healthz")
        yield desk
    except BaseException:
        print("--- serve ---\n" + desk.serve.output() + "\n--- worker ---\n"
              + desk.worker.output())
        raise
    finally:
        # The processes a test left in the desk (it may have restarted serve).
        desk.serve.stop()
        desk.worker.stop()
