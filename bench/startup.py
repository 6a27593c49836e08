"""Benchmarks 1 and 2: the real sidecar against the simulated WhatsApp, spawned directly (no
bridge), a fresh auth directory per repetition.

One repetition: spawn → `ready` → first `qr`; the phone scans → `close 515` → `connecting` →
`open` (the first login generates, writes and uploads 812 pre-keys); stop (stdin EOF); spawn
again on the saved session → `ready` → `open`; stop. After the repetitions, one more linked
sidecar receives texts one at a time and as a burst (stanza → `message` frame), the sidecar's
own share of the bridge's WhatsApp → Chatwoot latency.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import BenchError
from bench.memory import MemorySample, sample
from bench.probes import SimulatorControl
from bench.report import Section, Table
from bench.sidecar import Sidecar, is_state, is_type, sidecar_env
from bench.stats import TIMING_HEADERS, fmt_mib, fmt_s, summarize, timing_row
from tests.fakes.whatsapp import WhatsAppSimulator

PREKEYS_EXPECTED = 812  # Baileys' INITIAL_PREKEY_COUNT


@dataclass
class StartupRuns:
    spawn_ready: list[float] = field(default_factory=list)
    spawn_qr: list[float] = field(default_factory=list)
    scan_call: list[float] = field(default_factory=list)  # POST /admin/scan-qr until it answered
    scan_515: list[float] = field(default_factory=list)
    close_open: list[float] = field(default_factory=list)  # 515 close -> open
    scan_open: list[float] = field(default_factory=list)
    prekeys: list[int] = field(default_factory=list)  # pre-key files on disk after the stop
    prekeys_generated: list[int] = field(default_factory=list)  # creds.json nextPreKeyId - 1
    first_stop: list[float] = field(default_factory=list)
    restart_ready: list[float] = field(default_factory=list)
    restart_open: list[float] = field(default_factory=list)
    restart_stop: list[float] = field(default_factory=list)
    at_qr: list[MemorySample] = field(default_factory=list)
    after_open: list[MemorySample] = field(default_factory=list)
    peak_first: list[int] = field(default_factory=list)  # wait4 ru_maxrss of the linking process
    peak_restart: list[int] = field(default_factory=list)
    # The sidecar alone, linked, no bridge: stanza written by the simulator -> `message` frame.
    alone_seq: list[float] = field(default_factory=list)
    alone_burst: list[float] = field(default_factory=list)
    alone_burst_injected: float = 0.0
    alone_burst_all: float = 0.0


def _one(sim: WhatsAppSimulator, phone: str, work: Path, runs: StartupRuns) -> None:
    auth = Path(tempfile.mkdtemp(prefix="auth-", dir=work))
    auth.chmod(0o700)
    env = sidecar_env(auth, sim.websocket_url)
    log = work / "sidecar.log"

    car = Sidecar(sim.sidecar_command, env, log)
    try:
        ready = car.wait(is_type("ready"))
        qr = car.wait(is_type("qr"))
        runs.spawn_ready.append(ready.at - car.started)
        runs.spawn_qr.append(qr.at - car.started)
        runs.at_qr.append(sample(car.pid))
        scanned = time.monotonic()
        sim.scan_qr(str(qr.data["qr"]), phone=phone)
        runs.scan_call.append(time.monotonic() - scanned)
        restart = car.wait(lambda f: is_state("close")(f) and f.data.get("status_code") == 515,
                           after=scanned)
        opened = car.wait(is_state("open"), after=restart.at)
        runs.scan_515.append(restart.at - scanned)
        runs.close_open.append(opened.at - restart.at)
        runs.scan_open.append(opened.at - scanned)
        time.sleep(1.0)  # the pre-key upload and initial sync finish right after `open`
        runs.after_open.append(sample(car.pid))
    finally:
        runs.first_stop.append(car.stop())
    runs.prekeys.append(len(list(auth.glob("pre-key-*.json"))))
    creds = json.loads((auth / "creds.json").read_text())
    runs.prekeys_generated.append(int(creds.get("nextPreKeyId", 1)) - 1)
    if car.peak_rss:
        runs.peak_first.append(car.peak_rss)

    again = Sidecar(sim.sidecar_command, env, log)
    try:
        ready = again.wait(is_type("ready"))
        opened = again.wait(is_state("open"))
        if any(f.type == "qr" for f in again.frames()):
            raise BenchError("the saved session was not used: the restart showed a QR code")
        runs.restart_ready.append(ready.at - again.started)
        runs.restart_open.append(opened.at - again.started)
    finally:
        runs.restart_stop.append(again.stop())
    if again.peak_rss:
        runs.peak_restart.append(again.peak_rss)


def _alone(sim: WhatsAppSimulator, work: Path, runs: StartupRuns, messages: int) -> None:
    """Messages into a linked sidecar with nobody but the benchmark reading its stdout: the
    sidecar's share of the bridge's "stanza → mailbox" stage."""
    auth = Path(tempfile.mkdtemp(prefix="auth-", dir=work))
    auth.chmod(0o700)
    ctl = SimulatorControl(sim.port)
    car = Sidecar(sim.sidecar_command, sidecar_env(auth, sim.websocket_url), work / "sidecar.log")
    try:
        linked = "5511977770000"
        sim.scan_qr(str(car.wait(is_type("qr")).data["qr"]), phone=linked)
        car.wait(is_state("open"))
        time.sleep(1.0)
        contact = "5511977771111"
        ctl.add_contact(contact, "Sozinho")
        offset = time.time() - time.monotonic()  # frames carry monotonic times

        def arrived(wa_id: str) -> float:
            frame = car.wait(lambda f: f.type == "message" and f.data["key"]["id"] == wa_id)
            return frame.at + offset

        for i in range(messages):
            sent = ctl.send_text(contact, f"sozinho {i}", to=linked)
            runs.alone_seq.append(arrived(sent.id) - (sent.sent_at or 0.0))
        begun = time.time()
        burst = [ctl.send_text(contact, f"rajada {i}", to=linked) for i in range(messages)]
        runs.alone_burst_injected = time.time() - begun
        times = [arrived(sent.id) for sent in burst]
        runs.alone_burst = [t - (sent.sent_at or 0.0) for t, sent in zip(times, burst, strict=True)]
        runs.alone_burst_all = max(times) - begun
    finally:
        ctl.close()
        car.stop()


def run(sim: WhatsAppSimulator, work: Path, repetitions: int,
        messages: int) -> tuple[Section, StartupRuns]:
    runs = StartupRuns()
    for i in range(repetitions):
        _one(sim, f"55119000{i:05d}", work, runs)  # a new account each time: a first login
        print(f"  startup {i + 1}/{repetitions}: spawn→qr {runs.spawn_qr[-1]:.2f} s, "
              f"scan→open {runs.scan_open[-1]:.2f} s, restart→open {runs.restart_open[-1]:.2f} s",
              flush=True)
    _alone(sim, work, runs, messages)
    print(f"  sidecar alone: {messages}-message burst in {runs.alone_burst_all:.2f} s", flush=True)
    return section(runs, repetitions), runs


def section(runs: StartupRuns, repetitions: int) -> Section:
    spawn = Table(TIMING_HEADERS)
    spawn.add(*timing_row("spawn → `ready` (Node start + Baileys import)", runs.spawn_ready,
                          unit="s"))
    spawn.add(*timing_row("spawn → first `qr`", runs.spawn_qr, unit="s"))
    link = Table(TIMING_HEADERS)
    link.add(*timing_row("scan → `open` (whole first login)", runs.scan_open, unit="s"))
    link.add(*timing_row("  scan → `close 515` (pair-success, device signature)", runs.scan_515,
                         unit="s"))
    link.add(*timing_row("  `close 515` → `open` (reconnect, login, 812 pre-keys)",
                         runs.close_open, unit="s"))
    link.add(*timing_row("restart on the saved session: spawn → `ready`", runs.restart_ready,
                         unit="s"))
    link.add(*timing_row("restart on the saved session: spawn → `open`", runs.restart_open,
                         unit="s"))
    link.add(*timing_row("stop (stdin EOF) → exit, after linking", runs.first_stop, unit="s"))
    link.add(*timing_row("stop (stdin EOF) → exit, after a restart", runs.restart_stop, unit="s"))
    notes = [
        f"Pre-keys generated, written and uploaded at the first login: "
        f"{_values(runs.prekeys_generated)} (Baileys' {PREKEYS_EXPECTED}); pre-key files left "
        f"in the auth directory after the stop: {_values(runs.prekeys)} (the phone's initial "
        f"history-sync message opens a Signal session and consumes one).",
        "The sidecar runs with the simulator's test-only certificate preload "
        "(`node --import ./tests/simulator/cert-preload.mjs sidecar/main.js`), as in the "
        "end-to-end tests; the production command's spawn → `ready` is in the memory section "
        "(sidecar at a silent port).",
        "Timestamps are taken when the driver reads each frame from the sidecar's stdout; "
        "the scan is the driver's `POST /admin/scan-qr` to the simulator, which answers once "
        "the phone side has checked the device signature.",
    ]
    if summarize(runs.scan_call).p50 > 0:
        notes.append(f"`POST /admin/scan-qr` itself: p50 {summarize(runs.scan_call).p50:.2f} s.")
    alone = Table(TIMING_HEADERS)
    n = len(runs.alone_seq)
    alone.add(*timing_row(f"stanza written → `message` frame, {n} messages one at a time",
                          runs.alone_seq))
    alone.add(*timing_row(f"stanza written → `message` frame, each of a {n}-message burst",
                          runs.alone_burst))
    if runs.alone_burst_all:
        notes.append(
            f"The sidecar alone (linked, stdout read by the benchmark only, one contact): the "
            f"{n}-message burst was injected in {fmt_s(runs.alone_burst_injected)} and every "
            f"`message` frame was out {fmt_s(runs.alone_burst_all)} after the first send "
            f"({n / runs.alone_burst_all:.0f} messages/s). Compare with the bridge's "
            f"\"stanza → mailbox `RPUSH`\" stage in section 3.")
    return Section(
        title="1–2. Sidecar start-up and linking",
        how=(f"The real sidecar (`sidecar/main.js`, Baileys rc14) spawned by the benchmark "
             f"against the simulated WhatsApp Web server, a fresh auth directory and a new "
             f"phone account per repetition ({repetitions} repetitions). Command: "
             f"`python -m bench --only startup`."),
        tables=[spawn, link, alone], notes=notes)


def _values(values: list[int]) -> str:
    return ", ".join(map(str, sorted(set(values)))) or "none"


def memory_rows(runs: StartupRuns) -> list[list[str]]:
    """Rows for the memory section: the same processes, measured along the way."""
    def med(samples: list[MemorySample], attr: str) -> str:
        values = [getattr(s, attr) for s in samples]
        return fmt_mib(summarize(values).p50) if values else "n/a"

    rows = [
        ["sidecar showing a QR code (new identity, not linked), direct", str(len(runs.at_qr)),
         med(runs.at_qr, "rss"), med(runs.at_qr, "pss"), med(runs.at_qr, "uss")],
        ["sidecar 1 s after its first `open`, direct", str(len(runs.after_open)),
         med(runs.after_open, "rss"), med(runs.after_open, "pss"), med(runs.after_open, "uss")],
    ]
    if runs.peak_first:
        rows.append(["peak RSS of a linking sidecar (spawn → QR → login → stop)",
                     str(len(runs.peak_first)), fmt_mib(summarize(runs.peak_first).p50),
                     "–", "–"])
    if runs.peak_restart:
        rows.append(["peak RSS of a restart on a saved session (spawn → open → stop)",
                     str(len(runs.peak_restart)), fmt_mib(summarize(runs.peak_restart).p50),
                     "–", "–"])
    return rows
