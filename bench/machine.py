"""What the figures were measured on: they mean little without the machine and the versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime

import psutil

from bench import ROOT
from bench.report import Section, Table
from bridge import embedded_redis


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _baileys_version() -> str:
    path = ROOT / "node_modules" / "@whiskeysockets" / "baileys" / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                         check=False)
    return out.stdout.rstrip("\n")  # not strip(): porcelain lines start with a space


def code_version() -> str:
    """The commit measured, and any uncommitted change to code the figures depend on (others
    work in the same checkout: their edits in progress are what ran)."""
    commit = _git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "bridge", "sidecar",
                                         "package-lock.json", "pyproject.toml").splitlines()]
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def describe(command: str, started: datetime, elapsed_s: float,
             load: tuple[float, float, float], code: str) -> Section:
    """`load`: os.getloadavg() and `code`: code_version(), both taken before the first
    benchmark."""
    memory = psutil.virtual_memory()
    table = Table(["", ""])
    table.add("date (UTC)", started.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("command", f"`{command}`")
    table.add("run time", f"{elapsed_s:.0f} s")
    table.add("code", code)
    table.add("CPU", f"{os.cpu_count()} logical "
              f"({psutil.cpu_count(logical=False) or '?'} physical), {_cpu_model()}")
    table.add("RAM", f"{memory.total / 2**30:.1f} GiB")
    table.add("load average at start", " / ".join(f"{v:.2f}" for v in load))
    table.add("OS", platform.platform())
    table.add("Node.js", _version(["node", "--version"]))
    table.add("Baileys", _baileys_version())
    table.add("Python", sys.version.split()[0])
    redis_version = _version([str(embedded_redis.server_binary()), "--version"])
    table.add("Redis", redis_version.split(" sha")[0])
    return Section(title="Machine and run", how="", tables=[table])
