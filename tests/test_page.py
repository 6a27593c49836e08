"""The status page `/` in a real headless Chromium (Debian's), loaded over HTTP from a real
`ponte serve`: instances listed, the live QR shown while the scripted sidecar waits for a scan
(read back from the screenshot, as a phone's camera would), and gone once it is linked.

Chromium comes from `make test`'s set-up (apt-get); where it cannot be installed the browser
tests skip and say why. Every Chromium run is time-boxed and killed with its whole process group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.web.page import CODES_HIDDEN, COOKIE, cookie_value, failure_view, render_page
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for, write_script
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.test_flow import QR, frame_message

ADMIN_TOKEN = "adm-7Hq2-status-page"
CHROMIUM_TIMEOUT_SECONDS = 45
WINDOW = (1280, 1000)
# What the machine notes say Chromium needs here: no sandbox as root, no GPU, and none of the
# background connections a closed network refuses.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--disable-dev-shm-usage", "--lang=en-US"]


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed and `make test` could not install it "
                    "(apt-get install chromium failed or was not allowed): browser test skipped")
    return found


class Browser:
    """Debian's Chromium, one fresh profile per page load (so no cookie survives a load)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.loads = 0

    def _run(self, url: str, *extra: str) -> str:
        self.loads += 1
        profile = self.workdir / f"profile-{self.loads}"
        argv = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", *extra, url]
        # Its own process group: on a timeout the renderer and GPU helpers die with it.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_SECONDS}s: {argv}")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # helpers it may have left behind
            except ProcessLookupError:
                pass
        assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
        return out.decode()

    def dom(self, url: str) -> str:
        """The DOM after load, as Chromium built it."""
        return self._run(url, "--dump-dom")

    def screenshot(self, url: str, path: Path) -> Path:
        self._run(url, f"--screenshot={path}")
        assert path.stat().st_size > 0
        return path


def decode_qr_codes(png: Path) -> list[str]:
    import zxingcpp
    from PIL import Image

    return [str(b.text) for b in zxingcpp.read_barcodes(Image.open(png))]


def pairing_then_customer(path: Path) -> Path:
    """Pairing by QR, open once the test says `scanned`, then a customer writes once."""
    me = {"id": "5511999990000:3@s.whatsapp.net", "lid": "998877@lid", "name": "Loja"}
    return write_script(path, [
        {"emit": {"type": "ready", "protocol": 1, "sidecar": "scripted",
                  "baileys": "7.0.0-rc14", "pid": "$pid"}},
        {"emit": {"type": "connection", "state": "connecting"}},
        {"emit": {"type": "qr", "qr": QR}},
        {"wait_file": "scanned"},
        {"emit": {"type": "connection", "state": "connecting", "is_new_login": True}},
        {"emit": {"type": "connection", "state": "open", "me": me}},
        {"wait_file": "customer_writes"},
        frame_message("WAID-PAGE-1", "texto que nunca aparece na página"),
    ])


class Ops(Desk):
    control: Path
    second_inbox: dict[str, Any]

    def trigger(self, instance: str, name: str) -> None:
        (self.control / f"{instance}.{name}").touch()

    def global_status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/global-status",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def state_of(self, instance: str) -> str | None:
        return next((i["status"] for i in self.global_status()["instancesGlobal"]
                     if i["instanceId"] == instance), None)


@pytest.fixture
def ops(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
        tmp_path: Path) -> Iterator[Ops]:
    yield from _ops(fake_chatwoot, make_settings, tmp_path, server_admin_token=ADMIN_TOKEN)


@pytest.fixture
def ops_without_token(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
                      tmp_path: Path) -> Iterator[Ops]:
    yield from _ops(fake_chatwoot, make_settings, tmp_path)


def _ops(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path,
         **settings: Any) -> Iterator[Ops]:
    control = tmp_path / "control"
    command = scripted_sidecar_command(control, pairing_then_customer(tmp_path / "wa.jsonl"))
    with open_desk(fake_chatwoot, make_settings, tmp_path, baileys_sidecar_command=command,
                   **settings) as desk:
        fields = {f: getattr(desk, f) for f in desk.__dataclass_fields__}
        ops = Ops(**fields)
        ops.control = control
        ops.second_inbox = fake_chatwoot.add_inbox("WhatsApp Vendas")
        yield ops


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return Browser(chromium_binary(), tmp_path / "chromium")


# `browser` first: without Chromium the test skips before starting serve.
def test_status_page_in_chromium_shows_the_qr_until_linked(browser: Browser, ops: Ops,
                                                          tmp_path: Path) -> None:
    fake = ops.fake
    first, second = ops.instance, f"1-{ops.second_inbox['id']}"
    started = time.monotonic()

    # Two numbers being linked; the first one is scanned, the second waits with its QR.
    ops.command("erga")
    ops.command(f"erga {ops.second_inbox['id']}")
    wait_for(lambda: ops.state_of(first) == "qr_pending" and ops.state_of(second) == "qr_pending",
             timeout=20, message="both instances showing a QR")
    ops.trigger(first, "scanned")
    wait_for(lambda: ops.state_of(first) == "open", timeout=20, message="first instance open")
    # One message that fails for good, so the failures table has a real entry: Chatwoot
    # refuses (422) the customer's message, not the operators' notes.
    ops.wait_note("5511999990000")
    fake.fail(rf"/conversations/(?!{ops.ops_conversation}/)\d+/messages$", "POST", status=422)
    ops.trigger(first, "customer_writes")
    wait_for(lambda: ops.global_status()["failedCount"] == 1, timeout=30,
             message="the customer's message in the failed list")

    page = f"{ops.base}/?token={ADMIN_TOKEN}"
    dom = browser.dom(page)
    # The token led to a cookie and a redirect: the page rendered, not the token form.
    rows = re.findall(r'<tr class="instance" data-instance="([^"]+)"', dom)
    assert sorted(rows) == sorted([first, second])
    assert re.search(rf'data-instance="{first}".*?class="state ok">open<', dom, re.S)
    assert re.search(rf'data-instance="{second}".*?class="state pending">qr_pending<', dom, re.S)
    assert "+5511999990000" in dom and "WhatsApp Loja" in dom
    assert dom.count('<svg') == 1 and 'class="qr"' in dom
    assert "ChatwootRejected" in dom and "wa_message" in dom  # the failure, by kind and error
    assert "nunca aparece" not in dom  # never message text
    shot = browser.screenshot(page, tmp_path / "page-qr.png")
    # Scannable on screen: the QR the sidecar emitted, whole, read back from the pixels.
    assert decode_qr_codes(shot) == [QR]

    # The phone scans the second QR: once linked, the QR is gone from the page.
    ops.trigger(second, "scanned")
    wait_for(lambda: ops.state_of(second) == "open", timeout=20, message="second instance open")
    dom = browser.dom(page)
    assert "<svg" not in dom and "Pairing code" not in dom
    assert dom.count('class="state ok">open<') == 2
    shot = browser.screenshot(page, tmp_path / "page-linked.png")
    assert decode_qr_codes(shot) == []
    print(f"browser test: {browser.loads} Chromium loads, "
          f"{time.monotonic() - started:.1f}s after serve was up")


def test_page_access_with_the_admin_token(ops: Ops) -> None:
    base = ops.base
    # No token: the token form, nothing else, and nothing cached.
    denied = httpx.get(f"{base}/")
    assert denied.status_code == 401 and 'name="token"' in denied.text
    assert "instancesGlobal" not in denied.text and "data-instance" not in denied.text
    assert denied.headers["cache-control"] == "no-store"
    # A wrong token in the URL: 401, no cookie.
    wrong = httpx.get(f"{base}/?token=nope")
    assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
    # The right one: a cookie (not the token itself) and a redirect that drops the token.
    right = httpx.get(f"{base}/?token={ADMIN_TOKEN}")
    assert right.status_code == 303 and right.headers["location"] == "."
    cookie = right.cookies[COOKIE]
    assert cookie == cookie_value(ADMIN_TOKEN) and ADMIN_TOKEN not in right.headers["set-cookie"]
    assert "httponly" in right.headers["set-cookie"].lower()
    assert "samesite=lax" in right.headers["set-cookie"].lower()
    # The cookie opens the page and the failures list; the bearer header does too.
    assert httpx.get(f"{base}/", cookies={COOKIE: cookie}).status_code == 200
    assert httpx.get(f"{base}/recent-failures", cookies={COOKIE: cookie}).json() == {
        "failures": [], "serverTime": pytest.approx(time.time(), abs=60)}
    bearer = httpx.get(f"{base}/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status_code == 200 and "<h1>Ponte</h1>" in bearer.text
    assert httpx.get(f"{base}/", cookies={COOKIE: cookie_value("other")}).status_code == 401
    assert httpx.get(f"{base}/recent-failures").status_code == 401
    # The cookie is not an admin credential for the JSON endpoints of others.
    assert httpx.get(f"{base}/global-status", cookies={COOKIE: cookie}).status_code == 401


def test_without_an_admin_token_the_page_never_shows_a_qr(ops_without_token: Ops) -> None:
    # "Tenants kept apart", B: whoever scans the QR owns the number, and without a token the
    # page answers anyone who reaches it.
    ops = ops_without_token
    ops.command("erga")
    wait_for(lambda: ops.state_of(ops.instance) == "qr_pending", timeout=20,
             message="the instance showing a QR")
    page = httpx.get(f"{ops.base}/", timeout=5)
    assert page.status_code == 200
    assert re.search(rf'data-instance="{ops.instance}".*?class="state pending">qr_pending<',
                     page.text, re.S)
    assert "<svg" not in page.text and "Pairing code" not in page.text
    assert escape(CODES_HIDDEN) in page.text


def test_hidden_codes_are_said_only_for_an_instance_waiting_to_link() -> None:
    status = {"instancesGlobal": [{"instanceId": "1-9", "status": "qr_pending"},
                                  {"instanceId": "1-8", "status": "open"}]}
    html = render_page(status, {}, [], codes_hidden=True)
    assert html.count(escape(CODES_HIDDEN)) == 1
    assert escape(CODES_HIDDEN) not in render_page(status, {}, [])


def test_everything_on_the_page_is_escaped() -> None:
    hostile = '<script>alert(1)</script>"'
    status = {"instancesGlobal": [{
        "instanceId": "1-9", "instanceName": hostile, "status": hostile, "connectedJid": hostile,
        "lastError": hostile, "uptimeSeconds": 75, "restarts": hostile}],
        "queues": {hostile: hostile}, "serverTime": hostile, "failedCount": 1}
    failure = failure_view('{"mailbox": "ponte:mailbox:wa:1-9:x", "error": "' + hostile.replace(
        '"', '\\"') + '", "reason": "<img src=x>", "item": {"kind": "note", "payload": '
        '{"content": "secret text"}}, "at": 1}')
    html = render_page(status, {"1-9": (None, "<b>CODE</b>")}, [failure])
    assert "<script>" not in html and "<img" not in html and "<b>CODE" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in html
    assert "secret text" not in html  # a failure's payload never reaches the page
    assert "&lt;b&gt;CODE&lt;/b&gt;" in html  # the pairing code, escaped
