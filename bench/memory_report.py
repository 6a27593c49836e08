"""Benchmark 4's section: the sidecar's memory, from the baselines and from the processes the
start-up and bridge benchmarks ran anyway."""

from __future__ import annotations

from bench import bridge, bridge_report, startup
from bench.memory import Baselines
from bench.report import Section, Table
from bench.stats import fmt_mib, fmt_s

HEADERS = ["process", "n", "RSS", "PSS", "USS"]


def section(base: Baselines | None, runs: startup.StartupRuns | None,
            linked: bridge.BridgeResults | None) -> Section:
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
            f"Baseline sidecars run the production command (`node sidecar/main.js`, no test "
            f"preload): spawn → `ready` {fmt_s(base.silent_ready_s)} (silent port), "
            f"{fmt_s(base.closed_ready_s)} (closed port). At a closed port it reports "
            f"{', '.join(base.closed_frames)} and exits after {fmt_s(base.closed_exit_s)}, too "
            f"soon to sample, hence its peak RSS (wait4 `ru_maxrss`) and the silent-port "
            f"process (a listening socket that never answers the WebSocket upgrade) for the "
            f"steady figure.")
    if runs is not None:
        for row in startup.memory_rows(runs):
            table.add(*row)
    tables = [table]
    if linked is not None:
        for row in bridge_report.memory_rows(linked):
            table.add(*row)
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
    return Section(
        title="4. Sidecar memory",
        how=("One sidecar is one WhatsApp number. Measured on the processes of the other "
             "benchmarks and on baseline processes; command: `python -m bench --only memory` "
             "(baselines only) or a full run."),
        tables=tables, notes=notes)
