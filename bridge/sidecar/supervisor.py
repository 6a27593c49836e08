"""InstanceSupervisor: one sidecar per running instance, restarted by policy, stopped in order.

Each running instance has an `InstanceRunner` whose task loops: spawn the sidecar, handle its
events, wait for it to end, then follow `policy.action_for` (start again now, after a backoff,
or stop and tell the operator). Process states use supervisord's words; the WhatsApp connection
has its own enum. Every edge goes through `InstanceRunner.transition`.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from loguru import logger
from redis.exceptions import RedisError

from bridge import metrics
from bridge.config import Settings
from bridge.errors import ProtocolError, SidecarError, SidecarUnavailable
from bridge.ids import InstanceId, normalize_jid, phone_from_jid
from bridge.relay.dispatch import Dispatcher
from bridge.relay.intake import JOURNALED, Intake
from bridge.sidecar import policy
from bridge.sidecar.lease import Holder, Lease
from bridge.sidecar.process import SidecarProcess, end_leftovers, sidecar_env
from bridge.sidecar.protocol import (
    PROTOCOL_VERSION,
    ConnectionEvent,
    FatalEvent,
    LidMappingEvent,
    LogoutCommand,
    MessageEvent,
    MessageStatusEvent,
    PairingCodeEvent,
    ProfilePictureCommand,
    QrEvent,
    ReadyEvent,
    ResultEvent,
    SendTextCommand,
    SidecarCommand,
    SidecarEvent,
)
from bridge.store.registry import Desired, InstanceRecord, Registry
from bridge.texts import Texts, texts_for

EXIT_FATAL = 78  # EX_CONFIG: the sidecar sent `fatal` and must not be restarted


class ProcessState(StrEnum):
    """The sidecar process, in supervisord's words."""

    STOPPED = "STOPPED"  # not running, and not wanted
    STARTING = "STARTING"  # spawned; waiting for `ready`
    RUNNING = "RUNNING"  # the sidecar is up; see ConnectionState for WhatsApp
    BACKOFF = "BACKOFF"  # ended unexpectedly; waiting before the next start
    STOPPING = "STOPPING"  # a stop was requested; waiting for the process to end
    EXITED = "EXITED"  # stopped by policy (logged out, replaced, QR limit); an operator must act
    FATAL = "FATAL"  # cannot run (unreadable session, protocol mismatch)


class ConnectionState(StrEnum):
    """The WhatsApp connection of a running sidecar."""

    CLOSED = "close"  # no WhatsApp socket
    CONNECTING = "connecting"  # socket opening, or logging in with a saved session
    PAIRING = "qr"  # waiting for the phone to scan a QR code
    OPEN = "open"  # logged in: messages flow


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceStatus:
    """A snapshot for /global-status."""

    instance_id: InstanceId
    process_state: ProcessState
    connection: ConnectionState
    pid: int | None
    rss_bytes: int | None
    started_at: float | None
    restarts: int
    last_error: str | None
    last_close_code: int | None
    qr_pending: bool


class InstanceRunner:
    """Owns the sidecar of one instance for as long as the instance should run."""

    def __init__(self, supervisor: InstanceSupervisor, instance_id: InstanceId) -> None:
        self.instance_id = instance_id
        self._sup = supervisor
        self.state = ProcessState.STOPPED
        self.connection = ConnectionState.CLOSED
        self.process: SidecarProcess | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.last_close_code: int | None = None
        self.current_qr: str | None = None
        self.current_pairing_code: str | None = None
        self._stop_requested = asyncio.Event()
        self._open = asyncio.Event()
        self._settled = asyncio.Event()  # open, or showing a QR / code: not stuck connecting
        # Companions (the outbox consumer) watch these: new work, or time to leave. They stop
        # by themselves; cancelling a task parked in a Redis read does not reliably land.
        self.wakeup = asyncio.Event()
        self.finishing = False
        self.logout_requested = False  # an operator asked: the 401 that follows is expected
        self.last_event_at: float | None = None  # when the sidecar last said anything
        self._crashes: deque[float] = deque()
        self._restart_now: str | None = None  # why we stopped it to start it again at once
        self.last_restart: str | None = None  # the last deliberate restart, for operators
        self._lease = Lease(supervisor.registry.redis, instance_id, supervisor.host_id,
                            supervisor.settings.baileys_lease_ms)
        self._task: asyncio.Task[None] | None = None
        self._last_close: ConnectionEvent | None = None
        self._fatal: str | None = None
        self._policy_stop: str | None = None  # why we asked the sidecar to stop (QR limit)
        # Say "linked" on the next open: after a QR, or when an operator asked for this start.
        self._announce_open = False
        self._background: set[asyncio.Task[object]] = set()
        self._log = logger.bind(instance=instance_id)
        # The registry record as last read: where notes go while Redis does not answer.
        self.record: InstanceRecord | None = None

    # --- state ----------------------------------------------------------------------------
    def transition(self, new: ProcessState) -> None:
        if new is not self.state:
            self._log.bind(old=self.state.value, new=new.value).info("Instance state changed")
            self.state = new

    def _set_connection(self, new: ConnectionState) -> None:
        self.connection = new
        if new is ConnectionState.OPEN:
            self._open.set()
        else:
            self._open.clear()
        if new in (ConnectionState.OPEN, ConnectionState.PAIRING):
            self._settled.set()
        if new is not ConnectionState.PAIRING:
            self.current_qr = None
            self.current_pairing_code = None

    def _stop_process_soon(self) -> None:
        """Ask the sidecar to stop without waiting here: event handlers run on the stdout
        reader, which is the task that must read the shutdown's answer."""
        process = self.process
        if process is not None:
            self._spawn(process.stop(self._sup.settings.baileys_stop_wait_ms / 1000))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run beside the reader (never await a command's answer inside an event handler)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _maybe_refresh_avatar(self, chat_jid: str) -> None:
        """At most once a day per chat; best effort (a Redis blink skips it until tomorrow)."""
        dispatcher = self._sup.dispatcher
        try:
            if not await dispatcher.avatar_due(self.instance_id, chat_jid):
                return
            result = await self.request(lambda cid: ProfilePictureCommand(id=cid, jid=chat_jid))
            url = (result.data or {}).get("url")
            if isinstance(url, str) and url.startswith("https://"):
                await dispatcher.avatar(self.instance_id, chat_jid, url)
        except SidecarError:
            return  # not connected now; it is looked at again tomorrow
        except RedisError as err:
            self._log.bind(error=type(err).__name__).debug("Avatar not looked at")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> InstanceStatus:
        process = self.process if self.process and self.process.returncode is None else None
        return InstanceStatus(
            instance_id=self.instance_id, process_state=self.state, connection=self.connection,
            pid=process.pid if process else None,
            rss_bytes=process.rss_bytes() if process else None,
            started_at=process.started_at if process else None, restarts=self.restarts,
            last_error=self.last_error,
            last_close_code=self.last_close_code,
            qr_pending=self.current_qr is not None)

    # --- control --------------------------------------------------------------------------
    def start(self, *, announce_open: bool = False) -> None:
        self._stop_requested.clear()
        self.finishing = False
        self._announce_open = announce_open
        self._task = asyncio.create_task(self._run(), name=f"instance-{self.instance_id}")

    async def stop(self) -> None:
        """Stop the sidecar in order (auth writes finish first) and wait for the loop to end."""
        self._stop_requested.set()
        if self.process is not None and self.process.returncode is None:
            self.transition(ProcessState.STOPPING)
            await self.process.stop(self._sup.settings.baileys_stop_wait_ms / 1000)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_open(self, timeout_s: float) -> bool:
        """True once the connection is open; False after the timeout or when finishing."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._open.is_set() and not self.finishing:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 0.1))
        return self._open.is_set() and not self.finishing

    async def request(self, make: Callable[[str], SidecarCommand]) -> ResultEvent:
        """A command for the open connection (sends, revokes, receipts)."""
        process = self.process
        if process is None or self.connection is not ConnectionState.OPEN:
            raise SidecarUnavailable()
        return await process.request(make)

    async def send_text(self, jid: str, text: str) -> ResultEvent:
        return await self.request(lambda cid: SendTextCommand(id=cid, jid=jid, text=text))

    async def logout(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            raise SidecarUnavailable()
        await process.request(lambda cid: LogoutCommand(id=cid))

    # --- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        companions = [asyncio.create_task(make(self), name=f"companion-{self.instance_id}")
                      for make in self._sup.companions]
        try:
            while not self._stop_requested.is_set():
                self._reset_run()
                holder = await self._lease.acquire()
                if holder is not None:
                    # Another `ponte serve` runs this number: two sidecars on one identity would
                    # fight (440) and corrupt its sessions. Wait; take over when its lease ends.
                    self.last_error = f"running on another host ({holder})"
                    self.transition(ProcessState.BACKOFF)
                    await self._pause(self._sup.settings.baileys_lease_ms / 1000)
                    continue
                if self._lease.taken_from is not None:
                    await self._after_take_over(self._lease.taken_from)
                if self._stop_requested.is_set():
                    break  # asked to stop while waiting for the lease
                self.transition(ProcessState.STARTING)
                started = time.monotonic()
                code = await self._spawn_and_wait()
                ran_for = time.monotonic() - started
                if self._stop_requested.is_set():
                    break
                action = await self._decide(code)
                if action is None:
                    return
                if ran_for >= self._sup.settings.baileys_start_secs:
                    failures = 0  # it ran long enough: the next failure starts a fresh backoff
                self.restarts += 1
                if action is policy.Action.BACKOFF:
                    failures += 1
                    delay = self._sup.backoff_delay(failures)
                    self.transition(ProcessState.BACKOFF)
                    self._log.bind(delay_s=round(delay, 2), attempt=failures).info(
                        "Sidecar will start again after a backoff")
                    await self._pause(delay)
            self.transition(ProcessState.STOPPED)
        except Exception as err:  # the runner must never die silently
            self._log.exception("Instance runner crashed")
            self.last_error = f"runner crashed: {type(err).__name__}"
            self.transition(ProcessState.FATAL)
        finally:
            # The runner object stays registered, so its last state and error stay visible.
            self._set_connection(ConnectionState.CLOSED)
            await self._lease.release()
            self.finishing = True
            self.wakeup.set()
            wait_s = self._sup.settings.baileys_stop_wait_ms / 1000
            _, late = await asyncio.wait(companions, timeout=wait_s) if companions else ((), ())
            for task in late:  # a last resort, bounded: never hang the runner on it
                self._log.warning("Companion task did not stop; cancelling it")
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)

    async def _after_take_over(self, dead: str) -> None:
        """The lease was held by a serve of this host that died: its sidecar may still be
        finishing; it must be gone before ours logs in with the same session."""
        session = self._sup.session_dir(self.instance_id).resolve()
        ended = await end_leftovers(self.instance_id, session,
                                    self._sup.settings.baileys_stop_wait_ms / 1000)
        self._log.bind(dead_holder=dead, leftover_sidecars=ended).info(
            "Took over the lease of a serve that died on this host")

    async def _pause(self, seconds: float) -> None:
        """Wait, unless a stop is requested first."""
        try:
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
        except TimeoutError:
            pass

    def _crash_loop(self) -> bool:
        """N crashes within M minutes: stop restarting (supervisord's FATAL)."""
        settings = self._sup.settings
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > settings.baileys_crash_loop_minutes * 60:
            self._crashes.popleft()
        return len(self._crashes) >= settings.baileys_crash_loop_count

    def _reset_run(self) -> None:
        self._restart_now = None
        self._last_close = None
        self._fatal = None
        self._policy_stop = None

    async def _spawn_and_wait(self) -> int:
        session = self._sup.session_dir(self.instance_id)
        record = self.record = await self._sup.registry.get(self.instance_id)
        pairing_phone = record.pairing_phone if record and not record.linked else None
        if pairing_phone:
            # Asking for a code writes a half-made identity (creds.me) that would log in and get
            # 401 next time: every code pairing starts from an empty session.
            shutil.rmtree(session, ignore_errors=True)
        session.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(session, 0o700)
        spool = self._sup.spool_dir(self.instance_id)
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings = self._sup.settings
        extra = {"PONTE_PAIRING_PHONE": pairing_phone} if pairing_phone else {}
        if settings.baileys_qr_timeout_ms:
            extra["PONTE_QR_TIMEOUT_MS"] = str(settings.baileys_qr_timeout_ms)
        env = sidecar_env(os.environ, {**extra,
            "PONTE_INSTANCE_ID": self.instance_id,
            "PONTE_AUTH_DIR": str(session.resolve()),
            "PONTE_WA_WEBSOCKET_URL": settings.baileys_wa_websocket_url,
            "PONTE_WA_VERSION": settings.baileys_wa_version,
            "PONTE_BROWSER_NAME": settings.baileys_browser_name,
            "PONTE_LOG_LEVEL": {"warning": "warn", "critical": "fatal"}.get(
                settings.baileys_log_level_instance, settings.baileys_log_level_instance),
            "PONTE_CONNECT_TIMEOUT_MS": str(settings.baileys_connect_timeout_ms),
            "PONTE_KEEPALIVE_MS": str(settings.baileys_keepalive_ms),
            "PONTE_MEDIA_DIR": str(spool.resolve()),
            "PONTE_MEDIA_MAX_BYTES": str(settings.baileys_media_max_bytes),
            # Dropped before decryption: no download, no frame, no work for a chat never shown.
            "PONTE_IGNORE_CHATS": ",".join(settings.baileys_ignore_chats),
        })
        try:
            self.process = await SidecarProcess.start(
                self.instance_id, settings.sidecar_argv, env=env, cwd=self._sup.project_root,
                on_event=self._on_event, on_protocol_error=self._on_protocol_error,
                command_timeout_s=settings.baileys_command_timeout_ms / 1000)
        except OSError as err:
            self.last_error = f"cannot start the sidecar: {err.strerror or err}"
            self._log.bind(error=str(err)).error("Sidecar could not be started")
            return -1
        self._log.bind(pid=self.process.pid).info("Sidecar started")
        if self._stop_requested.is_set():
            # stop() ran while this process was being spawned (it had none to stop then): a
            # logout or restart right after a start must not leave it running.
            self.transition(ProcessState.STOPPING)
            await self.process.stop(self._sup.settings.baileys_stop_wait_ms / 1000)
        self._settled.clear()
        watchdogs = [asyncio.create_task(self._watch_connecting(self.process)),
                     asyncio.create_task(self._watch_memory(self.process)),
                     asyncio.create_task(self._keep_lease(self.process))]
        try:
            code = await self.process.wait()
        finally:
            for task in watchdogs:
                task.cancel()
        self._log.bind(exit_code=code).info("Sidecar ended")
        return code

    async def _watch_connecting(self, process: SidecarProcess) -> None:
        """Baileys can hang in `connecting` for good (an HTTP error on the WebSocket upgrade,
        then a closed TCP connection: no close, no timeout). Past a few connect timeouts without
        an open connection or a QR, stop the sidecar; the loop then backs off and starts again."""
        limit = max(3.0, 3 * self._sup.settings.baileys_connect_timeout_ms / 1000)
        try:
            await asyncio.wait_for(self._settled.wait(), limit)
        except TimeoutError:
            self.last_error = f"stuck connecting for {limit:.0f}s"
            self._log.bind(seconds=limit).warning("Sidecar stuck connecting; restarting it")
            await process.stop(self._sup.settings.baileys_stop_wait_ms / 1000)

    async def _watch_memory(self, process: SidecarProcess) -> None:
        """Baileys has open leak reports: past BAILEYS_MAX_RSS_MB, restart the sidecar (same
        session, no backoff) at a quiet moment: no frame for a while, no command in flight."""
        settings = self._sup.settings
        if not settings.baileys_max_rss_mb:
            return
        limit = settings.baileys_max_rss_mb * 1024 * 1024
        while True:
            await asyncio.sleep(settings.baileys_rss_check_seconds)
            rss = process.rss_bytes() or 0
            # Quiet: nothing heard for two check intervals, and no command waiting.
            silence = 2 * settings.baileys_rss_check_seconds
            quiet = (self.last_event_at is None or time.time() - self.last_event_at > silence) \
                and not process.busy
            if rss > limit and quiet and self.connection is ConnectionState.OPEN:
                self._restart_now = f"memory: RSS {rss // 2**20} MB"
                self._log.bind(rss_mb=rss // 2**20).warning("Sidecar over its memory limit; "
                                                            "restarting it")
                await process.stop(settings.baileys_stop_wait_ms / 1000)
                return

    async def _keep_lease(self, process: SidecarProcess) -> None:
        """Renew the lease while the sidecar lives; losing it means another host took the
        number (our Redis link was down too long): stop, rather than run it twice."""
        every = self._sup.settings.baileys_lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                if await self._lease.renew():
                    continue
            except (ConnectionError, OSError, RedisError):
                continue  # Redis hiccup: the lease has two more renewals of slack
            self._log.error("Lost the instance lease; stopping the sidecar")
            await process.stop(self._sup.settings.baileys_stop_wait_ms / 1000)
            return

    async def _decide(self, code: int) -> policy.Action | None:
        """After an unrequested end: the next action, or None when the runner must end."""
        if self._fatal is not None or code == EXIT_FATAL:
            self.last_error = self._fatal or "sidecar exited with a fatal error"
            self.transition(ProcessState.FATAL)
            await self._sup.stopped_by_policy(self.instance_id, self.last_error)
            return None
        if self._policy_stop is not None:
            self.transition(ProcessState.EXITED)
            return None
        if self._restart_now is not None:
            self.last_restart = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self._restart_now}"
            return policy.Action.RECONNECT_NOW
        close = self._last_close
        if close is None:  # ended without telling why: a crash
            self.last_error = f"sidecar crashed (exit status {code})"
            self._log.bind(exit_code=code).warning("Sidecar crashed")
            if self._crash_loop():
                self.transition(ProcessState.FATAL)
                await self._sup.crash_loop(self.instance_id, self.last_error)
                return None
            return policy.Action.BACKOFF
        action = policy.action_for(close.status_code, close.reason)
        if action is policy.Action.WIPE_AND_STOP:
            self.transition(ProcessState.EXITED)
            await self._sup.logged_out(self.instance_id, requested=self.logout_requested)
            return None
        if action is policy.Action.STOP:
            self.transition(ProcessState.EXITED)
            await self._sup.stopped_by_policy(self.instance_id, self.last_error or "")
            return None
        return action

    # --- events ---------------------------------------------------------------------------
    def _on_protocol_error(self, error: ProtocolError) -> None:
        self._sup.count_protocol_error(self.instance_id)

    async def _on_event(self, event: SidecarEvent) -> None:
        self.last_event_at = time.time()
        if isinstance(event, MessageEvent | LidMappingEvent | MessageStatusEvent):
            # Durable before the next frame is read: in Redis, or in the journal while Redis
            # does not answer (Baileys acknowledged it to WhatsApp already).
            chat = await self._sup.dispatcher.event(self.instance_id, event)
            if chat is not None:
                self._spawn(self._maybe_refresh_avatar(chat))
        elif isinstance(event, ConnectionEvent):
            await self._on_connection(event)
        elif isinstance(event, QrEvent):
            await self._on_qr(event)
        elif isinstance(event, PairingCodeEvent):
            await self._on_pairing_code(event)
        elif isinstance(event, ReadyEvent):
            if event.protocol != PROTOCOL_VERSION:
                self._fatal = (f"sidecar speaks protocol {event.protocol}, this bridge "
                               f"{PROTOCOL_VERSION}")
                self._log.error("Sidecar protocol mismatch")
                self._stop_process_soon()
                return
            self.transition(ProcessState.RUNNING)
        elif isinstance(event, FatalEvent):
            self._fatal = f"{event.code}: {event.message}"
            self._log.bind(code=event.code).error("Sidecar reported a fatal error")

    async def _on_qr(self, event: QrEvent) -> None:
        record = await self._sup.registry.get(self.instance_id)
        if record is None:
            return
        attempts = await self._sup.registry.increment_qr_attempts(self.instance_id)
        limit = self._sup.settings.baileys_max_qr_send_attempts
        self._announce_open = True
        if attempts > limit:
            # Out of attempts: say so once, stop the sidecar, and wait for a new command.
            self._policy_stop = "qr_limit"
            self.last_error = f"QR limit of {limit} attempts reached"
            await self._sup.registry.update(self.instance_id, desired=Desired.STOPPED,
                                            last_error=self.last_error)
            await self._sup.notify(record, self._sup.texts.qr_limit.format(
                max_attempts=limit, inbox=record.label(),
                keyword=self._sup.settings.webhook_command_keyword))
            self._stop_process_soon()
            return
        self._set_connection(ConnectionState.PAIRING)
        self.current_qr = event.qr
        self._log.bind(attempt=attempts).info("QR code received")
        await self._sup.notify(record, self._sup.texts.qr_note.format(
            attempt=attempts, max_attempts=limit, inbox=record.label()), qr=event.qr)

    async def _on_pairing_code(self, event: PairingCodeEvent) -> None:
        record = await self._sup.registry.get(self.instance_id)
        if record is None:
            return
        self._announce_open = True
        self._set_connection(ConnectionState.PAIRING)
        self.current_pairing_code = event.code
        self._log.info("Pairing code received")
        await self._sup.notify(record, self._sup.texts.pairing_code.format(
            inbox=record.label(), code=event.code, phone=f"+{event.phone}"))

    async def _on_connection(self, event: ConnectionEvent) -> None:
        if event.state == "connecting":
            self._set_connection(ConnectionState.CONNECTING)  # also right after a scan
            return
        if event.state == "open":
            self._set_connection(ConnectionState.OPEN)
            self.last_error = None
            # A close before this open (the 515 after a scan) is history: a crash of this run
            # is a crash, with its backoff, not a restart that close asked for.
            self._last_close = None
            me = event.me
            wa_jid = normalize_jid(me.id) if me else None
            lid = normalize_jid(me.lid) if me and me.lid else None
            # "Linked" must survive a Redis outage: a number whose record missed it would not
            # come back after the next restart.
            record = await self._sup.update_record(
                self, linked=True, wa_jid=wa_jid, lid=lid, qr_attempts=0,
                pairing_phone=None, last_error=None)
            self._log.info("WhatsApp connection open")
            if self._announce_open and record is not None:
                self._announce_open = False
                number = phone_from_jid(wa_jid) if wa_jid else None
                await self._sup.notify(record, self._sup.texts.linked.format(
                    number=number or wa_jid or "?", inbox=record.label()))
            return
        # close
        self._last_close = event
        self.last_close_code = event.status_code
        if event.reason != "intentional":
            metrics.reconnect(self.instance_id, event.status_code)
        if event.will_reconnect:
            self._set_connection(ConnectionState.CONNECTING)
        else:
            self._set_connection(ConnectionState.CLOSED)
            if event.reason != "intentional":  # our own stop is not an error to show
                self.last_error = (f"{event.reason or 'closed'} ({event.status_code})"
                                   if event.status_code is not None else event.reason)
        self._log.bind(code=event.status_code, reason=event.reason,
                       will_reconnect=event.will_reconnect).info("WhatsApp connection closed")


class InstanceSupervisor:
    """All instances this `ponte serve` runs."""

    def __init__(self, settings: Settings, registry: Registry, dispatcher: Dispatcher, *,
                 project_root: Path) -> None:
        self.settings = settings
        self.registry = registry
        self.dispatcher = dispatcher
        self.project_root = project_root
        self.texts: Texts = texts_for(settings.chatwoot_language)
        self._runners: dict[InstanceId, InstanceRunner] = {}
        self._lock = asyncio.Lock()
        self._relink_lock = asyncio.Lock()
        self.protocol_errors: dict[InstanceId, int] = {}  # lines that were not frames
        self.started_at = time.time()
        self.stopping = False
        self.host_id = str(Holder.mine())  # <host>:<pid>:...: see lease.Holder
        # Tasks that live as long as an instance runs (its outbox consumer).
        self.companions: list[Callable[[InstanceRunner], Coroutine[Any, Any, None]]] = []
        self._intake: Intake | None = None

    def attach(self, intake: Intake) -> None:
        """Record updates the state machine makes are durable through `intake` from now on."""
        self._intake = intake
        intake.register("registry_update", self._apply_record_update)

    async def update_record(self, runner: InstanceRunner, **changes: Any) -> InstanceRecord | None:
        """Update the runner's registry record, durably; while Redis does not answer the change
        waits in the journal and the answer is the cached record with the change applied."""
        args = {"instance_id": runner.instance_id, "changes": changes}
        if self._intake is None:
            record: InstanceRecord | None = await self._apply_record_update(args, time.time())
        else:
            outcome = await self._intake.submit("registry_update", args)
            record = (replace(runner.record, **changes) if runner.record is not None else None
                      ) if outcome is JOURNALED else outcome
        runner.record = record or runner.record
        return record

    async def _apply_record_update(self, args: dict[str, Any], at: float
                                   ) -> InstanceRecord | None:
        return await self.registry.update(InstanceId(args["instance_id"]), **args["changes"])

    def session_dir(self, instance_id: InstanceId) -> Path:
        return self.settings.sessions_dir / instance_id

    def spool_dir(self, instance_id: InstanceId) -> Path:
        return self.settings.spool_dir / instance_id

    def backoff_delay(self, failures: int) -> float:
        base = self.settings.baileys_reconnect_delay_ms / 1000
        cap = self.settings.baileys_reconnect_max_delay_ms / 1000
        delay = min(base * 2 ** (failures - 1), cap)
        return float(delay * random.uniform(0.5, 1.0))  # "equal jitter": no synchronized storms

    def runner(self, instance_id: InstanceId) -> InstanceRunner | None:
        return self._runners.get(instance_id)

    def runners(self) -> list[InstanceRunner]:
        return list(self._runners.values())

    def count_protocol_error(self, instance_id: InstanceId) -> None:
        self.protocol_errors[instance_id] = self.protocol_errors.get(instance_id, 0) + 1

    async def resume(self) -> None:
        """At start-up: bring back what was linked and wanted running; nothing else."""
        self.settings.sessions_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for record in await self.registry.all():
            if record.desired is not Desired.RUNNING:
                continue
            if record.linked:
                await self.start(record.instance_id)
            else:
                # Pairing was under way when we stopped: do not post QRs into that conversation
                # again unasked; the operator re-runs the command.
                await self.registry.update(record.instance_id, desired=Desired.STOPPED,
                                           last_error="pairing interrupted by a restart")
                logger.bind(instance=record.instance_id).info(
                    "Unfinished pairing not resumed after restart")

    async def start(self, instance_id: InstanceId, *, announce_open: bool = False
                    ) -> InstanceRunner:
        async with self._lock:  # one runner, hence one sidecar, per instance
            runner = self._runners.get(instance_id)
            if runner is not None and runner.alive:
                return runner
            if self.stopping:
                # A command that raced the shutdown: a sidecar started now would outlive serve.
                raise SidecarUnavailable("Ponte is shutting down")
            runner = InstanceRunner(self, instance_id)
            self._runners[instance_id] = runner
            runner.start(announce_open=announce_open)
            return runner

    async def stop(self, instance_id: InstanceId) -> None:
        runner = self._runners.get(instance_id)
        if runner is not None:
            await runner.stop()

    async def relink(self, instance_id: InstanceId) -> InstanceRunner:
        """An operator asked to link: stop what runs (a saved session is kept) and start again,
        announcing the open in the operator's conversation."""
        async with self._relink_lock:  # two commands at once must not interleave stop/start
            await self.stop(instance_id)
            return await self.start(instance_id, announce_open=True)

    async def shutdown(self) -> None:
        """SIGTERM: stop every sidecar in parallel, each after its pending auth writes."""
        self.stopping = True
        async with self._lock:  # a start under way finishes first, so its runner is stopped too
            runners = [r for r in self._runners.values() if r.alive]
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    def statuses(self) -> dict[InstanceId, InstanceStatus]:
        return {iid: r.status() for iid, r in self._runners.items()}

    # --- telling the operator ---------------------------------------------------------------
    async def notify(self, record: InstanceRecord, content: str, *, qr: str | None = None) -> None:
        if record.notify_account_id is None or record.notify_conversation_id is None:
            logger.bind(instance=record.instance_id).warning(
                "No conversation to notify; note dropped")
            return
        await self.dispatcher.note(record.notify_account_id, record.notify_conversation_id,
                                   content, qr=qr)

    async def logged_out(self, instance_id: InstanceId, *, requested: bool = False) -> None:
        """401: the phone unlinked us (or an operator logged out). The session is void: wipe it,
        and tell the operator unless they asked for it (then they get their own answer)."""
        shutil.rmtree(self.session_dir(instance_id), ignore_errors=True)
        before = await self.registry.get(instance_id)
        record = await self.registry.update(
            instance_id, linked=False, desired=Desired.STOPPED, wa_jid=None, lid=None,
            last_error="logged out from the phone")
        logger.bind(instance=instance_id, requested=requested).warning("Logged out; session wiped")
        if record is not None and not requested:
            number = phone_from_jid(before.wa_jid) if before and before.wa_jid else None
            await self.notify(record, self.texts.logged_out.format(
                number=number or record.label(),
                keyword=self.settings.webhook_command_keyword))

    async def crash_loop(self, instance_id: InstanceId, reason: str) -> None:
        settings = self.settings
        record = await self.registry.update(instance_id, desired=Desired.STOPPED,
                                            last_error=f"crash loop: {reason}")
        logger.bind(instance=instance_id).error("Sidecar crash loop; instance stopped")
        if record is not None:
            await self.notify(record, self.texts.crash_loop.format(
                inbox=record.label(), count=settings.baileys_crash_loop_count,
                minutes=f"{settings.baileys_crash_loop_minutes:g}", reason=reason,
                keyword=settings.webhook_command_keyword))

    async def stopped_by_policy(self, instance_id: InstanceId, reason: str) -> None:
        record = await self.registry.update(instance_id, desired=Desired.STOPPED,
                                            last_error=reason or None)
        if record is not None:
            await self.notify(record, self.texts.instance_stopped.format(
                inbox=record.label(), reason=reason or "?",
                keyword=self.settings.webhook_command_keyword))

    async def send_text(self, instance_id: InstanceId, jid: str, text: str) -> ResultEvent:
        runner = self._runners.get(instance_id)
        if runner is None or not runner.alive:
            raise SidecarUnavailable("instance is not running")
        return await runner.send_text(jid, text)
