"""The fault suite: ten customers write twenty messages each to a number linked through the real
Baileys sidecar (against the simulated WhatsApp), relayed by real `ponte serve` and `ponte
worker` processes on a Redis of the test's own (appendonly on) into the fake Chatwoot, while
something breaks. Counted in Chatwoot afterwards: nothing lost, nothing twice, each chat in
WhatsApp's order, one contact and one conversation per customer. Each test prints its recovery
time (`pytest tests/test_faults.py -s`); docs/benchmarks.md keeps the figures ("Faults")."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, SettingsFactory, settings_env, wait_for
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import WhatsAppSimulator
from tests.processes import PonteProcess
from tests.redis_server import RedisServer
from tests.test_whatsapp_e2e import link

pytestmark = [
    pytest.mark.skipif(
        shutil.which("node") is None or not (ROOT / "node_modules" / "@whiskeysockets").exists(),
        reason="needs node and `npm ci` (make test does both)"),
    pytest.mark.timeout(240),
]

CONTACTS, PER_CONTACT = 10, 20
PHONES = [f"55119777{i:05d}" for i in range(CONTACTS)]
WARM_UP = "5511966660000"


@dataclass
class Burst:
    """What the customers sent: WhatsApp ids per phone, in the order they were sent."""

    sent: dict[str, list[str]]
    started: float
    fault_at: float | None = None
    sent_at: dict[str, float] = field(default_factory=dict)  # WhatsApp id -> when

    @property
    def ids(self) -> list[str]:
        return [i for ids in self.sent.values() for i in ids]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def desk(fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator, own_redis: RedisServer,
         make_settings: SettingsFactory, tmp_path: Path) -> Iterator[Desk]:
    with open_desk(fake_chatwoot, make_settings, tmp_path, redis_url=own_redis.url,
                   baileys_sidecar_command=whatsapp.sidecar_command,
                   baileys_wa_websocket_url=whatsapp.websocket_url,
                   chatwoot_queue_concurrency=5, bullmq_job_attempts=30,
                   chatwoot_old_message_minutes=0, chatwoot_api_timeout=2000,
                   server_redis_outage_note_seconds=1) as opened:
        link(opened, whatsapp)
        # Steady state first: a message through end to end (a first link's own start-up, such
        # as Baileys holding events for the initial sync, is not the fault under test).
        whatsapp.add_contact(WARM_UP)
        first = whatsapp.send_text(WARM_UP, "oi")
        wait_for(lambda: relayed(opened, {first}), timeout=60, message="the warm-up message")
        for phone in PHONES:
            whatsapp.add_contact(phone)
        try:
            yield opened
        except BaseException:
            print("--- simulator ---\n" + whatsapp.output())
            raise


def burst(whatsapp: WhatsAppSimulator, fault: Callable[[], None], *, at: int = 60,
          rounds: int = PER_CONTACT) -> Burst:
    """Customers' messages interleaved (m0 of each, then m1, ...); `fault` runs after `at`."""
    result = Burst(sent=defaultdict(list), started=time.monotonic())
    for n in range(CONTACTS * rounds):
        phone = PHONES[n % CONTACTS]
        wa_id = whatsapp.send_text(phone, f"{phone[-2:]}:{n // CONTACTS}")
        result.sent[phone].append(wa_id)
        result.sent_at[wa_id] = time.monotonic()
        if n == at:
            result.fault_at = time.monotonic()
            fault()
    return result


def settled(samples: Iterator[set[str]], *, quiet: float = 8.0, timeout: float = 120.0
            ) -> set[str]:
    """The last sample once it stopped growing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last: set[str] = set()
    changed = time.monotonic()
    for sample in samples:
        if sample != last:
            last, changed = sample, time.monotonic()
        if time.monotonic() - changed > quiet or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return last


def relayed(desk: Desk, ids: set[str]) -> list[dict[str, object]]:
    return [m for m in desk.fake.messages() if m["source_id"] in ids]


def assert_nothing_lost(desk: Desk, sent: Burst, *, timeout: float = 120.0,
                        label: str = "") -> float:
    """Every message once, in order, one contact and conversation per customer. Returns the
    seconds from the fault to the last message in Chatwoot."""
    ids = set(sent.ids)
    try:
        wait_for(lambda: {m["source_id"] for m in relayed(desk, ids)} >= ids, timeout=timeout,
                 interval=0.2, message="every message in Chatwoot")
    except BaseException:
        got = {m["source_id"] for m in relayed(desk, ids)}
        print(f"lost {len(ids - got)} of {len(ids)}")
        raise
    recovered = time.monotonic() - (sent.fault_at or sent.started)
    messages = relayed(desk, ids)
    copies = Counter(m["source_id"] for m in messages)
    assert [i for i, n in copies.items() if n > 1] == [], "duplicated in Chatwoot"
    by_conversation: dict[object, list[object]] = defaultdict(list)
    for m in messages:  # oldest first: the order Chatwoot shows
        by_conversation[m["conversation_id"]].append(m["source_id"])
    assert len(by_conversation) == CONTACTS, "one conversation per customer"
    assert sorted(by_conversation.values(), key=lambda ids: str(ids[0])) == sorted(
        sent.sent.values(), key=lambda ids: str(ids[0])), "each chat in WhatsApp's order"
    phones = Counter(c["phone_number"] for c in desk.fake.contacts
                     if c["phone_number"] in {f"+{p}" for p in PHONES})
    assert phones == {f"+{p}": 1 for p in PHONES}, "one contact per customer"
    print(f"{label}: 0 lost, 0 duplicated of {len(ids)}; last message {recovered:.1f} s after "
          "the fault")
    return recovered


def test_redis_stopped_three_seconds_mid_burst_loses_nothing(
        desk: Desk, whatsapp: WhatsAppSimulator, own_redis: RedisServer) -> None:
    restarted = threading.Event()
    (warm_up,) = [m for m in desk.fake.messages() if m["message_type"] == 0
                  and not m["private"] and m["conversation_id"] != desk.ops_conversation]
    replies: list[int] = []

    def restart_later() -> None:
        own_redis.stop()
        # Agents keep answering while Redis is down.
        for n in range(3):
            replies.append(desk.fake.agent_message(warm_up["conversation_id"],
                                                   f"resposta {n}")["id"])
        time.sleep(3.0)
        own_redis.start()
        restarted.set()

    sent = burst(whatsapp, lambda: threading.Thread(target=restart_later, daemon=True).start())
    assert restarted.wait(30), "redis did not come back"
    journal = httpx.get(f"{desk.base}/global-status").json()["journal"]
    assert journal["outages"] >= 1, "serve never noticed that Redis was gone"
    assert journal["journaledTotal"] > 0, "nothing arrived while Redis was down"
    assert_nothing_lost(desk, sent, label="redis restart")
    # Each of the agents' webhooks was answered 200 once journaled; the replies reach the
    # customer, in order, none failed.
    desk.fake.flush_webhooks()
    hooks = [d for d in desk.fake.deliveries_for("message_created")
             if d.payload.get("id") in replies]
    assert [(d.status, json.loads(d.response_body)["status"]) for d in hooks] == [
        (200, "journaled")] * 3
    wait_for(lambda: [m.get("text") for m in whatsapp.received(WARM_UP)][-3:]
             == [f"resposta {n}" for n in range(3)], timeout=30,
             message="the replies written during the outage on the phone")
    assert all(desk.fake.message(i)["status"] != "failed" for i in replies)
    journal = httpx.get(f"{desk.base}/global-status").json()["journal"]
    assert journal["mode"] == "redis" and journal["entries"] == 0
    assert journal["parkedTotal"] == 0
    # The operators were told, in the notes conversation: out of reach, then back.
    desk.wait_note("O Redis do Ponte não responde")
    desk.wait_note("O Redis voltou")
    # Nothing reached the failed list because Redis blinked.
    assert httpx.get(f"{desk.base}/global-status").json()["failedCount"] == 0


def test_worker_pool_killed_and_restarted_mid_burst_loses_nothing(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    env = settings_env(desk.settings)

    def kill_and_restart() -> None:
        pool = psutil.Process(desk.worker.proc.pid)
        children = pool.children(recursive=True)
        pool.kill()  # -9: no warm shutdown, items mid-drain, locks held
        for child in children:  # RQ's workers and their schedulers, as the OOM killer would
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        desk.worker.proc.wait(10)
        desk.worker.stop()
        desk.worker = PonteProcess("worker", env, desk.worker.log.with_suffix(".2.log"))

    sent = burst(whatsapp, kill_and_restart, at=80)
    assert_nothing_lost(desk, sent, label="worker pool kill -9")


def test_serve_killed_and_restarted_mid_burst_loses_nothing_it_received(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    env = settings_env(desk.settings)
    sidecar_gone = threading.Event()
    gone_at: list[float] = []

    def kill_and_restart() -> None:
        serve = psutil.Process(desk.serve.proc.pid)
        sidecars = serve.children(recursive=True)
        serve.kill()
        desk.serve.proc.wait(10)
        desk.serve.stop()
        for sidecar in sidecars:  # it leaves once its pipes close
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                sidecar.wait(10)
        gone_at.append(time.monotonic())
        sidecar_gone.set()
        desk.serve = PonteProcess("serve", env, desk.serve.log.with_suffix(".2.log"))

    sent = burst(whatsapp, lambda: threading.Thread(target=kill_and_restart,
                                                    daemon=True).start(), at=80)
    assert sidecar_gone.wait(30)
    # The phone keeps sending while serve is away: WhatsApp keeps those for the next login.
    after = burst(whatsapp, lambda: None, at=-1, rounds=2)
    desk.serve.wait_http(f"{desk.base}/healthz")
    wait_for(lambda: desk.status().get("status") == "open", timeout=60, message="open again")
    opened = time.monotonic() - (sent.fault_at or sent.started)
    # What WhatsApp handed to the killed process before it read it (Baileys confirms delivery
    # to WhatsApp before it emits the message) is gone with it: counted, and only those.
    ids = set(sent.ids)
    got = settled({m["source_id"] for m in relayed(desk, ids)} for _ in iter(int, 1))
    in_killed_sidecar = [i for i in sent.ids if i not in got]
    print(f"serve kill -9: open again {opened:.1f} s after the kill; "
          f"{len(in_killed_sidecar)} of {len(ids)} consumed inside the killed sidecar")
    # Only what the killed process could have taken: sent before it was gone.
    assert [i for i in in_killed_sidecar if sent.sent_at[i] > gone_at[0]] == []
    both = Burst(sent={p: [i for i in ids_ if i in got] + after.sent[p]
                       for p, ids_ in sent.sent.items()},
                 started=sent.started, fault_at=sent.fault_at)
    assert_nothing_lost(desk, both, label="serve kill -9")


def test_chatwoot_failing_30_percent_of_calls_loses_nothing(
        desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    fake = desk.fake
    fake.timeout_hold = 3.0  # beyond the client's timeout below
    fake.retry_after = "1"
    # Half of the failures after Chatwoot committed: the client cannot tell that it worked.
    sent = burst(whatsapp, lambda: fake.fail_ratio(0.3, (500, 429, "timeout"), seed=7,
                                                   applied=0.5), at=0)
    try:
        assert_nothing_lost(desk, sent, timeout=180, label="chatwoot 30% failing")
    finally:
        fake.clear_failures()
