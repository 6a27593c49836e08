"""The real sidecar (sidecar/main.js) spawned directly, without the bridge: every stdout frame
is timestamped the moment it is read, so start-up and linking can be timed from the spawn."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import ROOT
from bench.infra import BenchError
from bridge.config import Settings

# BAILEYS_SIDECAR_COMMAND's default: what a sidecar runs as unless the operator says otherwise.
PRODUCTION_COMMAND: str = Settings.model_fields["baileys_sidecar_command"].default


@dataclass(frozen=True)
class Frame:
    at: float  # time.monotonic() when the line was read
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


def sidecar_env(auth_dir: Path, websocket_url: str, **extra: str) -> dict[str, str]:
    """What the supervisor gives a sidecar (docs/protocol.md, Launch), nothing else."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    env.update(PONTE_INSTANCE_ID="bench", PONTE_AUTH_DIR=str(auth_dir),
               PONTE_WA_WEBSOCKET_URL=websocket_url, PONTE_LOG_LEVEL="warn",
               PONTE_BROWSER_NAME="Ponte")
    env.update(extra)
    return env


def is_state(state: str) -> Callable[[Frame], bool]:
    return lambda f: f.type == "connection" and f.data.get("state") == state


def is_type(kind: str) -> Callable[[Frame], bool]:
    return lambda f: f.type == kind


class Sidecar:
    """One sidecar process. `started` is taken right before the fork, so spawn → frame times
    include exec, Node's start and the Baileys import, as the supervisor sees them."""

    def __init__(self, command: str, env: dict[str, str], stderr_log: Path) -> None:
        self._frames: list[Frame] = []
        self._changed = threading.Condition()
        self._stderr = stderr_log.open("ab")
        self.peak_rss: int | None = None  # bytes, from wait4 once the process is reaped
        self.exit_code: int | None = None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(shlex.split(command), cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        daemon=True, name=f"sidecar-{self.proc.pid}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            at = time.monotonic()
            try:
                data = json.loads(line)
            except ValueError:
                continue  # the protocol allows nothing but frames on stdout; not ours to judge
            with self._changed:
                self._frames.append(Frame(at, data))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def frames(self) -> list[Frame]:
        with self._changed:
            return list(self._frames)

    def wait(self, predicate: Callable[[Frame], bool], timeout: float = 30.0,
             after: float = 0.0) -> Frame:
        """The first frame read at or after `after` (monotonic) that matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in self._frames:
                    if frame.at >= after and predicate(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._reader.is_alive() and self.proc.poll() is not None):
                    seen = [f.data.get("state", f.type) for f in self._frames]
                    raise BenchError(f"sidecar {self.pid}: expected frame not seen; got {seen}")
                self._changed.wait(min(remaining, 0.1))

    def command(self, command: dict[str, Any]) -> None:
        """One JSON command line on the sidecar's stdin (docs/protocol.md)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 15.0) -> float:
        """Stdin EOF (the bridge going away): the sidecar ends the socket, flushes its auth
        writes and exits. Returns the seconds from EOF to exit."""
        begun = time.monotonic()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.reap(timeout)
        return time.monotonic() - begun

    def reap(self, timeout: float) -> None:
        """Waits for the exit with wait4, which also gives the child's peak RSS (ru_maxrss)."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.exit_code = self.proc.returncode if self.proc.returncode is not None else -1
                break
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.exit_code
                self.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                deadline = time.monotonic() + 5
            time.sleep(0.005)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
