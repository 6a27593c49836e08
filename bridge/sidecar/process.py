"""One sidecar child process: spawn it, read its frames, write commands, end it.

stdout is decoded frame by frame (`protocol.decode_event`); a bad line is logged, counted and
skipped, never fatal. stderr carries the sidecar's pino logs, which are re-logged at debug (their
`msg` at warning/error for pino levels >= 40). Commands get an id and a future; the matching
`result` resolves it, or the timeout fails it. The child gets an allow-listed environment only:
no Chatwoot token or webhook secret ever reaches Node.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import psutil
from loguru import logger

from bridge.errors import ProtocolError, SidecarError, SidecarUnavailable
from bridge.ids import InstanceId
from bridge.sidecar.protocol import (
    ResultEvent,
    ShutdownCommand,
    SidecarCommand,
    SidecarEvent,
    UnknownEventType,
    decode_event,
    encode_command,
)

EventHandler = Callable[[SidecarEvent], Awaitable[None]]
ErrorHandler = Callable[[ProtocolError], None]

# A Baileys message with a link preview thumbnail easily passes asyncio's 64 KiB default.
_LINE_LIMIT = 16 * 1024 * 1024
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS",
               "SYSTEMROOT")
_PINO_LEVELS = {10: "TRACE", 20: "DEBUG", 30: "DEBUG", 40: "WARNING", 50: "ERROR", 60: "ERROR"}
_command_ids = itertools.count(1)


def _printable(text: str) -> str:
    """`text` without lone surrogates (the JSON escape `\\ud800` decodes into one), which a
    log sink cannot encode."""
    return text.encode("utf-8", "replace").decode("utf-8")


def sidecar_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k in _PASSED_ENV}
    env.update(extra)
    return env


def leftovers(instance_id: InstanceId, auth_dir: Path) -> list[psutil.Process]:
    """Sidecars of this instance on this host that no serve owns any more: a serve that died
    (kill -9) leaves its children running until they notice their stdin closed."""
    found = []
    for process in psutil.process_iter(["environ"]):
        env = process.info.get("environ") or {}  # None: another user's, or already a zombie
        if (env.get("PONTE_INSTANCE_ID") == instance_id
                and env.get("PONTE_AUTH_DIR") == str(auth_dir) and process.pid != os.getpid()):
            found.append(process)
    return found


async def end_leftovers(instance_id: InstanceId, auth_dir: Path, wait_s: float) -> int:
    """Stop the leftovers before a new sidecar logs in with the same session (WhatsApp would
    replace one with the other, and both would write the session): SIGTERM, which is the
    sidecar's orderly stop, then SIGKILL after `wait_s`. The number found."""

    def end() -> int:
        found = leftovers(instance_id, auth_dir)
        for process in found:
            try:
                process.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(found, timeout=wait_s)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=wait_s)
        return len(found)

    return await asyncio.to_thread(end)


class SidecarProcess:
    """A running (or finished) sidecar. Create with `start()`."""

    def __init__(self, instance_id: InstanceId, proc: asyncio.subprocess.Process, *,
                 on_event: EventHandler, on_protocol_error: ErrorHandler,
                 command_timeout_s: float) -> None:
        self.instance_id = instance_id
        self._proc = proc
        self._on_event = on_event
        self._on_protocol_error = on_protocol_error
        self._command_timeout_s = command_timeout_s
        self._pending: dict[str, asyncio.Future[ResultEvent]] = {}
        self._write_lock = asyncio.Lock()
        self._log = logger.bind(instance=instance_id, pid=proc.pid)
        self.started_at = time.time()
        self._readers = [
            asyncio.create_task(self._read_stdout(), name=f"sidecar-stdout-{instance_id}"),
            asyncio.create_task(self._read_stderr(), name=f"sidecar-stderr-{instance_id}"),
        ]

    @classmethod
    async def start(cls, instance_id: InstanceId, argv: list[str], *, env: dict[str, str],
                    cwd: Path, on_event: EventHandler, on_protocol_error: ErrorHandler,
                    command_timeout_s: float) -> SidecarProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, limit=_LINE_LIMIT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C on `ponte serve` must not reach the sidecars directly;
            # the supervisor stops them in order, after their auth writes.
            start_new_session=True,
        )
        return cls(instance_id, proc, on_event=on_event, on_protocol_error=on_protocol_error,
                   command_timeout_s=command_timeout_s)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def busy(self) -> bool:
        """A command is waiting for its answer."""
        return bool(self._pending)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def rss_bytes(self) -> int | None:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, ProcessLookupError):
            return None

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        while True:
            try:
                line = await self._proc.stdout.readline()
            except ValueError:  # a line over _LINE_LIMIT: asyncio drops it and goes on
                self._on_protocol_error(ProtocolError("line longer than 16 MiB"))
                continue
            if not line:
                break
            if not line.strip():
                continue
            try:
                event = decode_event(line)
            except UnknownEventType as err:
                self._log.bind(error=str(err)).warning("Sidecar sent an unknown event type")
                self._on_protocol_error(err)
                continue
            except ProtocolError as err:
                self._log.bind(error=str(err)).warning("Sidecar sent a line that is not a frame")
                self._on_protocol_error(err)
                continue
            except Exception as err:  # a decoder bug must not end the reader: it is the only
                # one, so the pipe would fill, the sidecar block, and every command time out
                self._log.exception("Decoding a sidecar line failed")
                self._on_protocol_error(ProtocolError(f"undecodable line: {type(err).__name__}"))
                continue
            if isinstance(event, ResultEvent):
                self._resolve(event)
                continue
            try:
                await self._on_event(event)
            except Exception:  # one bad event must not stop the reader
                self._log.exception("Handling a sidecar event failed")
        self._fail_pending(SidecarUnavailable("sidecar exited"))

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        while True:
            try:
                line = await self._proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            self._relog(line[:4000].decode("utf-8", "replace").rstrip())

    def _relog(self, text: str) -> None:
        # Whatever the line holds, this must not raise: the stderr reader would end, the pipe
        # fill up, and the sidecar block on its next log line.
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            self._log.debug("sidecar: {}", text)
            return
        number, msg = record.get("level", 30), record.get("msg")
        level = _PINO_LEVELS.get(number, "DEBUG") if type(number) is int else "DEBUG"
        # Not str() of anything else: a 900-deep list would raise RecursionError right here.
        msg = _printable(msg[:500]) if isinstance(msg, str) else ""
        if level == "DEBUG" or level == "TRACE":
            self._log.debug("sidecar: {}", text)
        else:
            # Only the sentence: pino objects may hold message keys or payload fragments.
            self._log.log(level, "sidecar: {}", msg)

    def _resolve(self, result: ResultEvent) -> None:
        future = self._pending.pop(result.id, None)
        if future is None:
            self._log.bind(command_id=result.id).warning("Result for an unknown command id")
        elif not future.done():
            future.set_result(result)

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def request(self, make: Callable[[str], SidecarCommand],
                      timeout_s: float | None = None) -> ResultEvent:
        """Send the command `make(id)` and wait for its result; SidecarError when not ok."""
        if self.returncode is not None:
            raise SidecarUnavailable("sidecar is not running")
        command_id = f"c{next(_command_ids)}"
        command = make(command_id)
        future: asyncio.Future[ResultEvent] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            await self._write(encode_command(command))
            result = await asyncio.wait_for(future, timeout_s or self._command_timeout_s)
        except TimeoutError as err:
            raise SidecarError("timeout", f"no answer to {command.type} in time") from err
        finally:
            self._pending.pop(command_id, None)
        if not result.ok:
            error = result.error
            raise SidecarError(error.code if error else "internal",
                               error.message if error else "failed without an error")
        return result

    async def _write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        async with self._write_lock:
            try:
                self._proc.stdin.write(data)
                await self._proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as err:
                raise SidecarUnavailable("sidecar stdin is closed") from err

    async def wait(self) -> int:
        """Wait for the process to end and its output to be read; returns its exit status."""
        code = await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self, wait_s: float) -> int:
        """Ask for an orderly shutdown; SIGTERM, then SIGKILL, if it does not come in time."""
        if self.returncode is None:
            try:
                await self.request(lambda cid: ShutdownCommand(id=cid), timeout_s=wait_s)
            except SidecarError:
                pass  # it may be gone already, or too busy to answer: escalate below
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                return await asyncio.wait_for(asyncio.shield(self.wait()), wait_s)
            except TimeoutError:
                self._log.bind(signal=sig.name).warning("Sidecar did not stop in time")
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
        return await self.wait()
