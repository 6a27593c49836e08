"""Ponte's benchmarks: `python -m bench` (or `make bench`) measures start-up, linking, message
latency and throughput through the whole bridge, and the sidecar's memory, on this machine, and
writes the figures to docs/benchmarks.md. Not part of `make test`: nothing here asserts timings.

Everything runs on 127.0.0.1 against the test doubles (tests/fakes, tests/simulator) and a
throwaway redis-server; see bench/README.md.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
