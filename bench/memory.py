"""Memory of one process: RSS, PSS and USS from /proc (psutil), and, through the V8 inspector,
the heap after a forced full GC. Plus the baselines a sidecar's figures compare with."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import ROOT
from bench.infra import BenchError, wait_until
from bench.sidecar import PRODUCTION_COMMAND, Sidecar, is_state, is_type, sidecar_env
from tests.conftest import free_port


@dataclass(frozen=True)
class MemorySample:
    rss: int
    pss: int  # shared pages (node's text, libraries) divided among the processes mapping them
    uss: int  # pages only this process maps: what killing it would free


def sample(pid: int) -> MemorySample:
    info = psutil.Process(pid).memory_full_info()
    return MemorySample(rss=info.rss, pss=info.pss, uss=info.uss)


# A tiny CDP client, run by node because `ws` is already in node_modules (Baileys uses it) and
# Python has no WebSocket client installed. Prints process.memoryUsage() before and after a full
# GC, as seen from inside the target process.
_CDP_SCRIPT = r"""
const WebSocket = require('ws');
const ws = new WebSocket(process.env.BENCH_WS_URL);
let next = 0;
const pending = new Map();
const call = (method, params = {}) => new Promise((resolve, reject) => {
  const id = ++next;
  pending.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params }));
});
const evaluate = async (expression) => JSON.parse((await call('Runtime.evaluate', {
  expression, returnByValue: true })).result.value);
const usage = () => evaluate('JSON.stringify(process.memoryUsage())');
// V8's own account of its heap, by space (physical = resident); getBuiltinModule works in an
// ES module's context, where `require` does not exist.
const spaces = () => evaluate(`JSON.stringify(process.getBuiltinModule('v8')
  .getHeapSpaceStatistics().map((s) => ({ name: s.space_name, size: s.space_size,
    used: s.space_used_size, physical: s.physical_space_size })))`);
ws.on('message', (data) => {
  const m = JSON.parse(data);
  const p = pending.get(m.id);
  if (!p) return;
  pending.delete(m.id);
  if (m.error) p.reject(new Error(m.error.message)); else p.resolve(m.result);
});
ws.on('error', (err) => { console.error(String(err)); process.exit(1); });
ws.on('open', async () => {
  try {
    const before = await usage();
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');  // a second pass frees what the first finalized
    const after = await usage();
    process.stdout.write(JSON.stringify({ before, after, spaces: await spaces() }));
    ws.close();
  } catch (err) { console.error(String(err)); process.exit(1); }
});
"""


@dataclass(frozen=True)
class HeapSpace:
    name: str  # V8's space name: new_space, old_space, code_space, large_object_space, ...
    size: int  # committed
    used: int  # live objects (after the GC)
    physical: int  # resident


@dataclass(frozen=True)
class GcResult:
    before: dict[str, int]  # process.memoryUsage() inside the sidecar: rss, heapTotal, heapUsed,
    after: dict[str, int]   # external, arrayBuffers
    memory: MemorySample    # /proc figures right after the GC
    spaces: tuple[HeapSpace, ...] = ()  # V8's heap by space, after the GC


def force_gc(pid: int, inspect_port: int) -> GcResult:
    """SIGUSR1 opens the inspector on the port the process was started with
    (`--inspect-port`), so it is off while everything else is measured."""
    os.kill(pid, signal.SIGUSR1)
    base = f"http://127.0.0.1:{inspect_port}"

    def targets() -> list[dict[str, str]] | None:
        try:
            answer = httpx.get(f"{base}/json/list", timeout=2)
            return list(answer.json()) or None
        except (httpx.TransportError, ValueError):
            return None

    target = wait_until(targets, timeout=10, what="the sidecar's inspector", interval=0.05)[0]
    env = dict(os.environ, BENCH_WS_URL=target["webSocketDebuggerUrl"])
    out = subprocess.run(["node", "-e", _CDP_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise BenchError(f"inspector GC failed: {out.stderr.strip()[-500:]}")
    data = json.loads(out.stdout)
    spaces = tuple(HeapSpace(str(s["name"]), int(s["size"]), int(s["used"]), int(s["physical"]))
                   for s in data.get("spaces", []))
    return GcResult(before=data["before"], after=data["after"], memory=sample(pid),
                    spaces=spaces)


# --- baselines -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Baselines:
    bare_node: MemorySample
    silent: MemorySample  # sidecar, Baileys loaded, stuck connecting to a port that never answers
    silent_ready_s: float  # spawn -> ready with the production command (no test preload)
    closed_peak_rss: int | None  # sidecar at a closed port: peak RSS until it exits by itself
    closed_ready_s: float
    closed_exit_s: float
    closed_frames: list[str]


def _idle_node() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["node", "-e", "setInterval(() => {}, 1000)"], cwd=ROOT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


def _silent_port(log: Path, settle_s: float) -> tuple[MemorySample, float]:
    """A listening socket nobody accepts from: the WebSocket upgrade is never answered, so the
    sidecar stays up, connecting (a closed port would make it exit within milliseconds)."""
    with socket.socket() as listener, tempfile.TemporaryDirectory() as auth:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}"
        car = Sidecar(PRODUCTION_COMMAND,
                      sidecar_env(Path(auth), url, PONTE_CONNECT_TIMEOUT_MS="120000"), log)
        try:
            ready = car.wait(is_type("ready"))
            car.wait(is_state("connecting"))
            time.sleep(settle_s)
            return sample(car.pid), ready.at - car.started
        finally:
            car.stop()


def _closed_port(log: Path) -> tuple[Sidecar, float]:
    with tempfile.TemporaryDirectory() as auth:
        car = Sidecar(PRODUCTION_COMMAND,
                      sidecar_env(Path(auth), f"ws://127.0.0.1:{free_port()}"), log)
        car.reap(30)
        return car, time.monotonic() - car.started


def baselines(log: Path, settle_s: float) -> Baselines:
    # A second idle node runs throughout: PSS and USS count the node binary's pages as the
    # process's own when nothing else maps them, and the sidecars measured elsewhere always run
    # next to another node process (the simulator). With a companion the rows compare.
    companion = _idle_node()
    try:
        bare = _idle_node()
        try:
            time.sleep(settle_s)
            bare_sample = sample(bare.pid)
        finally:
            _stop(bare)
        silent, silent_ready = _silent_port(log, settle_s)
        closed, closed_exit = _closed_port(log)
    finally:
        _stop(companion)
    frames = closed.frames()
    ready = next((f.at - closed.started for f in frames if f.type == "ready"), float("nan"))
    return Baselines(
        bare_node=bare_sample, silent=silent, silent_ready_s=silent_ready,
        closed_peak_rss=closed.peak_rss, closed_ready_s=ready, closed_exit_s=closed_exit,
        closed_frames=[str(f.data.get("state") or f.type) + (
            f" {f.data.get('status_code')}" if f.data.get("state") == "close" else "")
            for f in frames])


# --- where a process's pages are --------------------------------------------------------------
@dataclass(frozen=True)
class Mappings:
    """A process's resident memory by kind of mapping (/proc/PID/smaps), in bytes."""
    rss: dict[str, int]
    pss: dict[str, int]
    private: dict[str, int]  # Private_Clean + Private_Dirty: what only this process holds


_MAPPING_LINE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
MAPPING_KINDS = ("node binary", "shared libraries", "other files", "anonymous", "stacks")


def mappings(pid: int) -> Mappings:
    """Anonymous mappings and the brk heap are V8's heap pages, malloc's arenas (Node, V8 and
    OpenSSL internals, compiled code metadata), WebAssembly memory and code, and thread stacks
    other than the main one; files are the node binary, shared libraries and anything mmapped."""
    exe = os.path.realpath(f"/proc/{pid}/exe")
    rss = dict.fromkeys(MAPPING_KINDS, 0)
    pss = dict.fromkeys(MAPPING_KINDS, 0)
    private = dict.fromkeys(MAPPING_KINDS, 0)
    kind = "anonymous"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            # A mapping's first line: range perms offset dev inode path
            if _MAPPING_LINE.match(line):
                fields = line.split(None, 5)
                path = fields[5].strip() if len(fields) > 5 else ""
                if path == exe:
                    kind = "node binary"
                elif path == "[stack]":
                    kind = "stacks"
                elif path in ("", "[heap]") or path.startswith("[anon"):
                    kind = "anonymous"
                elif ".so" in os.path.basename(path):
                    kind = "shared libraries"
                else:
                    kind = "other files"  # incl. [vdso], [vvar]
                continue
            head, _, rest = line.partition(":")
            if head in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                value = int(rest.split()[0]) * 1024
                if head == "Rss":
                    rss[kind] += value
                elif head == "Pss":
                    pss[kind] += value
                else:
                    private[kind] += value
    return Mappings(rss=rss, pss=pss, private=private)


# --- what loading costs ---------------------------------------------------------------------
def import_costs(command: str) -> list[dict[str, Any]]:
    """bench/imports.mjs run by the `node` of `command`, with its node options."""
    argv = shlex.split(command)
    script = next(i for i, arg in enumerate(argv) if arg.endswith(("main.js", ".mjs", ".js")))
    probe = [*argv[:script], "--expose-gc", "bench/imports.mjs"]
    out = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False, env={k: v for k, v in os.environ.items()
                                           if k in ("PATH", "HOME", "LANG", "TZ")})
    if out.returncode != 0:
        raise BenchError(f"bench/imports.mjs failed: {out.stderr.strip()[-500:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
