"""CPU time per component over a phase: where a message's cost goes when the machine is the
limit (with two CPUs shared by everything, throughput is CPU-bound long before anything waits)."""

from __future__ import annotations

from collections.abc import Callable

import psutil

PidSource = Callable[[], list[int]]


def tree(pid: int) -> list[int]:
    """A process and its descendants (the RQ worker pool forks its workers)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue  # gone meanwhile: its time is lost, which is at most one process's share
        total += times.user + times.system
    return total


class CpuMeter:
    """`components` maps a name to the pids it covers, looked up at each snapshot."""

    def __init__(self, components: dict[str, PidSource]) -> None:
        self.components = components

    def snapshot(self) -> dict[str, float]:
        return {name: _cpu_seconds(source()) for name, source in self.components.items()}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before.get(name, 0.0) for name in after}
