"""The simulated WhatsApp Web server (tests/simulator, Node) driven from Python tests.

`WhatsAppSimulator` starts `node tests/simulator/server.mjs --port 0` on 127.0.0.1 and wraps its
HTTP control API (tests/simulator/README.md): the phone scans QR codes and types pairing codes,
contacts send and receive messages, and errors are injected on the live connections. The real
sidecar reaches it through `BAILEYS_WA_WEBSOCKET_URL`, started with the test-only certificate
preload (`sidecar_command`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "simulator" / "server.mjs"
PRELOAD = "./tests/simulator/cert-preload.mjs"
PHONE = "5511999990000"  # the linked number, by default


class SimulatorError(RuntimeError):
    pass


class WhatsAppSimulator:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.root_key = ""
        self._http: httpx.Client | None = None

    def start(self) -> WhatsAppSimulator:
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(["node", str(SERVER), "--port", "0"], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=err)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the one ready line
        if not line:
            raise SimulatorError("simulator did not start:\n" + self.output())
        ready = json.loads(line)
        self.port, self.root_key = int(ready["port"]), ready["root_key"]
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-20000:] if self.log.exists() else ""

    # --- how the bridge reaches it ---------------------------------------------------------
    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def sidecar_command(self) -> str:
        """The real sidecar, trusting the simulator's certificate root (test-only preload)."""
        return shlex.join(["node", "--import", PRELOAD, "sidecar/main.js"])

    # --- control API -----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              **params: Any) -> Any:
        assert self._http is not None, "start() first"
        answer = self._http.request(method, path, json=body, params=params or None)
        if answer.status_code >= 400:
            raise SimulatorError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/state"))

    def configure(self, **config: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/admin/config", config))

    def scan_qr(self, qr: str, *, phone: str = PHONE, **extra: Any) -> dict[str, Any]:
        """The phone scans `qr`: pair-success, then 515; the client logs in by itself."""
        return dict(self._call("POST", "/admin/scan-qr", {"qr": qr, "phone": phone, **extra}))

    def type_pairing_code(self, code: str, *, phone: str = PHONE) -> dict[str, Any]:
        return dict(self._call("POST", "/admin/pairing-code", {"phone": phone, "code": code}))

    def add_contact(self, phone: str, *, lid: str | None = None,
                    push_name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"phone": phone}
        if lid:
            body["lid"] = lid
        if push_name:
            body["push_name"] = push_name
        return dict(self._call("POST", "/admin/contacts", body))

    def send_text(self, from_phone: str, text: str, *, addressing: str = "pn",
                  **extra: Any) -> str:
        """A contact writes to the linked number; returns the WhatsApp message id."""
        result = self._call("POST", "/admin/send-text",
                            {"from_phone": from_phone, "text": text, "addressing": addressing,
                             **extra})
        return str(result["id"])

    def send_media(self, from_phone: str, kind: str, data: bytes, mimetype: str,
                   **extra: Any) -> str:
        """A contact sends media (served by the simulator without directPath); returns the id."""
        import base64

        result = self._call("POST", "/admin/send-media", {
            "from_phone": from_phone, "kind": kind, "mimetype": mimetype,
            "bytes_b64": base64.b64encode(data).decode(), **extra})
        return str(result["id"])

    def received(self, phone: str) -> list[dict[str, Any]]:
        """What a contact received from the linked number, decrypted, in order."""
        return list(self._call("GET", "/admin/received", phone=phone))

    def received_media(self, phone: str, wa_id: str) -> bytes:
        """The decrypted bytes of media the linked number sent to a contact."""
        assert self._http is not None, "start() first"
        answer = self._http.get("/admin/received-media", params={"phone": phone, "id": wa_id})
        if answer.status_code >= 400:
            raise SimulatorError(f"received-media: {answer.status_code} {answer.text}")
        return answer.content

    def tls_cert(self) -> str:
        """The PEM of the simulator's HTTPS certificate (its media upload host): a sidecar that
        sends media trusts it through NODE_EXTRA_CA_CERTS."""
        return str(self._call("GET", "/admin/tls-cert")["pem"])

    def kick(self, kind: str, code: int | None = None) -> list[str]:
        body: dict[str, Any] = {"kind": kind}
        if code is not None:
            body["code"] = code
        return list(self._call("POST", "/admin/kick", body)["kicked"])

    def unlink(self, phone: str = PHONE) -> None:
        self._call("POST", "/admin/unlink", {"phone": phone})

    def open_connections(self) -> list[dict[str, Any]]:
        return [c for c in self.state()["connections"] if c["stage"] == "open"]

    def wait_open(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connections = [c for c in self.open_connections() if c.get("ready")]
            if connections:
                return connections[0]
            time.sleep(0.05)
        raise SimulatorError("no client logged in\n" + self.output())


@pytest.fixture
def whatsapp(tmp_path: Path) -> Iterator[WhatsAppSimulator]:
    simulator = WhatsAppSimulator(tmp_path / "simulator.log").start()
    try:
        yield simulator
    finally:
        simulator.stop()
