"""Benchmark 4, the fleet: many linked, idle sidecars at once, as a host running one process
per WhatsApp number holds them.

Accounts are linked once (a fresh auth directory each, QR scanned by the simulated phone,
first login with its 812 pre-keys), then stopped. Each measured command then restarts them on
their saved sessions, the way the bridge resumes its numbers: 1 sidecar, then 9 more, then 10
more, each step left idle for the settle time and sampled (RSS, PSS, USS per process). At the
largest step every sidecar also gets a forced full GC through the inspector (`--inspect-port`,
inactive until SIGUSR1) and is sampled again, and one of them is taken apart by mapping and by
V8 heap space.
"""

from __future__ import annotations

import shlex
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.infra import BenchError
from bench.memory import GcResult, Mappings, MemorySample, force_gc, mappings, sample
from bench.probes import SimulatorControl
from bench.sidecar import Frame, Sidecar, is_state, is_type, sidecar_env
from tests.conftest import free_port
from tests.fakes.whatsapp import WhatsAppSimulator

UNTUNED_COMMAND = "node sidecar/main.js"  # Baileys' and Node's defaults: the "before"


@dataclass(frozen=True)
class Account:
    phone: str
    auth: Path


@dataclass
class Step:
    """The fleet at one size, after the settle time (or right after the forced GCs)."""
    label: str
    samples: list[MemorySample]
    idle_s: float  # how long the newest sidecars had been open when sampled
    threads: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # user + system since the spawn

    @property
    def n(self) -> int:
        return len(self.samples)

    def mean(self, attr: str) -> float:
        return statistics.fmean(getattr(s, attr) for s in self.samples)

    def total(self, attr: str) -> int:
        return sum(getattr(s, attr) for s in self.samples)

    def largest(self, attr: str) -> int:
        return max(int(getattr(s, attr)) for s in self.samples)


@dataclass
class FleetRun:
    command: str
    label: str = ""
    steps: list[Step] = field(default_factory=list)
    gc: list[GcResult] = field(default_factory=list)
    gc_error: str | None = None
    mappings: Mappings | None = None  # one sidecar (the median PSS) after the forced GC
    mappings_gc: GcResult | None = None  # that sidecar's V8 figures
    start_open_s: list[float] = field(default_factory=list)  # spawn -> open of each sidecar
    activity: Activity | None = None  # one sidecar of the fleet put to work, when asked


@dataclass
class Activity:
    """One sidecar of the full fleet receives `messages` texts one at a time, then sends as
    many (`send_text`), the others idle: what a flag costs in CPU, and what use does to memory."""
    messages: int
    receive_cpu_ms: float  # per message: stanza in -> `message` frame out
    receive_latency_s: list[float]  # simulator wrote the stanza -> frame read
    send_cpu_ms: float  # per message: `send_text` -> `result`
    send_latency_s: list[float]
    before: MemorySample
    after: MemorySample  # right after the last result
    later: MemorySample  # after the settle time


@dataclass
class FleetResults:
    linked: int = 0
    link_s: float = 0.0
    settle_s: float = 0.0
    sizes: tuple[int, ...] = ()
    runs: list[FleetRun] = field(default_factory=list)


def _phone(i: int) -> str:
    return f"55119666{i:05d}"


def link(sim: WhatsAppSimulator, work: Path, count: int, batch: int = 4) -> list[Account]:
    """`count` accounts linked (QR, scan, first login), `batch` at a time, then stopped."""
    accounts: list[Account] = []
    log = work / "fleet-link.log"
    for first in range(0, count, batch):
        cars: list[tuple[Sidecar, Account]] = []
        try:
            for i in range(first, min(first + batch, count)):
                auth = Path(tempfile.mkdtemp(prefix=f"fleet-{i:02d}-", dir=work))
                auth.chmod(0o700)
                car = Sidecar(sim.sidecar_command, sidecar_env(auth, sim.websocket_url), log)
                cars.append((car, Account(_phone(i), auth)))
            for car, account in cars:
                sim.scan_qr(str(car.wait(is_type("qr")).data["qr"]), phone=account.phone)
            for car, _ in cars:
                car.wait(is_state("open"), timeout=120)
            time.sleep(0.5)  # the pre-key upload finishes right after `open`
        finally:
            for car, _ in cars:
                car.stop()
        for car, account in cars:
            if car.exit_code != 0:
                raise BenchError(f"linking {account.phone}: the sidecar exited with "
                                 f"{car.exit_code}")
            accounts.append(account)
    return accounts


def node_option(command: str, *options: str) -> str:
    """`command` with `options` right after its `node` (which may follow `env VAR=value`)."""
    argv = shlex.split(command)
    at = next((i for i, arg in enumerate(argv) if Path(arg).name in ("node", "nodejs")), 0)
    return shlex.join([*argv[:at + 1], *options, *argv[at + 1:]])


def with_simulator_root(command: str) -> str:
    """The command plus the simulator's test-only certificate preload (it imports only
    Baileys' Defaults, which the sidecar imports anyway)."""
    return node_option(command, "--import", "./tests/simulator/cert-preload.mjs")


def _inspectable(command: str, port: int) -> str:
    return node_option(command, f"--inspect-port=127.0.0.1:{port}")


def _message(wa_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.type == "message" and f.data["key"]["id"] == wa_id


def _result(command_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.type == "result" and f.data["id"] == command_id


class _Fleet:
    def __init__(self, sim: WhatsAppSimulator, command: str, work: Path) -> None:
        self.sim, self.command, self.log = sim, command, work / "fleet-sidecars.log"
        self.cars: list[tuple[Sidecar, int]] = []  # (sidecar, inspector port)
        self.opened: list[float] = []  # monotonic time each one reported open

    def grow(self, accounts: Sequence[Account], run: FleetRun) -> None:
        """Starts the next sidecars all at once (as the bridge does on boot) and waits until
        every one is open."""
        started = []
        for account in accounts:
            port = free_port()
            command = _inspectable(with_simulator_root(self.command), port)
            car = Sidecar(command, sidecar_env(account.auth, self.sim.websocket_url), self.log)
            self.cars.append((car, port))
            started.append(car)
        for car in started:
            opened = car.wait(is_state("open"), timeout=120)
            if any(f.type == "qr" for f in car.frames()):
                raise BenchError("a saved session was not used: a sidecar showed a QR code")
            self.opened.append(opened.at)
            run.start_open_s.append(opened.at - car.started)

    def step(self, label: str) -> Step:
        samples, threads, cpu = [], [], []
        for car, _ in self.cars:
            if car.proc.poll() is not None:
                raise BenchError(f"sidecar {car.pid} exited ({car.proc.returncode}) while idle")
            samples.append(sample(car.pid))
            process = psutil.Process(car.pid)
            threads.append(process.num_threads())
            times = process.cpu_times()
            cpu.append(times.user + times.system)
        return Step(label, samples, time.monotonic() - max(self.opened), threads, cpu)

    def gc(self, run: FleetRun) -> Step | None:
        try:
            run.gc = [force_gc(car.pid, port) for car, port in self.cars]
        except BenchError as err:
            run.gc_error = str(err)
            return None
        after = self.step(f"{len(self.cars)} linked, after a forced full GC in each")
        # The sidecar with the median PSS stands for all of them in the breakdown.
        order = sorted(range(len(self.cars)), key=lambda i: after.samples[i].pss)
        middle = order[len(order) // 2]
        run.mappings = mappings(self.cars[middle][0].pid)
        run.mappings_gc = run.gc[middle]
        return after

    def activity(self, account: Account, messages: int, settle_s: float) -> Activity:
        car = self.cars[0][0]
        ctl = SimulatorControl(self.sim.port)
        try:
            contact = "5511955550000"
            ctl.add_contact(contact, "Fila")
            process = psutil.Process(car.pid)

            def cpu() -> float:
                times = process.cpu_times()
                return times.user + times.system

            offset = time.time() - time.monotonic()  # frames carry monotonic times
            before, begun = sample(car.pid), cpu()
            received = []
            for i in range(messages):
                sent = ctl.send_text(contact, f"mensagem {i}", to=account.phone)
                frame = car.wait(_message(sent.id))
                received.append(frame.at + offset - (sent.sent_at or frame.at + offset))
            middle = cpu()
            answered = []
            for i in range(messages):
                asked = time.monotonic()
                car.command({"type": "send_text", "id": f"bench-{i}",
                             "jid": f"{contact}@s.whatsapp.net", "text": f"resposta {i}"})
                result = car.wait(_result(f"bench-{i}"), after=asked)
                if not result.data.get("ok"):
                    raise BenchError(f"send_text failed: {result.data}")
                answered.append(result.at - asked)
            end = cpu()
            after = sample(car.pid)
            time.sleep(settle_s)
            return Activity(messages, (middle - begun) * 1000 / messages, received,
                            (end - middle) * 1000 / messages, answered, before, after,
                            sample(car.pid))
        finally:
            ctl.close()

    def stop(self) -> None:
        for car, _ in self.cars:
            if car.proc.stdin is not None and not car.proc.stdin.closed:
                try:
                    car.proc.stdin.close()  # all at once; reaped below
                except BrokenPipeError:
                    pass
        for car, _ in self.cars:
            car.stop()


def measure(sim: WhatsAppSimulator, work: Path, accounts: Sequence[Account], command: str,
            sizes: Sequence[int], settle_s: float, messages: int = 0) -> FleetRun:
    run = FleetRun(command)
    fleet = _Fleet(sim, command, work)
    try:
        for size in sizes:
            fleet.grow(accounts[len(fleet.cars):size], run)
            time.sleep(settle_s)
            step = fleet.step(f"{size} linked, idle {settle_s:.0f} s")
            run.steps.append(step)
            print(f"  {size:2d} sidecars ({command}): PSS {step.mean('pss') / 2**20:.1f} MiB, "
                  f"RSS {step.mean('rss') / 2**20:.1f} MiB each", flush=True)
        after = fleet.gc(run)
        if after is not None:
            run.steps.append(after)
            print(f"  {len(fleet.cars):2d} sidecars after a forced GC: PSS "
                  f"{after.mean('pss') / 2**20:.1f} MiB, RSS {after.mean('rss') / 2**20:.1f} MiB "
                  f"each", flush=True)
        if messages:
            run.activity = fleet.activity(accounts[0], messages, settle_s)
            print(f"  one of them, {messages} messages each way: "
                  f"{run.activity.receive_cpu_ms:.1f} ms CPU per message received, "
                  f"{run.activity.send_cpu_ms:.1f} ms per message sent", flush=True)
    finally:
        fleet.stop()
    return run


@dataclass(frozen=True)
class Plan:
    command: str
    sizes: tuple[int, ...]
    messages: int = 0  # put one sidecar to work at the end (Activity)
    label: str = ""  # what the command tries, for the candidates table


# Each candidate is measured alone at the largest fleet size: `python -m bench --only memory
# --candidates`. The untuned command first, then one change at a time: the two flags kept in
# BAILEYS_SIDECAR_COMMAND's default, then each rejected one on top of those.
_KEPT = "node --max-semi-space-size=1 --v8-pool-size=1"
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("Node and V8 defaults (before)", UNTUNED_COMMAND),
    ("young generation capped at 2 MiB", "node --max-semi-space-size=2 sidecar/main.js"),
    ("young generation capped at 1 MiB", "node --max-semi-space-size=1 sidecar/main.js"),
    ("+ one V8 platform thread (kept: the default)", f"{_KEPT} sidecar/main.js"),
    ("+ GC on the main thread only", f"{_KEPT} --single-threaded-gc sidecar/main.js"),
    ("+ everything on the main thread", f"{_KEPT} --single-threaded sidecar/main.js"),
    ("+ two malloc arenas", f"env MALLOC_ARENA_MAX=2 {_KEPT} sidecar/main.js"),
    ("+ V8's size-optimised mode", f"{_KEPT} --optimize-for-size sidecar/main.js"),
    ("+ no optimising compiler (TurboFan)", f"{_KEPT} --no-opt sidecar/main.js"),
    ("+ lazy WebAssembly compilation", f"{_KEPT} --wasm-lazy-compilation sidecar/main.js"),
    ("+ old generation capped at 128 MiB", f"{_KEPT} --max-old-space-size=128 sidecar/main.js"),
)


def run(sim: WhatsAppSimulator, work: Path, plans: Sequence[Plan],
        settle_s: float) -> FleetResults:
    count = max(max(plan.sizes) for plan in plans)
    results = FleetResults(settle_s=settle_s,
                           sizes=tuple(sorted({s for plan in plans for s in plan.sizes})))
    print(f"  linking {count} accounts…", flush=True)
    begun = time.monotonic()
    accounts = link(sim, work, count)
    results.linked, results.link_s = len(accounts), time.monotonic() - begun
    for plan in plans:
        fleet_run = measure(sim, work, accounts, plan.command, plan.sizes, settle_s,
                            plan.messages)
        fleet_run.label = plan.label
        results.runs.append(fleet_run)
    return results
