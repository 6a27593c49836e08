"""Benchmark 4's section: the sidecar's memory, from the baselines and from the processes the
start-up and bridge benchmarks ran anyway."""

from __future__ import annotations

import statistics

from bench import bridge, bridge_report, fleet, startup
from bench.memory import MAPPING_KINDS, Baselines
from bench.report import Section, Table
from bench.sidecar import PRODUCTION_COMMAND
from bench.stats import fmt_mib, fmt_ms, fmt_s

HEADERS = ["process", "n", "RSS", "PSS", "USS"]


def section(base: Baselines | None, runs: startup.StartupRuns | None,
            linked: bridge.BridgeResults | None, fleet_results: fleet.FleetResults | None = None,
            imports: list[dict[str, float]] | None = None) -> Section:
    table = Table(HEADERS)
    notes = [
        "RSS counts every resident page the process maps; PSS divides shared pages (the node "
        "binary, libraries) among the processes mapping them, so it depends on how many other "
        "node processes run; USS is what only this process maps, i.e. what stopping it gives "
        "back. psutil `memory_full_info()`, from /proc/PID/smaps. Every row was measured with "
        "at least one other node process running (the simulator, or an idle node next to the "
        "baselines), so the node binary is never counted as one process's own.",
    ]
    if base is not None:
        table.add("bare `node -e 'setInterval(…)'`", 1, fmt_mib(base.bare_node.rss),
                  fmt_mib(base.bare_node.pss), fmt_mib(base.bare_node.uss))
        table.add("sidecar, Baileys loaded, new identity, stuck connecting to a silent port",
                  1, fmt_mib(base.silent.rss), fmt_mib(base.silent.pss),
                  fmt_mib(base.silent.uss))
        table.add("sidecar pointed at a closed port: peak RSS until it exits by itself", 1,
                  fmt_mib(base.closed_peak_rss), "–", "–")
        notes.append(
            f"Baseline sidecars run the production command (`{PRODUCTION_COMMAND}`, no test "
            f"preload): spawn → `ready` {fmt_s(base.silent_ready_s)} (silent port), "
            f"{fmt_s(base.closed_ready_s)} (closed port). At a closed port it reports "
            f"{', '.join(base.closed_frames)} and exits after {fmt_s(base.closed_exit_s)}, too "
            f"soon to sample, hence its peak RSS (wait4 `ru_maxrss`) and the silent-port "
            f"process (a listening socket that never answers the WebSocket upgrade) for the "
            f"steady figure.")
    if runs is not None:
        for row in startup.memory_rows(runs):
            table.add(*row)
    if linked is not None:
        for row in bridge_report.memory_rows(linked):
            table.add(*row)
    tables = [table] if table.rows else []
    if linked is not None:
        gc = bridge_report.gc_table(linked)
        if gc is not None:
            tables.append(gc)
            notes.append(
                "The forced GC: SIGUSR1 opens the inspector of the bridge's sidecar (started "
                "with `--inspect-port`, inactive until then), and `HeapProfiler.collectGarbage` "
                "runs twice; the table above it is the sidecar's own `process.memoryUsage()` "
                "before and after.")
        elif linked.gc_error:
            notes.append(f"The forced GC could not run: {linked.gc_error}")
    if fleet_results is not None:
        fleet_tables, fleet_notes = fleet_section(fleet_results)
        tables += fleet_tables
        notes += fleet_notes
    if imports:
        tables.append(imports_table(imports))
        notes.append(
            "Import costs: `node --expose-gc <the production command's node options> "
            "bench/imports.mjs` loads the sidecar's modules in the sidecar's order and reads "
            "`process.memoryUsage()` after two full GCs at each step; each row is what that step "
            "added (a module already loaded by an earlier step costs nothing again). The last "
            "row is Baileys' package index, which the sidecar skips (`sidecar/baileys.js`).")
    return Section(
        title="4. Sidecar memory",
        how=("One sidecar is one WhatsApp number. Measured on the processes of the other "
             "benchmarks, on baseline processes and on fleets of linked, idle sidecars (one "
             "per number, all at once, against the simulator); command: `python -m bench "
             "--only memory` (baselines, fleets, import costs) or a full run. Sidecars run "
             f"the production command (BAILEYS_SIDECAR_COMMAND's default, "
             f"`{PRODUCTION_COMMAND}`) unless a row says otherwise."),
        tables=tables, notes=notes)


FLEET_HEADERS = ["sidecars (command)", "numbers", "RSS each", "PSS each", "USS each",
                 "largest PSS", "PSS of all"]


def _fleet_row(command: str, step: fleet.Step) -> list[str]:
    return [f"{step.label} (`{command}`)", str(step.n), fmt_mib(step.mean("rss")),
            fmt_mib(step.mean("pss")), fmt_mib(step.mean("uss")), fmt_mib(step.largest("pss")),
            fmt_mib(step.total("pss"))]


def fleet_section(r: fleet.FleetResults) -> tuple[list[Table], list[str]]:
    runs = [run for run in r.runs if not run.label]
    candidates = [run for run in r.runs if run.label]
    tables: list[Table] = []
    table = Table(FLEET_HEADERS)
    for run in runs:
        for step in run.steps:
            table.add(*_fleet_row(run.command, step))
    tables.append(table)
    notes = [
        f"Fleets: {r.linked} accounts linked first ({fmt_s(r.link_s)}, four at a time), then "
        f"stopped; each fleet restarts them on their saved sessions, all of a step at once "
        f"(as the bridge resumes its numbers), waits for every `open` and leaves them idle "
        f"{r.settle_s:.0f} s before sampling; the next step adds sidecars to the running ones. "
        f"Means per sidecar; the simulator is the only other node process, so PSS divides "
        f"node's shared pages among n + 1 processes. The forced GC is the inspector's "
        f"`HeapProfiler.collectGarbage`, twice, in every sidecar (`--inspect-port`, off until "
        f"SIGUSR1; the open inspector itself adds ~1 MiB).",
    ]
    main = next((run for run in runs if run.command == PRODUCTION_COMMAND), None)
    if main is not None and main.mappings is not None and main.mappings_gc is not None:
        tables.append(_breakdown(main))
        notes.append(
            "The breakdown is the sidecar with the median PSS of the largest fleet, after the "
            "forced GC: /proc/PID/smaps by mapping (private = pages no other process maps), "
            "and V8's `getHeapSpaceStatistics()` (resident size per space). \"Other anonymous "
            "memory\" is anonymous private memory that is not V8's heap: malloc'd memory of "
            "Node, V8 (compiler zones, tables) and OpenSSL, WebAssembly memory and compiled "
            "code, thread stacks.")
    active = [run for run in runs if run.activity is not None]
    if active:
        tables.append(_activity_table(active))
        a = active[0].activity
        assert a is not None
        notes.append(
            f"Activity: with the largest fleet running, one sidecar receives {a.messages} texts "
            f"from one contact one at a time (the next after the previous `message` frame), "
            f"then sends {a.messages} (`send_text`, one at a time, the first to a new contact "
            f"includes the number check and a new Signal session); CPU is the sidecar's own "
            f"user + system time over each half, divided by the messages; \"later\" is "
            f"{r.settle_s:.0f} s after the last send.")
    if candidates:
        tables.append(_candidates_table(candidates))
        notes.append(
            f"Candidates (`--candidates`): each command alone, {candidates[0].steps[0].n} "
            f"sidecars at once, measured as the fleets above, plus the same activity. CPU per "
            f"message is one sidecar's, so a candidate that saves memory by compiling or "
            f"collecting less shows its price there.")
    for run in r.runs:
        if run.gc_error:
            notes.append(f"The forced GC of the `{run.command}` fleet failed: {run.gc_error}")
    return tables, notes


def _breakdown(run: fleet.FleetRun) -> Table:
    m, gc = run.mappings, run.mappings_gc
    assert m is not None and gc is not None
    n = run.steps[-1].n
    table = Table([f"one linked idle sidecar of {n}, after a full GC", "RSS", "PSS", "private"])
    labels = {"node binary": "node executable (file, shared)",
              "shared libraries": "shared libraries (files)", "other files": "other files",
              "stacks": "main thread stack"}
    for kind in MAPPING_KINDS:
        if kind != "anonymous" and m.rss[kind]:
            table.add(labels[kind], fmt_mib(m.rss[kind]), fmt_mib(m.pss[kind]),
                      fmt_mib(m.private[kind]))
    table.add("anonymous memory, all of it", fmt_mib(m.rss["anonymous"]),
              fmt_mib(m.pss["anonymous"]), fmt_mib(m.private["anonymous"]))
    names = {"old_space": "old space (objects, bytecode, source texts)",
             "large_object_space": "large objects (mostly module source texts)",
             "code_space": "code space (compiled code)", "new_space": "new space (young objects)"}
    heap = 0
    for space in sorted(gc.spaces, key=lambda s: -s.physical):
        heap += space.physical
        if space.physical >= 2**20 // 10:
            label = names.get(space.name, space.name)
            table.add(f"  V8 heap: {label}, {fmt_mib(space.used)} live", fmt_mib(space.physical),
                      "", "")
    table.add(f"  V8 heap, all spaces ({fmt_mib(gc.after.get('heapUsed'))} live)",
              fmt_mib(heap), "", "")
    table.add("  other anonymous memory (native: malloc, WebAssembly, stacks)",
              fmt_mib(max(0, m.private["anonymous"] - heap)), "", "")
    table.add("**total**", fmt_mib(sum(m.rss.values())), fmt_mib(sum(m.pss.values())),
              fmt_mib(sum(m.private.values())))
    return table


def _activity_table(runs: list[fleet.FleetRun]) -> Table:
    table = Table(["one busy sidecar among the fleet (command)", "CPU per message received",
                   "CPU per message sent", "stanza → frame p50", "`send_text` → result p50",
                   "PSS before", "PSS after", "PSS later"])
    for run in runs:
        a = run.activity
        assert a is not None
        table.add(f"`{run.command}`", fmt_ms(a.receive_cpu_ms / 1000),
                  fmt_ms(a.send_cpu_ms / 1000), fmt_ms(statistics.median(a.receive_latency_s)),
                  fmt_ms(statistics.median(a.send_latency_s)), fmt_mib(a.before.pss),
                  fmt_mib(a.after.pss), fmt_mib(a.later.pss))
    return table


def _candidates_table(runs: list[fleet.FleetRun]) -> Table:
    table = Table(["candidate", "command", "PSS each, idle", "RSS each, idle",
                   "PSS each, after GC", "CPU per message received / sent",
                   "spawn → `open` p50 (all at once)"])
    base = runs[0].steps[0].mean("pss")
    for run in runs:
        idle, gc = run.steps[0], run.steps[-1]
        delta = idle.mean("pss") - base
        cpu = (f"{fmt_ms(run.activity.receive_cpu_ms / 1000)} / "
               f"{fmt_ms(run.activity.send_cpu_ms / 1000)}") if run.activity else "–"
        table.add(run.label, f"`{run.command}`",
                  fmt_mib(idle.mean("pss")) + (f" ({delta / 2**20:+.1f})" if run is not runs[0]
                                               else ""),
                  fmt_mib(idle.mean("rss")), fmt_mib(gc.mean("pss")) if gc is not idle else "–",
                  cpu, fmt_s(statistics.median(run.start_open_s)))
    return table


def imports_table(rows: list[dict[str, float]]) -> Table:
    table = Table(["loading (in the sidecar's order)", "V8 heap used, added", "RSS, added",
                   "RSS after"])
    for prev, row in zip(rows, rows[1:], strict=False):
        table.add(str(row["step"]), f"{(row['heap_used'] - prev['heap_used']) / 2**20:+.1f} MiB",
                  f"{(row['rss'] - prev['rss']) / 2**20:+.1f} MiB", fmt_mib(row["rss"]))
    table.rows.insert(0, ["bare node", "", "", fmt_mib(rows[0]["rss"])])
    return table
