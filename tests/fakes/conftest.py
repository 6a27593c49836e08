"""Fixtures for the fake's own tests: an HTTP client on the fake and a webhook receiver.

The receiver is built on the standard library's http.server on purpose: it shares no code with
the fake, so what it records is what went over the wire.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from . import chatwoot
from .chatwoot import FakeChatwoot

fake_chatwoot = chatwoot.fake_chatwoot  # the fixture, for this directory's tests


@dataclass(frozen=True, slots=True)
class Received:
    """One POST as the receiver saw it: header names as sent, the raw body bytes."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return str(self.json.get("event"))


class Receiver:
    """A webhook endpoint whose answer (status, delay, redirect) a test can change."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.delay = 0.0
        self.location: str | None = None
        self.gate: threading.Event | None = None  # when set up, answers wait until it is set
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(Received(self.path, list(self.headers.items()),
                                                      body))
                    status, delay, location = receiver.status, receiver.delay, receiver.location
                    gate = receiver.gate
                if gate is not None:
                    gate.wait(timeout=5)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the fake hung up on a slow answer: expected in timeout tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.02})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[str]:
        with self._lock:
            return [r.event for r in self.received]

    def of(self, event: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.event == event]

    def wait(self, event: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(event)
            if len(found) >= count:
                return found
            time.sleep(0.005)
        raise TimeoutError(f"{count} x {event} not received; got {self.events()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


# verify=False only spares loading the CA bundle (~50 ms a client): everything here is plain
# HTTP on loopback.
@pytest.fixture
def api(fake_chatwoot: FakeChatwoot) -> Iterator[httpx.Client]:
    """An httpx client on the fake, authenticated as the bridge's administrator."""
    with httpx.Client(base_url=f"{fake_chatwoot.url}/api/v1/accounts/1",
                      headers={"api_access_token": fake_chatwoot.token}, timeout=5,
                      verify=False) as client:
        yield client


@pytest.fixture
def web() -> Iterator[httpx.Client]:
    """A bare httpx client: no base URL, no token."""
    with httpx.Client(timeout=5, verify=False) as client:
        yield client
