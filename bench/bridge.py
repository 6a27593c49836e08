"""Benchmark 3 (and the bridge half of 4): real `ponte serve` + `ponte worker` + the real
sidecar, between the simulated WhatsApp and the fake Chatwoot.

The number is linked the way an operator does it (`erga`, the QR PNG from the note, the phone
scans). Then, each phase from its own contact so that no conversation reaches the fake's
200-messages-a-minute limit (Chatwoot's CONVERSATION_MESSAGE_PER_MINUTE_LIMIT):

- WhatsApp → Chatwoot, one at a time: a contact sends a text (simulator `/admin/send-text`),
  the next one once the previous is in Chatwoot; latency = send → the worker's
  `POST .../messages` arriving at the fake;
- a burst from one contact (one mailbox, drained in order) and a burst spread over ten;
- Chatwoot → WhatsApp, one at a time, as a burst, and after idle pauses: `agent_message` (the
  fake fires its signed webhook) → the contact has decrypted it;
- the sidecar's memory at each step, and every component's CPU time per phase.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import CpuMeter, tree
from bench.infra import BenchError, RedisServer, settings_factory, wait_until
from bench.memory import GcResult, MemorySample, force_gc, sample
from bench.probes import ChatwootWatch, RedisMonitor, SimulatorControl
from bench.stats import fmt_ms, summarize
from tests.conftest import free_port
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import PHONE, WhatsAppSimulator

Stages = dict[str, list[float]]  # stage name -> samples (seconds); "total" is end to end
INBOUND_STAGES = ("total", "inject", "sidecar+serve", "queue", "worker", "record")
OUTBOUND_STAGES = ("total", "chatwoot", "webhook", "serve", "send", "result")


@dataclass
class Options:
    messages: int  # per phase
    settle_s: float  # idle wait after the link before the "settled" memory sample
    concurrency: int  # CHATWOOT_QUEUE_CONCURRENCY
    # Idle times before single agent messages; around 5-6 s is where the outbox consumer's
    # blocking read times out and it sleeps 1 s (see the note in the report).
    idle_pauses: tuple[float, ...] = (2.0, 4.5, 5.3, 5.6, 5.9, 8.0)


@dataclass
class Burst:
    injected_s: float  # the driver's time to inject every message
    all_in_s: float  # first injected -> last delivered
    rate: float  # messages / all_in_s
    stages: Stages


@dataclass
class PhaseCpu:
    phase: str
    messages: int
    wall_s: float
    cpu_s: dict[str, float]  # component -> CPU seconds over the phase
    redis_commands: int
    rq_jobs: int


@dataclass
class BridgeResults:
    erga_qr: float = 0.0
    scan_linked: float = 0.0
    cold: list[float] = field(default_factory=list)
    seq: Stages = field(default_factory=dict)
    burst_one: Burst | None = None
    burst_ten: Burst | None = None
    back: Stages = field(default_factory=dict)
    back_burst: Burst | None = None
    back_idle: list[tuple[float, float]] = field(default_factory=list)  # (pause, latency)
    cpu: list[PhaseCpu] = field(default_factory=list)
    memory: list[tuple[str, MemorySample]] = field(default_factory=list)
    gc: GcResult | None = None
    gc_error: str | None = None
    restarts: int = 0
    outbox_timeouts: int = 0  # "Outbox read failed" lines in serve's log
    received: int = 0  # messages the sidecar received from contacts
    sent: int = 0  # messages it sent for agents


class _Arrivals:
    """Polls the simulator's per-contact received counts; the k-th message a contact receives
    is stamped with the time its count was first seen at >= k (in order: one outbox consumer
    per instance sends them one after the other)."""

    def __init__(self, ctl: SimulatorControl, phone: str) -> None:
        self._ctl, self._phone = ctl, phone
        self.base = ctl.received_counts().get(phone, 0)
        self.times: list[float] = []

    def poll(self) -> int:
        count = self._ctl.received_counts().get(self._phone, 0) - self.base
        now = time.time()
        while len(self.times) < count:
            self.times.append(now)
        return count

    def wait(self, count: int, timeout: float = 60) -> float:
        """Until the contact has `count` messages; returns when the count-th was seen."""
        wait_until(lambda: self.poll() >= count, timeout=timeout,
                   what=f"{count} agent message(s) on WhatsApp", interval=0.002)
        return self.times[count - 1]


class _Bench:
    """One linked bridge and the probes around it; each phase is a method."""

    def __init__(self, desk: Desk, fake: FakeChatwoot, sim: WhatsAppSimulator,
                 redis: RedisServer, monitor: RedisMonitor, opts: Options) -> None:
        self.desk, self.fake, self.monitor, self.opts = desk, fake, monitor, opts
        self.n = opts.messages
        self.ctl = SimulatorControl(sim.port)
        self.watch = ChatwootWatch(fake)
        self.sent: dict[str, float] = {}  # WhatsApp id -> the driver's send time
        self.stanza: dict[str, float] = {}  # WhatsApp id -> the simulator wrote the stanza
        self.r = BridgeResults()
        self.pid = 0
        simulator = sim.proc.pid if sim.proc is not None else 0
        self.cpu = CpuMeter({
            "sidecar (Node, Baileys)": lambda: [self.pid],
            "ponte serve": lambda: [desk.serve.proc.pid],
            "ponte worker (RQ pool)": lambda: tree(desk.worker.proc.pid),
            "redis-server": lambda: [redis.pid],
            "simulator (WhatsApp side)": lambda: [simulator],
            "fake Chatwoot + driver": lambda: [os.getpid()],
        })

    # --- helpers ------------------------------------------------------------------------
    def contact(self, n: int) -> str:
        phone = f"55119888{n:05d}"
        self.ctl.add_contact(phone, f"Cliente {n}")
        return phone

    def send(self, phone: str, text: str) -> str:
        before = time.time()
        injected = self.ctl.send_text(phone, text)
        self.sent[injected.id] = before
        if injected.sent_at is not None:
            self.stanza[injected.id] = injected.sent_at
        self.r.received += 1
        return injected.id

    def wait_posted(self, ids: list[str], timeout: float = 120) -> None:
        wait_until(lambda: all(i in self.watch.poll() for i in ids), timeout=timeout,
                   what=f"{len(ids)} message(s) in Chatwoot")

    def warm_contact(self, n: int) -> tuple[str, int]:
        """A new contact that has written once: its conversation exists."""
        phone = self.contact(n)
        wa_id = self.send(phone, "oi")
        self.wait_posted([wa_id])
        found = [m for m in self.fake.messages() if m["source_id"] == wa_id]
        return phone, int(found[0]["conversation_id"])

    def measure(self, label: str, wait: float = 0.0) -> None:
        if wait:
            time.sleep(wait)
        self.r.memory.append((label, sample(self.pid)))

    def inbound_stages(self, ids: list[str]) -> Stages:
        time.sleep(0.5)  # the last mapping writes land after Chatwoot's answers
        stages: Stages = {k: [] for k in INBOUND_STAGES}
        for wa_id in ids:
            sent, posted = self.sent[wa_id], self.watch.posted[wa_id]
            stages["total"].append(posted - sent)
            stanza = self.stanza.get(wa_id)
            mailbox = self.monitor.at("mailbox", wa_id)
            worker, mapped = self.monitor.at("worker", wa_id), self.monitor.at("mapped", wa_id)
            if stanza is None or mailbox is None or worker is None or mapped is None:
                continue  # a missing mark leaves the breakdown one sample short, not wrong
            stages["inject"].append(stanza - sent)
            stages["sidecar+serve"].append(mailbox - stanza)
            stages["queue"].append(worker - mailbox)
            stages["worker"].append(posted - worker)
            stages["record"].append(mapped - posted)
        return stages

    @contextmanager
    def metered(self, phase: str, messages: int) -> Iterator[None]:
        before, begun = self.cpu.snapshot(), time.monotonic()
        commands, jobs = self.monitor.commands, self.monitor.jobs
        yield
        wall = time.monotonic() - begun
        self.r.cpu.append(PhaseCpu(phase, messages, wall,
                                   CpuMeter.spent(before, self.cpu.snapshot()),
                                   self.monitor.commands - commands, self.monitor.jobs - jobs))

    # --- phases --------------------------------------------------------------------------
    def link(self, sim: WhatsAppSimulator) -> None:
        desk = self.desk
        begun = time.time()
        desk.command("erga")
        note = wait_until(lambda: next((n for n in desk.notes() if n.get("attachments")), None),
                          timeout=60, what="the QR note")
        self.r.erga_qr = time.time() - begun
        qr = desk.qr_from_note(note)
        scanned = time.time()
        sim.scan_qr(qr)
        wait_until(lambda: any(PHONE in (n["content"] or "") for n in desk.notes()), timeout=60,
                   what="the 'connected' note")
        self.r.scan_linked = time.time() - scanned
        wait_until(lambda: desk.status().get("status") == "open", timeout=30, what="open")
        self.pid = int(desk.status()["pid"])
        print(f"  linked through the bridge: erga→QR note {self.r.erga_qr:.2f} s, "
              f"scan→linked note {self.r.scan_linked:.2f} s", flush=True)

    def inbound_one_at_a_time(self) -> None:
        phone = self.contact(1)
        cold = self.send(phone, "primeira mensagem")
        self.wait_posted([cold])
        self.r.cold = [self.watch.posted[cold] - self.sent[cold]]
        ids: list[str] = []
        with self.metered("WhatsApp → Chatwoot, one at a time", self.n):
            for i in range(self.n):
                ids.append(self.send(phone, f"mensagem {i}"))
                self.wait_posted(ids[-1:])
        self.r.seq = self.inbound_stages(ids)
        print(f"  WhatsApp → Chatwoot one at a time: p50 "
              f"{fmt_ms(summarize(self.r.seq['total']).p50)}", flush=True)

    def inbound_burst(self, phones: list[str], phase: str) -> Burst:
        ids: list[str] = []
        with self.metered(phase, self.n):
            begun = time.time()
            for i in range(self.n):
                ids.append(self.send(phones[i % len(phones)], f"rajada {i}"))
            injected = time.time() - begun
            self.wait_posted(ids)
        elapsed = max(self.watch.posted[i] for i in ids) - begun
        return Burst(injected, elapsed, self.n / elapsed, self.inbound_stages(ids))

    def outbound_one_at_a_time(self) -> None:
        phone, conversation = self.warm_contact(3)
        arrivals = _Arrivals(self.ctl, phone)
        stages: Stages = {k: [] for k in OUTBOUND_STAGES}
        with self.metered("Chatwoot → WhatsApp, one at a time", self.n):
            for i in range(self.n):
                begun = time.time()
                cw_id = int(self.fake.agent_message(conversation, f"resposta {i}")["id"])
                received = arrivals.wait(i + 1)
                stages["total"].append(received - begun)
                mapped = wait_until(lambda: self.monitor.at("sent", cw_id), timeout=30,
                                    what="the send's mapping")
                started = self.watch.webhook_started(cw_id)
                seen = self.monitor.at("webhook", cw_id)
                queued = self.monitor.at("outbox", cw_id)
                if started is None or seen is None or queued is None:
                    continue
                stages["chatwoot"].append(started - begun)
                stages["webhook"].append(seen - started)
                stages["serve"].append(queued - seen)
                stages["send"].append(received - queued)
                stages["result"].append(mapped - queued)
        self.r.back = stages
        self.r.sent += self.n
        print(f"  Chatwoot → WhatsApp one at a time: p50 "
              f"{fmt_ms(summarize(stages['total']).p50)}", flush=True)

    def outbound_burst(self) -> None:
        phone, conversation = self.warm_contact(4)
        arrivals = _Arrivals(self.ctl, phone)
        created: list[float] = []
        with self.metered("Chatwoot → WhatsApp, burst", self.n):
            begun = time.time()
            for i in range(self.n):
                created.append(time.time())
                self.fake.agent_message(conversation, f"rajada de volta {i}")
            arrivals.wait(self.n, timeout=180)
        elapsed = arrivals.times[-1] - begun
        latency = [arrivals.times[i] - created[i] for i in range(self.n)]
        self.r.back_burst = Burst(created[-1] - begun, elapsed, self.n / elapsed,
                                  {"total": latency})
        self.r.sent += self.n

    def outbound_after_pauses(self) -> None:
        """One agent message after each idle pause, counted from the moment serve finished the
        previous send (its mapping `SET`): the outbox consumer's next blocking read starts
        then. Agents answer after pauses; the read cycle is what they meet."""
        phone, conversation = self.warm_contact(5)
        arrivals = _Arrivals(self.ctl, phone)
        cw_id = int(self.fake.agent_message(conversation, "antes da pausa")["id"])
        for i, pause in enumerate(self.opts.idle_pauses, start=1):
            arrivals.wait(i)
            idle_since = wait_until(lambda: self.monitor.at("sent", cw_id), timeout=30,
                                    what="the previous send's mapping")
            time.sleep(max(0.0, idle_since + pause - time.time()))
            begun = time.time()
            cw_id = int(self.fake.agent_message(conversation, f"depois de {pause} s")["id"])
            self.r.back_idle.append((begun - idle_since, arrivals.wait(i + 1) - begun))
        self.r.sent += len(self.opts.idle_pauses) + 1
        print("  Chatwoot → WhatsApp after idle pauses: " + ", ".join(
            f"{p:.1f} s → {fmt_ms(t)}" for p, t in self.r.back_idle), flush=True)

    def run(self, sim: WhatsAppSimulator) -> BridgeResults:
        r = self.r
        self.link(sim)
        self.measure("idle, 3 s after the link", wait=3.0)
        self.measure(f"idle, after {self.opts.settle_s:.0f} s more", wait=self.opts.settle_s)
        self.inbound_one_at_a_time()
        self.measure(f"after {r.received} received messages")
        one = self.contact(2)
        self.wait_posted([self.send(one, "oi")])
        r.burst_one = self.inbound_burst([one], "WhatsApp → Chatwoot, burst, one chat")
        ten = [self.contact(10 + k) for k in range(10)]
        self.wait_posted([self.send(p, "oi") for p in ten])
        r.burst_ten = self.inbound_burst(ten, "WhatsApp → Chatwoot, burst, ten chats")
        print(f"  bursts: one chat {r.burst_one.rate:.0f} msg/s, ten chats "
              f"{r.burst_ten.rate:.0f} msg/s", flush=True)
        self.measure(f"after {r.received} received messages")
        self.outbound_one_at_a_time()
        self.outbound_burst()
        self.measure(f"after {r.received} received and {r.sent} sent", wait=1.0)
        self.outbound_after_pauses()
        self.measure(f"after {r.received} received and {r.sent} sent, idle pauses")
        r.restarts = int(self.desk.status().get("restarts") or 0)
        return r


def _inspectable(command: str, port: int) -> str:
    """The simulator's sidecar command with `--inspect-port`: the inspector stays off until
    SIGUSR1, so the process measured is the same as without it."""
    argv = shlex.split(command)
    return shlex.join([argv[0], f"--inspect-port=127.0.0.1:{port}", *argv[1:]])


def run(fake: FakeChatwoot, sim: WhatsAppSimulator, work: Path, redis: RedisServer,
        opts: Options) -> BridgeResults:
    inspect_port = free_port()
    make = settings_factory(work / "data", redis.url,
                            chatwoot_queue_concurrency=opts.concurrency)
    monitor = RedisMonitor(redis.url).start()
    try:
        with open_desk(fake, make, work,
                       baileys_sidecar_command=_inspectable(sim.sidecar_command, inspect_port),
                       baileys_wa_websocket_url=sim.websocket_url) as desk:
            bench = _Bench(desk, fake, sim, redis, monitor, opts)
            try:
                results = bench.run(sim)
                try:
                    results.gc = force_gc(bench.pid, inspect_port)
                except BenchError as err:
                    results.gc_error = str(err)
            finally:
                bench.ctl.close()
            results.outbox_timeouts = desk.serve.log.read_text(errors="replace").count(
                "Outbox read failed")
            if fake.internal_errors:
                raise BenchError("the fake Chatwoot crashed:\n" + "\n".join(fake.internal_errors))
    finally:
        monitor.stop()
    return results
