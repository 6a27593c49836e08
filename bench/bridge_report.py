"""Benchmark 3's section (and its rows for the memory section) from bridge.BridgeResults."""

from __future__ import annotations

from bench.bridge import BridgeResults, Burst, Options
from bench.report import Section, Table
from bench.stats import TIMING_HEADERS, fmt_mib, fmt_ms, timing_row

_INBOUND_LABELS = {
    "inject": "simulator encrypts and writes the stanza",
    "sidecar+serve": "stanza → mailbox `RPUSH` (Baileys decrypts, frame, serve queues)",
    "queue": "`RPUSH` → drain job reaches the message (RQ enqueue, pick-up, earlier items)",
    "worker": "job → `POST .../messages` at Chatwoot (convert, identity cache)",
    "record": "Chatwoot's answer + mapping `SET` (after the message is visible)",
}
_OUTBOUND_LABELS = {
    "chatwoot": "`agent_message` → the fake starts the webhook POST",
    "webhook": "webhook POST → serve's dedupe `SET` (HTTP, signature, parsing)",
    "serve": "dedupe `SET` → outbox `XADD`",
    "send": "outbox `XADD` → contact decrypted it (outbox read, Baileys send, simulator)",
    "result": "outbox `XADD` → `send_text` result recorded (mapping `SET`)",
}

NOTES = [
    "WhatsApp → Chatwoot ends when the worker's `POST .../messages` reaches the fake (its "
    "recorded call time). The stages come from the simulator's stanza time and from Redis "
    "MONITOR: the mailbox `RPUSH` (serve has the sidecar's frame), the drain job's first look-up "
    "of the message (`GET ponte:map:wa:…`) and the mapping `SET` after Chatwoot's answer.",
    "Chatwoot → WhatsApp ends when the contact has decrypted the message (the simulator's "
    "received count, polled every ~2 ms, so the figure includes up to a poll's delay). Stages: "
    "the fake's webhook POST starting, serve's dedupe flag `SET ponte:seen:cw:…`, the outbox "
    "`XADD`, and the mapping `SET` once the sidecar answered `send_text`.",
    "Bursts: the driver injects the messages back to back (simulator `/admin/send-text` or "
    "`agent_message`), then waits for the last; throughput = messages / (last delivered − first "
    "injected). Latency in a burst includes the wait behind the messages ahead of it.",
    "CPU: user + system time of each process (the worker with its forked pool) over the phase, "
    "per message (psutil, clock-tick resolution); the fake Chatwoot shares its process with the "
    "driver (sending, polling, Redis MONITOR). Redis commands and RQ enqueues are counted by "
    "MONITOR over the same phase, RQ's own heartbeats and bookkeeping included.",
]


def _burst_rows(table: Table, label: str, burst: Burst | None, labels: dict[str, str]) -> None:
    if burst is None:
        return
    table.add(*timing_row(label, burst.stages["total"]))
    for stage, text in labels.items():
        if stage in burst.stages:
            table.add(*timing_row(f"  {text}", burst.stages[stage]))


def _cpu_table(r: BridgeResults) -> Table:
    components = list(r.cpu[0].cpu_s) if r.cpu else []
    table = Table(["CPU ms per message", *(p.phase for p in r.cpu)])
    for name in components:
        table.add(name, *(f"{p.cpu_s[name] / p.messages * 1000:.1f}" for p in r.cpu))
    table.add("**all of the above**",
              *(f"**{sum(p.cpu_s.values()) / p.messages * 1000:.1f}**" for p in r.cpu))
    table.add("CPUs busy on average, all of the above",
              *(f"{sum(p.cpu_s.values()) / p.wall_s:.2f}" for p in r.cpu))
    table.add("Redis commands per message", *(f"{p.redis_commands / p.messages:.0f}"
                                                for p in r.cpu))
    table.add("RQ jobs enqueued per message", *(f"{p.rq_jobs / p.messages:.2f}" for p in r.cpu))
    return table


def section(r: BridgeResults, opts: Options) -> Section:
    n = opts.messages
    linking = Table(["measurement", "n", "time"])
    linking.add("`erga` typed in Chatwoot → QR note (PNG) in Chatwoot", 1, fmt_ms(r.erga_qr))
    linking.add("QR scanned → 'connected' note in Chatwoot", 1, fmt_ms(r.scan_linked))

    inbound = Table(TIMING_HEADERS)
    inbound.add(*timing_row("first message from a new contact (contact + conversation created)",
                            r.cold))
    _burst_rows(inbound, f"WhatsApp → Chatwoot, {n} messages one at a time",
                Burst(0, 0, 0, r.seq), _INBOUND_LABELS)
    _burst_rows(inbound, f"WhatsApp → Chatwoot, each message of a {n}-message burst, one chat",
                r.burst_one, _INBOUND_LABELS)
    _burst_rows(inbound, f"WhatsApp → Chatwoot, each message of a {n}-message burst, ten chats",
                r.burst_ten, _INBOUND_LABELS)

    outbound = Table(TIMING_HEADERS)
    _burst_rows(outbound, f"Chatwoot → WhatsApp, {n} agent messages one at a time",
                Burst(0, 0, 0, r.back), _OUTBOUND_LABELS)
    _burst_rows(outbound, f"Chatwoot → WhatsApp, each message of a {n}-message burst",
                r.back_burst, _OUTBOUND_LABELS)

    idle = Table(["Chatwoot → WhatsApp: one agent message after the outbox was idle for",
                  "latency"])
    for pause, latency in r.back_idle:
        idle.add(f"{pause:.1f} s", fmt_ms(latency))

    throughput = Table(["burst", "messages", "injected in", "all delivered after", "throughput"])
    for label, burst in (("WhatsApp → Chatwoot, one chat", r.burst_one),
                         (f"WhatsApp → Chatwoot, ten chats ({n // 10} each)", r.burst_ten),
                         ("Chatwoot → WhatsApp, one chat", r.back_burst)):
        if burst is not None:
            throughput.add(label, n, fmt_ms(burst.injected_s), fmt_ms(burst.all_in_s),
                           f"{burst.rate:.0f} messages/s")

    notes = [f"`ponte serve` and `ponte worker` as real processes, CHATWOOT_QUEUE_CONCURRENCY="
             f"{opts.concurrency}, log level info; the fake Chatwoot fires a signed webhook for "
             f"every message it stores, incoming ones included, as Chatwoot does.", *NOTES]
    if r.outbox_timeouts:
        notes.append(
            f"`ponte serve` logged \"Outbox read failed\" (redis `TimeoutError`) "
            f"{r.outbox_timeouts} times during the run: the outbox consumer blocks 5 s in "
            f"`XREADGROUP` while redis-py's default socket timeout is also 5 s, so after 5 idle "
            f"seconds the read fails, is logged with a traceback, and the consumer sleeps 1 s "
            f"before reading again. An agent message written during that second waits for it "
            f"(the idle table).")
    if r.restarts:
        notes.append(f"The sidecar restarted {r.restarts} time(s) during the run.")
    return Section(
        title="3. Messages through the whole bridge",
        how=("WhatsApp contact (simulator) → real sidecar → `ponte serve` → Redis → "
             "`ponte worker` → fake Chatwoot, and back: Chatwoot webhook → `ponte serve` → "
             "outbox → sidecar → WhatsApp contact. Command: `python -m bench --only bridge`. "
             "The number was linked through Chatwoot first:"),
        tables=[linking, inbound, outbound, idle, throughput, _cpu_table(r)], notes=notes)


def memory_rows(r: BridgeResults) -> list[list[str]]:
    rows = [[f"sidecar under the bridge, {label}", "1", fmt_mib(m.rss), fmt_mib(m.pss),
             fmt_mib(m.uss)] for label, m in r.memory]
    if r.gc is not None:
        m = r.gc.memory
        rows.append(["sidecar under the bridge, right after a forced full GC (inspector)", "1",
                     fmt_mib(m.rss), fmt_mib(m.pss), fmt_mib(m.uss)])
    return rows


def gc_table(r: BridgeResults) -> Table | None:
    if r.gc is None:
        return None
    table = Table(["V8 (`process.memoryUsage()` in the sidecar)", "before GC", "after GC"])
    for key in ("rss", "heapTotal", "heapUsed", "external", "arrayBuffers"):
        table.add(f"`{key}`", fmt_mib(r.gc.before.get(key)), fmt_mib(r.gc.after.get(key)))
    return table
