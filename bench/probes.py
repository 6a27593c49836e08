"""Where the bridge benchmark reads its timestamps, without touching Ponte: Redis MONITOR (the
moments serve and the worker write each message's keys), the fake Chatwoot's recorded calls and
webhook deliveries, and the simulator's control API. All are wall-clock (CLOCK_REALTIME) times
from processes on this machine, so they can be subtracted from each other."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from bench.infra import BenchError
from tests.fakes.chatwoot import FakeChatwoot

# Redis commands that mark a message's progress, and the message id each one carries.
_MARKS: list[tuple[str, re.Pattern[str]]] = [
    # serve appended a sidecar `message` frame to its chat's mailbox (MailboxItem JSON, id first)
    ("mailbox", re.compile(r'^RPUSH ponte:mailbox:wa:\S+ \{"id":"([^"\\]+)"')),
    # a drain job reached the item: its first step looks the WhatsApp id up in the mapping
    ("worker", re.compile(r"^GET ponte:map:wa:[^: ]+:(\S+)$")),
    # Chatwoot answered and the worker recorded the mapping
    ("mapped", re.compile(r"^SET ponte:map:wa:[^: ]+:(\S+) ")),
    # serve accepted a Chatwoot webhook for an agent message (dedupe flag per Chatwoot message)
    ("webhook", re.compile(r"^SET ponte:seen:cw:\d+:(\d+) ")),
    # ...and queued it in the instance's outbox stream
    ("outbox", re.compile(r"^XADD ponte:outbox:\S+ .*?cw_message_id\D{1,8}(\d+)")),
    # the sidecar answered send_text and serve recorded the mapping
    ("sent", re.compile(r"^SET ponte:map:cw:\d+:(\d+) ")),
]


class RedisMonitor:
    """MONITOR in a thread, keeping the first time each (mark, id) was seen. Redis stamps each
    command with its own clock when it executes it (inside MULTI: at EXEC). MONITOR slows Redis
    down a little; at these rates (tens of commands per message) it is noise."""

    def __init__(self, url: str) -> None:
        # No read timeout: redis-py's default (5 s) would end MONITOR at the first quiet moment,
        # and it drops a connection whose read timed out. stop() closes it instead.
        self._client = redis.Redis.from_url(url, socket_timeout=None)
        self._marks: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis-monitor")
        self._started = threading.Event()
        self._monitor: Any = None
        self._error: BaseException | None = None
        self.commands = 0  # every command Redis executed (RQ's bookkeeping included)
        self.jobs = 0  # RQ jobs enqueued

    def start(self) -> RedisMonitor:
        self._thread.start()
        if not self._started.wait(5):
            raise RuntimeError("Redis MONITOR did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.connection.disconnect()
        self._thread.join(5)
        self._client.close()

    def _run(self) -> None:
        try:
            self._listen()
        except BaseException as err:  # surfaced by at(): a dead monitor must not look like a hang
            self._error = err

    def _listen(self) -> None:
        # redis-py's monitor() carries no annotations.
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._monitor = monitor
            self._started.set()
            while not self._stop.is_set():
                try:
                    command = monitor.next_command()
                except Exception:
                    if self._stop.is_set():
                        return  # stop() closed the connection under the read
                    raise
                if command is None:
                    continue
                text: str = command["command"]
                self.commands += 1
                if text.startswith("RPUSH rq:queue:"):
                    self.jobs += 1
                for name, pattern in _MARKS:
                    if match := pattern.match(text):
                        with self._lock:
                            self._marks.setdefault((name, match.group(1)), command["time"])
                        break

    def at(self, mark: str, key: str | int) -> float | None:
        if self._error is not None:
            raise BenchError(f"Redis MONITOR stopped: {self._error!r}")
        with self._lock:
            return self._marks.get((mark, str(key)))


class ChatwootWatch:
    """The fake Chatwoot's message creations by WhatsApp id (the `source_id` the worker posts),
    stamped when the request arrived; scans only calls it has not seen yet."""

    def __init__(self, fake: FakeChatwoot) -> None:
        self._fake = fake
        self._seen = 0
        self.posted: dict[str, float] = {}

    def poll(self) -> dict[str, float]:
        calls = self._fake.calls
        for call in calls[self._seen:]:
            created = 200 <= call.status < 300
            if call.method == "POST" and call.path.endswith("/messages") and created:
                source_id = call.params.get("source_id")
                if source_id:
                    self.posted.setdefault(str(source_id), call.at)
        # A call still being answered has status 0: look at it again next time.
        pending = next((i for i in range(self._seen, len(calls)) if calls[i].status == 0), None)
        self._seen = len(calls) if pending is None else pending
        return self.posted

    def webhook_started(self, cw_message_id: int) -> float | None:
        """When the fake began POSTing the message_created webhook of a Chatwoot message."""
        for delivery in self._fake.deliveries_for("message_created"):
            if delivery.payload.get("id") == cw_message_id:
                return delivery.at - delivery.duration
        return None


@dataclass(frozen=True)
class Injected:
    id: str
    sent_at: float | None  # when the simulator wrote the stanza to the sidecar's socket


class SimulatorControl:
    """The simulator's control routes the benchmark needs with every field of the answer
    (tests.fakes.whatsapp.WhatsAppSimulator.send_text returns only the id)."""

    def __init__(self, port: int) -> None:
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        answer = self._http.post(path, json=body)
        answer.raise_for_status()
        return answer.json()

    def add_contact(self, phone: str, push_name: str) -> None:
        self._post("/admin/contacts", {"phone": phone, "push_name": push_name})

    def send_text(self, from_phone: str, text: str, to: str | None = None) -> Injected:
        """`to`: the linked number, needed once the simulator holds several accounts."""
        body = {"from_phone": from_phone, "text": text} | ({"to": to} if to else {})
        result = self._post("/admin/send-text", body)
        live = [d["sent_at_ms"] for d in result["devices"] if d.get("sent_at_ms")]
        return Injected(id=str(result["id"]), sent_at=live[0] / 1000 if live else None)

    def received_counts(self) -> dict[str, int]:
        answer = self._http.get("/admin/contacts")
        answer.raise_for_status()
        return {str(c["phone"]): int(c["received"]) for c in answer.json()}
