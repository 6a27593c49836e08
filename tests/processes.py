"""Ponte's own programs as real subprocesses, for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT


class PonteProcess:
    """`ponte <command>` with its output in a log file (shown when a test fails)."""

    def __init__(self, command: str, env: dict[str, str], log: Path, *,
                 cwd: Path = ROOT) -> None:
        self.command = command
        self.log = log
        self._handle = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", command], cwd=cwd,
                                     env=env, stdout=self._handle, stderr=subprocess.STDOUT)

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ponte {self.command} exited {self.proc.returncode}:\n"
                                   + self.output())
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ponte {self.command} did not answer {url}:\n{self.output()}")

    def output(self) -> str:
        self._handle.flush()
        return self.log.read_text(errors="replace")[-20000:]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._handle.close()
        return self.proc.returncode
