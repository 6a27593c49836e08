"""`ponte status` against a real `ponte serve` (scripted sidecar): plain text when piped,
colours and in-place refresh on a terminal, `--url` / `--token` / SERVER_ADMIN_TOKEN, and clear
exit codes when Ponte is unreachable or refuses the token."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bridge.cli_status import EXIT_DENIED, EXIT_UNREACHABLE
from tests.conftest import (
    ROOT,
    SettingsFactory,
    free_port,
    scripted_sidecar_command,
    settings_env,
    wait_for,
)
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.test_page import pairing_then_customer

ADMIN_TOKEN = "adm-status-cli-4411"


class Host(Desk):
    control: Path

    def env(self, **changes: str | None) -> dict[str, str]:
        """The environment of an operator's shell on this host (None removes a variable)."""
        env = settings_env(self.settings)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def status(self, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge.cli", "status", *args], cwd=ROOT,
                              env=env or self.env(), capture_output=True, text=True, timeout=30)


@pytest.fixture
def host(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
         tmp_path: Path) -> Iterator[Host]:
    control = tmp_path / "control"
    command = scripted_sidecar_command(control, pairing_then_customer(tmp_path / "wa.jsonl"))
    with open_desk(fake_chatwoot, make_settings, tmp_path, baileys_sidecar_command=command,
                   server_admin_token=ADMIN_TOKEN) as desk:
        host = Host(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        host.control = control
        yield host


def test_plain_output_follows_the_instance_from_qr_to_open(host: Host,
                                                           redis_client: redis.Redis) -> None:
    empty = host.status()
    assert empty.returncode == 0, empty.stderr
    assert "No instance yet" in empty.stdout

    host.command("erga")
    wait_for(lambda: "qr_pending" in host.status().stdout, timeout=20,
             message="the instance waiting for a scan")
    pending = host.status()  # SERVER_PORT and SERVER_ADMIN_TOKEN from the environment
    assert pending.returncode == 0
    out = pending.stdout
    assert "\x1b[" not in out  # piped: no colours, no cursor moves
    (row,) = [line for line in out.splitlines() if line.startswith("WhatsApp Loja")]
    assert row.split()[:4] == ["WhatsApp", "Loja", host.instance, "qr_pending"]
    assert "pending" in row.split()[4:] and "QR code is waiting" in out
    assert "QUEUES  ponte-chatwoot 0" in out and "failed 0" in out

    (host.control / f"{host.instance}.scanned").touch()
    wait_for(lambda: " open " in host.status().stdout, timeout=20, message="open")
    # A failure as the worker records it (deliver._fail): listed without its payload.
    redis_client.lpush("ponte:failed", json.dumps({
        "mailbox": f"ponte:mailbox:wa:{host.instance}:5511988887777@s.whatsapp.net",
        "item": {"id": "WAID-9", "kind": "wa_message", "at": time.time(),
                 "payload": {"text": "conteúdo privado"}},
        "error": "ChatwootRejected", "reason": "Chatwoot POST /x answered 422",
        "at": time.time()}))
    out = host.status().stdout
    (row,) = [line for line in out.splitlines() if line.startswith("WhatsApp Loja")]
    assert row.split()[3:5] == ["open", "+5511999990000"]
    assert "RECENT FAILURES" in out and "ChatwootRejected" in out and "failed 1" in out
    assert "conteúdo privado" not in out


def test_url_token_and_refusals(host: Host) -> None:
    host.command("erga")
    wait_for(lambda: "qr_pending" in host.status().stdout, timeout=20, message="qr_pending")
    # Another host: nothing listens on its SERVER_PORT, no token in its environment.
    elsewhere = host.env(SERVER_PORT=str(free_port()), SERVER_ADMIN_TOKEN=None)
    remote = host.status("--url", host.base + "/", "--token", ADMIN_TOKEN, env=elsewhere)
    assert remote.returncode == 0, remote.stderr
    assert host.instance in remote.stdout and host.base in remote.stdout

    wrong = host.status("--url", host.base, "--token", "not-it", env=elsewhere)
    assert wrong.returncode == EXIT_DENIED and wrong.stdout == ""
    assert "refused the admin token (401)" in wrong.stderr and "--token" in wrong.stderr
    missing = host.status("--url", host.base, env=elsewhere)
    assert missing.returncode == EXIT_DENIED
    unreachable = host.status(env=elsewhere)
    assert unreachable.returncode == EXIT_UNREACHABLE
    assert "cannot reach http://127.0.0.1:" in unreachable.stderr

    coloured = host.status("--color", "always")
    assert "\x1b[33mqr_pending" in coloured.stdout  # amber, as on the page


def test_watch_refreshes_piped_and_in_place_on_a_terminal(host: Host) -> None:
    # The original bridge's ./dashboard.sh, now `ponte status --watch`.
    piped = subprocess.Popen([str(ROOT / "dashboard.sh"), "--watch", "0.3"], cwd=ROOT,
                             env=host.env(), stdout=subprocess.PIPE, text=True)
    assert piped.stdout is not None
    try:
        headers = [piped.stdout.readline() for _ in range(30)]
        assert sum(line.startswith("Ponte http") for line in headers) >= 2  # one after another
    finally:
        piped.send_signal(signal.SIGINT)
        assert piped.wait(10) == 0  # Ctrl-C ends the watch quietly
        piped.stdout.close()

    # On a terminal: cursor hidden, each frame drawn from the top, cursor back on Ctrl-C.
    argv = [sys.executable, "-m", "bridge.cli", "status", "--watch", "0.3"]
    leader, follower = pty.openpty()
    term = subprocess.Popen(argv, cwd=ROOT, env=host.env(TERM="xterm"), stdout=follower,
                            stderr=follower, stdin=follower)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while seen.count(b"\x1b[H") < 2 and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 65536)
        term.send_signal(signal.SIGINT)
        assert term.wait(10) == 0
        while select.select([leader], [], [], 0.5)[0]:
            try:
                seen += os.read(leader, 65536)
            except OSError:  # the other end closed
                break
    finally:
        if term.poll() is None:
            term.kill()
        os.close(leader)
    assert seen.startswith(b"\x1b[?25l\x1b[2J") and seen.count(b"\x1b[H") >= 2
    assert b"\x1b[1mPonte\x1b[0m" in seen and seen.rstrip().endswith(b"\x1b[?25h")
