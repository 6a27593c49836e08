"""Agents' attachments: only from Chatwoot (and its redirects), capped, streamed to the spool."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bridge.attachments import AttachmentError, fetch, safe_filename, same_origin
from tests.fakes.chatwoot import FakeChatwoot


@pytest.fixture
def attachment(fake_chatwoot: FakeChatwoot) -> dict[str, object]:
    inbox = fake_chatwoot.add_inbox("WhatsApp")
    conversation = fake_chatwoot.create_conversation_for("+5511988887777", inbox["id"])
    message = fake_chatwoot.agent_message(
        conversation["id"], "segue o boleto",
        attachments=[("boleto.pdf", b"%PDF-1.4 " + b"x" * 50_000, "application/pdf")])
    (item,) = message["attachments"]
    return dict(item)


async def test_a_chatwoot_attachment_is_streamed_to_the_spool(
        fake_chatwoot: FakeChatwoot, attachment: dict[str, object], tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        got = await fetch(client, str(attachment["data_url"]), chatwoot_url=fake_chatwoot.url,
                          spool=tmp_path, max_bytes=1_000_000, timeout_s=10,
                          filename="boleto.pdf")
    assert got.path.read_bytes() == b"%PDF-1.4 " + b"x" * 50_000
    assert got.path.parent == tmp_path and oct(got.path.stat().st_mode & 0o777) == "0o600"
    assert (got.content_type, got.filename, got.size) == ("application/pdf", "boleto.pdf", 50_009)
    assert list(tmp_path.iterdir()) == [got.path]


async def test_another_host_is_refused_without_a_request(
        fake_chatwoot: FakeChatwoot, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(AttachmentError) as caught:
            await fetch(client, "http://169.254.169.254/latest/meta-data",
                        chatwoot_url=fake_chatwoot.url, spool=tmp_path, max_bytes=10,
                        timeout_s=1)
    assert caught.value.reason == "foreign_host"
    assert list(tmp_path.iterdir()) == []


async def test_too_large_is_refused_and_nothing_is_left(
        fake_chatwoot: FakeChatwoot, attachment: dict[str, object], tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(AttachmentError) as caught:
            await fetch(client, str(attachment["data_url"]), chatwoot_url=fake_chatwoot.url,
                        spool=tmp_path, max_bytes=10_000, timeout_s=10)
    assert caught.value.reason == "too_large"
    assert list(tmp_path.iterdir()) == []


def test_names_from_webhooks_never_choose_a_path() -> None:
    assert safe_filename("../../etc/passwd", "text/plain", "x") == "passwd.txt"
    assert safe_filename("relatório final.pdf", "application/pdf", "x") == "relatório final.pdf"
    assert safe_filename(None, "image/jpeg", "anexo") == "anexo.jpg"
    assert same_origin("https://cw.example.com/rails/x", "https://cw.example.com")
    assert not same_origin("https://cw.example.com.evil.io/x", "https://cw.example.com")
    assert not same_origin("http://cw.example.com/x", "https://cw.example.com")


async def test_a_compressed_download_is_refused_before_it_inflates(tmp_path: Path) -> None:
    """A small gzip body can inflate to hundreds of MB in one chunk, before the size cap: Ponte
    asks for no encoding, and refuses a server that compresses anyway."""
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB on the wire
    asked: list[str | None] = []

    class Storage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            asked.append(self.headers.get("accept-encoding"))
            self.send_response(200)
            self.send_header("content-type", "application/pdf")
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(AttachmentError) as caught:
                await fetch(client, f"{url}/rails/active_storage/x.pdf", chatwoot_url=url,
                            spool=tmp_path, max_bytes=64 * 2**20, timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["identity"]
    assert caught.value.reason == "download_failed" and "compressed" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
