"""Summaries of repeated measurements and how they are printed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    min: float
    max: float
    mean: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default): with few samples p95
    lies between the two largest instead of jumping to the maximum."""
    if not ordered:
        raise ValueError("no samples")
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    return Summary(n=len(ordered), p50=percentile(ordered, 0.5), p95=percentile(ordered, 0.95),
                   min=ordered[0], max=ordered[-1], mean=sum(ordered) / len(ordered))


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def fmt_mib(size: int | float | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f} MiB"


def timing_row(label: str, samples: Sequence[float], *, unit: str = "ms") -> list[str]:
    """One table row: label, n, p50, p95, max (and min, so one outlier is visible as such)."""
    if not samples:
        return [label, "0", "–", "–", "–", "–"]
    fmt = fmt_ms if unit == "ms" else fmt_s
    s = summarize(samples)
    return [label, str(s.n), fmt(s.p50), fmt(s.p95), fmt(s.max), fmt(s.min)]


TIMING_HEADERS = ["measurement", "n", "p50", "p95", "max", "min"]
