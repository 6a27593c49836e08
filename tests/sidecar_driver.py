"""Drives the real Node sidecar (sidecar/main.js) directly, without the bridge's supervisor.

`SidecarProcess` spawns it the way the supervisor does (docs/protocol.md "Launch": the command split
like a shell would, cwd the project root, an allow-listed environment), keeps its stdin open (EOF
means "stop"), and collects its stdout frames on a reader thread, each stamped with the monotonic
time it arrived, so a test can both wait for a frame and later ask what had been seen before a
given moment (e.g. when it killed the process).

Also: `AuthDir`, a read-only view of an auth-state directory (creds.json, key files, temp files),
and `parse_qr`, the fields of a QR string.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
CREDS_FILE = "creds.json"
TEMP_PREFIX = ".ponte-tmp-"  # sidecar/auth.js TEMP_PREFIX: an interrupted atomic write's leftover
# The fields without which the sidecar refuses creds.json (sidecar/auth.js missingCredsField).
ESSENTIAL_CREDS_FIELDS = ("noiseKey", "signedIdentityKey", "signedPreKey", "registrationId",
                          "advSecretKey")

Frame = dict[str, Any]


class SidecarError(AssertionError):
    """The sidecar did not do what the test waited for; carries its recent frames and stderr."""


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when the reader thread got the line
    frame: Frame


class SidecarProcess:
    """One real sidecar process on one auth directory."""

    def __init__(self, command: str, *, auth_dir: Path, websocket_url: str, stderr_path: Path,
                 instance_id: str = "1-1", log_level: str = "error",
                 extra_env: dict[str, str] | None = None) -> None:
        self.argv = shlex.split(command)
        self.auth_dir = auth_dir
        self.stderr_path = stderr_path
        self.env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
        self.env.update({
            "PONTE_INSTANCE_ID": instance_id,
            "PONTE_AUTH_DIR": str(auth_dir),
            "PONTE_WA_WEBSOCKET_URL": websocket_url,
            "PONTE_LOG_LEVEL": log_level,
            **(extra_env or {}),
        })
        self.proc: subprocess.Popen[bytes] | None = None
        self.received: list[Received] = []
        self.bad_lines: list[bytes] = []  # stdout must carry frames only
        self._cond = threading.Condition()
        self._eof = False
        self._reader: threading.Thread | None = None
        self._stderr: IO[bytes] | None = None

    # --- process ----------------------------------------------------------------------------
    def start(self) -> SidecarProcess:
        self._stderr = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self._reader = threading.Thread(target=self._read, name="sidecar-stdout", daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self, sig: signal.Signals) -> float:
        """Sends `sig`; returns the monotonic time it was sent."""
        assert self.proc is not None
        at = time.monotonic()
        self.proc.send_signal(sig)
        return at

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise SidecarError(f"sidecar {self.pid} did not exit within {timeout}s\n"
                               + self.describe()) from None
        # Every frame written before the exit is in the pipe: let the reader drain it.
        if self._reader is not None:
            self._reader.join(5)
        return code

    def send(self, command: Frame) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def shutdown(self, timeout: float = 15.0) -> int:
        """The `shutdown` command: answered ok, close `intentional`, exit 0 (returned)."""
        self.send({"type": "shutdown", "id": "durability-stop"})
        self.wait_frame(lambda f: f.get("type") == "result" and f.get("id") == "durability-stop",
                        timeout, "the shutdown result")
        return self.wait_exit(timeout)

    def close(self) -> None:
        """Makes sure the process is gone and its pipes are closed (cleanup, any state)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass  # it died with unread input; nothing to tell it any more
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()

    # --- frames -----------------------------------------------------------------------------
    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            at = time.monotonic()
            try:
                frame = json.loads(line)
            except ValueError:
                frame = None
            with self._cond:
                if isinstance(frame, dict):
                    self.received.append(Received(at, frame))
                else:
                    self.bad_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def frames(self) -> list[Frame]:
        with self._cond:
            return [r.frame for r in self.received]

    def frames_before(self, moment: float) -> list[Frame]:
        with self._cond:
            return [r.frame for r in self.received if r.at <= moment]

    def wait_frame(self, predicate: Callable[[Frame], bool], timeout: float,
                   what: str = "a frame", start: int = 0) -> Frame:
        """The first frame (from index `start`) matching `predicate`; fails at stdout EOF."""
        deadline = time.monotonic() + timeout
        with self._cond:
            index = start
            while True:
                while index < len(self.received):
                    frame = self.received[index].frame
                    index += 1
                    if predicate(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(remaining)
        why = "stdout closed" if self._eof else f"timed out after {timeout}s"
        raise SidecarError(f"{why} waiting for {what}\n" + self.describe())

    def describe(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        stderr = self.stderr_path.read_text(errors="replace")[-4000:] \
            if self.stderr_path.exists() else ""
        shown = [_redact(f) for f in self.frames[-12:]]
        return (f"sidecar exit={code} frames(last 12)={json.dumps(shown)}\n"
                f"bad stdout lines={self.bad_lines[:3]!r}\nstderr tail:\n{stderr}")


def _redact(frame: Frame) -> Frame:
    # QR strings carry pairing secrets; a failure message needs only that there was one.
    return {**frame, "qr": "<qr>"} if frame.get("type") == "qr" else frame


# --- frames and QR strings -----------------------------------------------------------------
def is_qr(frame: Frame) -> bool:
    return frame.get("type") == "qr"


def is_open(frame: Frame) -> bool:
    return frame.get("type") == "connection" and frame.get("state") == "open"


def is_final_close(frame: Frame) -> bool:
    return (frame.get("type") == "connection" and frame.get("state") == "close"
            and not frame.get("will_reconnect"))


def is_restart_close(frame: Frame) -> bool:
    return (frame.get("type") == "connection" and frame.get("state") == "close"
            and bool(frame.get("will_reconnect")))


def is_fatal(frame: Frame) -> bool:
    return frame.get("type") == "fatal"


@dataclass(frozen=True)
class QrData:
    ref: str
    noise_key: str  # base64 of the client's Noise static public key
    identity_key: str  # base64 of the Signal identity public key
    adv_secret: str  # base64
    platform: str


def parse_qr(qr: str) -> QrData:
    """`https://wa.me/settings/linked_devices#<ref>,<noise>,<identity>,<adv>,<platform>`
    (Baileys' buildPairingQRData; /work/shared/whatsapp/README.md §5)."""
    fields = qr.split("#", 1)[-1].split(",")
    if len(fields) != 5:
        raise ValueError(f"a QR string has 5 comma-separated fields, this one {len(fields)}")
    return QrData(*fields)


# --- auth directory ------------------------------------------------------------------------
def buffer_b64(value: Any) -> str:
    """A Buffer as Baileys' BufferJSON writes it: {"type": "Buffer", "data": "<base64>"}."""
    if not (isinstance(value, dict) and value.get("type") == "Buffer"
            and isinstance(value.get("data"), str)):
        raise ValueError(f"not a BufferJSON Buffer: {str(value)[:80]}")
    # Round-trip through bytes so two spellings of the same key compare equal.
    return base64.b64encode(base64.b64decode(value["data"])).decode()


@dataclass
class AuthSnapshot:
    """What an auth directory holds at one moment, every file parsed."""
    creds: dict[str, Any] | None
    key_files: dict[str, Any] = field(default_factory=dict)  # name -> parsed JSON
    temp_files: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # partial or unparsable files

    @property
    def noise_public(self) -> str | None:
        return buffer_b64(self.creds["noiseKey"]["public"]) if self.creds else None

    @property
    def me_id(self) -> str | None:
        me = (self.creds or {}).get("me") or {}
        return me.get("id")

    def count(self, key_type: str) -> int:
        return sum(1 for name in self.key_files if name.startswith(f"{key_type}-"))


def snapshot(directory: Path) -> AuthSnapshot:
    """Reads every file of an auth directory and records anything partial or unexpected."""
    snap = AuthSnapshot(creds=None)
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.startswith(TEMP_PREFIX):
            # An interrupted write's temp file: never read as state (its target is intact) and
            # removed by the next start (FileStore.removeStaleTemps).
            snap.temp_files.append(name)
            continue
        if not name.endswith(".json"):
            snap.other_files.append(name)
            continue
        try:
            value = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            snap.problems.append(f"{name}: {path.stat().st_size} bytes, not JSON ({err})")
            continue
        if name == CREDS_FILE:
            snap.creds = value
            snap.problems.extend(f"{name}: {p}" for p in creds_problems(value))
        else:
            snap.key_files[name] = value
    return snap


def creds_problems(creds: Any) -> list[str]:
    """What makes parsed creds unusable (mirrors sidecar/auth.js missingCredsField)."""
    if not isinstance(creds, dict):
        return ["not an object"]
    problems = [f"no {name}" for name in ESSENTIAL_CREDS_FIELDS if name not in creds]
    try:
        for pair in ("noiseKey", "signedIdentityKey"):
            if pair in creds:
                for half in ("public", "private"):
                    if len(base64.b64decode(buffer_b64(creds[pair][half]))) != 32:
                        problems.append(f"{pair}.{half} is not 32 bytes")
        if "signedPreKey" in creds:
            buffer_b64(creds["signedPreKey"]["signature"])
            if not isinstance(creds["signedPreKey"].get("keyId"), int):
                problems.append("signedPreKey.keyId is not an integer")
    except (KeyError, TypeError, ValueError) as err:
        problems.append(f"malformed key: {err}")
    if "registrationId" in creds and not isinstance(creds["registrationId"], int):
        problems.append("registrationId is not an integer")
    if "advSecretKey" in creds and not (isinstance(creds["advSecretKey"], str)
                                        and creds["advSecretKey"]):
        problems.append("advSecretKey is empty")
    return problems


def make_auth_dir(path: Path) -> Path:
    """An auth directory as the bridge creates it: 0700, empty."""
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def send_signal_name(sig: signal.Signals) -> str:
    return "SIGKILL" if sig == signal.SIGKILL else "SIGTERM"
