"""`python -m bench`: run every benchmark, print the figures, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    ROOT,
    bridge,
    bridge_report,
    fleet,
    machine,
    memory,
    memory_report,
    report,
    startup,
    webhook,
)
from bench.infra import redis_server
from bench.memory import Baselines
from bench.report import Section
from bench.sidecar import PRODUCTION_COMMAND
from bridge.config import Settings
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import WhatsAppSimulator

ALL = ("startup", "bridge", "webhook", "memory")
DOCS = ROOT / "docs" / "benchmarks.md"


def parse(argv: list[str] | None) -> argparse.Namespace:
    default_concurrency = Settings.model_fields["chatwoot_queue_concurrency"].default
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (few repetitions); writes nothing unless --out")
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {','.join(ALL)}; a subset writes "
                             "nothing unless --out")
    parser.add_argument("--repetitions", "-n", type=int, default=None,
                        help="start-up/link repetitions (default 10, quick 2)")
    parser.add_argument("--messages", type=int, default=None,
                        help="messages per phase, bridge and sidecar alone (default 100, "
                             "quick 10)")
    parser.add_argument("--settle", type=float, default=None,
                        help="idle seconds after the link before the settled memory sample, "
                             "and at each fleet step (default 30, quick 2)")
    parser.add_argument("--fleet", default=None,
                        help="memory: numbers (linked sidecars) running at once, comma-separated "
                             "steps (default 1,10,20, quick 1,2); idle time per step: --settle")
    parser.add_argument("--fleet-messages", type=int, default=None,
                        help="memory: messages one sidecar of the largest fleet receives and "
                             "sends (default 50, quick 5)")
    parser.add_argument("--candidates", action="store_true",
                        help="memory: also measure each candidate sidecar command (bench/fleet.py "
                             "CANDIDATES) at the largest fleet size; ~2 min each")
    parser.add_argument("--concurrency", type=int, default=default_concurrency,
                        help=f"CHATWOOT_QUEUE_CONCURRENCY for the worker "
                             f"(default {default_concurrency}, Ponte's default)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"markdown file to write (default {DOCS.relative_to(ROOT)} on a "
                             "full run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := set(args.only) - set(ALL):
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    full = not args.quick and set(args.only) == set(ALL)
    args.repetitions = args.repetitions or (2 if args.quick else 10)
    args.messages = args.messages or (10 if args.quick else 100)
    if args.messages < 10 or args.messages % 10:
        parser.error("--messages must be a multiple of 10 (one burst is spread over ten chats)")
    args.settle = args.settle if args.settle is not None else (2.0 if args.quick else 30.0)
    try:
        args.fleet = sorted({int(n) for n in (args.fleet or ("1,2" if args.quick else "1,10,20"))
                             .split(",") if n.strip()})
    except ValueError:
        parser.error("--fleet takes comma-separated numbers of sidecars")
    if not args.fleet or min(args.fleet) < 1:
        parser.error("--fleet needs at least one step of one sidecar or more")
    if args.fleet_messages is None:
        args.fleet_messages = 5 if args.quick else 50
    if args.no_write:
        args.out = None
    elif args.out is None and full:
        args.out = DOCS
    return args


def _startup(args: argparse.Namespace, work: Path) -> tuple[Section, startup.StartupRuns]:
    print(f"sidecar start-up and linking, {args.repetitions} repetitions…", flush=True)
    sim = WhatsAppSimulator(work / "simulator-startup.log").start()
    try:
        return startup.run(sim, work, args.repetitions, args.messages)
    finally:
        sim.stop()


def _bridge(args: argparse.Namespace, work: Path) -> tuple[Section, bridge.BridgeResults]:
    print(f"messages through the bridge, {args.messages} per phase…", flush=True)
    opts = bridge.Options(messages=args.messages, settle_s=args.settle,
                          concurrency=args.concurrency)
    if args.quick:
        opts.idle_pauses = (2.0, 5.5)  # one pause on each side of the outbox's read timeout
    (work / "redis").mkdir()
    sim = WhatsAppSimulator(work / "simulator-bridge.log").start()
    try:
        with redis_server(work / "redis") as redis, FakeChatwoot() as fake:
            linked = bridge.run(fake, sim, work, redis, opts)
    finally:
        sim.stop()
    return bridge_report.section(linked, opts), linked


def _webhook(args: argparse.Namespace, work: Path) -> Section:
    print("Chatwoot's webhooks under load…", flush=True)
    opts = webhook.Options(concurrency=args.concurrency)
    if args.quick:
        opts.steps = (webhook.Step(50, 2), webhook.Step(200, 2))
        opts.conversations = 20
    (work / "webhook-redis").mkdir()
    with redis_server(work / "webhook-redis") as redis, FakeChatwoot() as fake:
        return webhook.section(webhook.run(fake, work, redis, opts))


def _fleet(args: argparse.Namespace, work: Path) -> fleet.FleetResults:
    largest = max(args.fleet)
    plans = [fleet.Plan(PRODUCTION_COMMAND, tuple(args.fleet), args.fleet_messages)]
    if PRODUCTION_COMMAND != fleet.UNTUNED_COMMAND:
        # The "before": Node's and V8's defaults, same code and steps.
        plans.append(fleet.Plan(fleet.UNTUNED_COMMAND, tuple(args.fleet), args.fleet_messages))
    if args.candidates:
        plans += [fleet.Plan(command, (largest,), args.fleet_messages, label)
                  for label, command in fleet.CANDIDATES]
    print(f"sidecar fleets of {', '.join(map(str, args.fleet))} linked numbers…", flush=True)
    sim = WhatsAppSimulator(work / "simulator-fleet.log").start()
    try:
        return fleet.run(sim, work, plans, args.settle)
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    started, load, clock = datetime.now(UTC), os.getloadavg(), time.monotonic()
    code = machine.code_version()
    work = Path(tempfile.mkdtemp(prefix="ponte-bench-"))
    sections: list[Section] = []
    base: Baselines | None = None
    runs: startup.StartupRuns | None = None
    linked: bridge.BridgeResults | None = None
    fleets: fleet.FleetResults | None = None
    imports: list[dict[str, float]] | None = None
    try:
        if "memory" in args.only:
            print("memory baselines…", flush=True)
            base = memory.baselines(work / "baseline-sidecar.log", 2.0 if args.quick else 3.0)
            imports = memory.import_costs(PRODUCTION_COMMAND)
        if "startup" in args.only:
            section, runs = _startup(args, work)
            sections.append(section)
            print(section.markdown() + "\n", flush=True)
        if "bridge" in args.only:
            section, linked = _bridge(args, work)
            sections.append(section)
            print(section.markdown() + "\n", flush=True)
        if "memory" in args.only:
            fleets = _fleet(args, work)
        if base is not None or runs is not None or linked is not None:
            section = memory_report.section(base, runs, linked, fleets, imports)
            sections.append(section)
            print(section.markdown() + "\n", flush=True)
        if "webhook" in args.only:
            section = _webhook(args, work)
            sections.append(section)
            print(section.markdown() + "\n", flush=True)
    except Exception:
        traceback.print_exc()
        print(f"\nbenchmark failed; logs kept in {work}", file=sys.stderr)
        return 1
    header = machine.describe(command, started, time.monotonic() - clock, load, code)
    print(header.markdown())
    if args.out is not None:
        report.write(args.out, header, sections)
        print(f"\nwritten to {args.out}")
    if args.keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
