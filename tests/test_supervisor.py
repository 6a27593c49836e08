"""InstanceSupervisor against the scripted sidecar (real processes) and a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.relay.dispatch import Dispatcher
from bridge.sidecar.supervisor import ConnectionState, InstanceSupervisor, ProcessState
from bridge.store import keys
from bridge.store.registry import Desired, InstanceRecord, Registry
from tests.conftest import ROOT, SettingsFactory, scripted_sidecar_command

INSTANCE = InstanceId("1-7")


class Harness:
    def __init__(self, supervisor: InstanceSupervisor, registry: Registry, control: Path,
                 sync: redis.Redis) -> None:
        self.supervisor = supervisor
        self.registry = registry
        self.control = control
        self.sync = sync

    async def until(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    def notes(self) -> list[dict[str, Any]]:
        raw = self.sync.lrange(keys.note_mailbox(1, 42), 0, -1)
        return [json.loads(r)["payload"] for r in raw]

    def runs(self) -> int:
        counter = self.control / f"{INSTANCE}.runs"
        return int(counter.read_text()) if counter.exists() else 0

    def commands(self) -> list[dict[str, Any]]:
        record = self.control / f"{INSTANCE}.commands.jsonl"
        if not record.exists():
            return []
        return [json.loads(line) for line in record.read_text().splitlines()]

    def state(self) -> ProcessState:
        runner = self.supervisor.runner(INSTANCE)
        return runner.state if runner else ProcessState.STOPPED


@pytest.fixture
async def harness_for(make_settings: SettingsFactory, redis_url: str,
                      tmp_path: Path) -> AsyncIterator[Any]:
    created: list[tuple[InstanceSupervisor, aioredis.Redis, redis.Redis]] = []

    async def make(*scripts: str, linked: bool = True, **overrides: Any) -> Harness:
        control = tmp_path / "control"
        settings = make_settings(
            baileys_sidecar_command=scripted_sidecar_command(control, *scripts), **overrides)
        ra, rs = aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
        registry = Registry(ra)
        await registry.put(InstanceRecord.new(
            1, 7, inbox_name="Loja", desired=Desired.RUNNING, linked=linked,
            notify_account_id=1, notify_conversation_id=42))
        supervisor = InstanceSupervisor(settings, registry, Dispatcher(ra, rs),
                                        project_root=ROOT)
        created.append((supervisor, ra, rs))
        return Harness(supervisor, registry, control, rs)

    yield make
    for supervisor, ra, rs in created:
        await supervisor.shutdown()
        await ra.aclose()
        rs.close()


async def test_linked_session_opens_and_records_the_number(harness_for: Any) -> None:
    h = await harness_for("linked")
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    assert runner.state is ProcessState.RUNNING
    record = await h.registry.get(INSTANCE)
    assert record is not None and record.linked
    assert record.wa_jid == "5511999990000@s.whatsapp.net"  # device suffix stripped
    assert record.lid == "111222333444555@lid"
    status = runner.status()
    assert status.pid is not None and status.rss_bytes and status.rss_bytes > 0


async def test_crashing_sidecar_restarts_with_growing_backoff_not_hot(harness_for: Any) -> None:
    h = await harness_for("crash", baileys_reconnect_delay_ms=100,
                          baileys_reconnect_max_delay_ms=1000)
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.runs() >= 5, timeout=15, what="five starts")
    starts = [float(t) for t in (h.control / f"{INSTANCE}.starts").read_text().split()]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # Equal jitter keeps each delay within [d/2, d] of a doubling d: never shrinking, never hot.
    assert all(later >= earlier * 0.9 for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] >= 0.2
    runner = h.supervisor.runner(INSTANCE)
    assert runner is not None and runner.restarts >= 4
    assert runner.last_error and "crashed" in runner.last_error


async def test_closed_network_backs_off_and_keeps_trying(harness_for: Any) -> None:
    h = await harness_for("network_down", baileys_reconnect_delay_ms=100)
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.runs() >= 3, timeout=10, what="three connection attempts")
    await asyncio.sleep(0.3)
    assert h.runs() < 10
    runner = h.supervisor.runner(INSTANCE)
    assert runner is not None and runner.alive
    assert runner.status().last_close_code == 408
    assert h.notes() == []  # transient losses are not worth a note each


async def test_garbled_lines_are_counted_and_the_instance_keeps_working(
        harness_for: Any) -> None:
    h = await harness_for("garbage")
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    mailbox = "ponte:mailbox:wa:1-7:5511988887777@s.whatsapp.net"
    # The message, then (once a day) the chat's avatar behind it.
    await h.until(lambda: any(json.loads(item)["kind"] == "wa_message"
                              for item in h.sync.lrange(mailbox, 0, -1)), what="message queued")
    assert h.supervisor.protocol_errors[INSTANCE] == 3


async def test_logged_out_wipes_the_session_and_stops(harness_for: Any) -> None:
    h = await harness_for("logged_out")
    session = h.supervisor.session_dir(INSTANCE)
    session.mkdir(parents=True)
    (session / "creds.json").write_text("{}")
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.EXITED, what="exited")
    await h.until(lambda: bool(h.notes()), what="the operator told")  # after the wipe
    assert not session.exists()
    record = await h.registry.get(INSTANCE)
    assert record is not None
    assert (record.linked, record.desired, record.wa_jid) == (False, Desired.STOPPED, None)
    assert "5511999990000" in h.notes()[-1]["content"]  # the note names the lost number
    await asyncio.sleep(0.5)
    assert h.runs() == 1


async def test_replaced_session_stops_keeps_the_session_and_tells(harness_for: Any) -> None:
    h = await harness_for("replaced")
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.EXITED, what="exited")
    # The decision (and its note) follows the exit.
    await h.until(lambda: bool(h.notes()), what="the operator told")
    assert (h.supervisor.session_dir(INSTANCE)).exists()
    record = await h.registry.get(INSTANCE)
    assert record is not None and record.linked and record.desired is Desired.STOPPED
    assert "connectionReplaced" in h.notes()[-1]["content"]
    await asyncio.sleep(0.5)
    assert h.runs() == 1


async def test_fatal_sidecar_is_not_restarted(harness_for: Any) -> None:
    h = await harness_for("fatal")
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.FATAL, what="fatal")
    runner = h.supervisor.runner(INSTANCE)
    assert runner is not None and runner.last_error
    assert runner.last_error.startswith("auth_unreadable")
    await asyncio.sleep(0.5)
    assert h.runs() == 1


async def test_unknown_protocol_major_stops_the_instance(harness_for: Any) -> None:
    h = await harness_for("future_protocol")
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.FATAL, what="fatal")
    runner = h.supervisor.runner(INSTANCE)
    assert runner is not None and "protocol 2" in (runner.last_error or "")
    assert h.runs() == 1


async def test_qr_codes_are_posted_up_to_the_limit_then_one_limit_note(
        harness_for: Any) -> None:
    h = await harness_for("qr_many", linked=False, baileys_max_qr_send_attempts=2)
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.EXITED, what="exited after the limit")
    notes = h.notes()
    assert [n.get("qr") for n in notes] == ["2@QR-1,n=,i=,a=,Mac OS",
                                           "2@QR-2,n=,i=,a=,Mac OS", None]
    assert "1/2" in notes[0]["content"] and "2/2" in notes[1]["content"]
    assert "Limite de 2" in notes[2]["content"]
    assert any(c["type"] == "shutdown" for c in h.commands())
    record = await h.registry.get(INSTANCE)
    assert record is not None and record.desired is Desired.STOPPED


async def test_pairing_posts_the_qr_then_announces_the_link(harness_for: Any) -> None:
    h = await harness_for("pairing", linked=False)
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.connection is ConnectionState.PAIRING, what="pairing")
    assert runner.current_qr == "2@QR-ONE,noise=,identity=,adv=,Mac OS"
    (h.control / f"{INSTANCE}.scanned").touch()
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    assert runner.current_qr is None
    await h.until(lambda: len(h.notes()) == 2, what="the linked note")
    notes = h.notes()
    assert notes[0]["qr"].startswith("2@QR-ONE")
    assert "5511999990000" in notes[-1]["content"] and "qr" not in notes[-1]


async def test_resume_brings_back_only_linked_instances_that_should_run(
        harness_for: Any) -> None:
    h = await harness_for("linked")
    await h.registry.put(InstanceRecord.new(1, 8, desired=Desired.RUNNING, linked=False))
    await h.registry.put(InstanceRecord.new(1, 9, desired=Desired.STOPPED, linked=True))
    await h.supervisor.resume()
    runner = h.supervisor.runner(INSTANCE)
    assert runner is not None
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    assert h.supervisor.runner(InstanceId("1-8")) is None
    assert h.supervisor.runner(InstanceId("1-9")) is None
    unfinished = await h.registry.get(InstanceId("1-8"))
    assert unfinished is not None and unfinished.desired is Desired.STOPPED


async def test_shutdown_asks_the_sidecar_to_stop_in_order(harness_for: Any) -> None:
    h = await harness_for("linked")
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    process = runner.process
    await h.supervisor.shutdown()
    assert process is not None and process.returncode == 0
    assert [c["type"] for c in h.commands()] == ["shutdown"]
    assert runner.state is ProcessState.STOPPED


async def test_send_text_reaches_the_sidecar_and_returns_its_message_id(
        harness_for: Any) -> None:
    h = await harness_for("linked")
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open")
    result = await h.supervisor.send_text(INSTANCE, "5511988887777@s.whatsapp.net", "Olá!")
    assert result.ok and result.data and result.data["message_id"].startswith("3EB0")
    assert h.commands()[-1] == {"type": "send_text", "id": h.commands()[-1]["id"],
                                "jid": "5511988887777@s.whatsapp.net", "text": "Olá!"}


async def test_echoes_of_our_own_sends_never_reach_a_mailbox(harness_for: Any,
                                                             tmp_path: Path) -> None:
    from tests.conftest import write_script

    key = {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": True, "id": "3EB0ECHO"}
    script = write_script(tmp_path / "echo.jsonl", [
        *[{"emit": f} for f in (
            {"type": "ready", "protocol": 1, "sidecar": "s", "baileys": "7", "pid": "$pid"},
            {"type": "connection", "state": "open", "me": {"id": "5511999990000@s.whatsapp.net"}},
            {"type": "message", "upsert": "append", "key": key, "content_type": "conversation",
             "echo": True, "message": {"key": key, "message": {"conversation": "enviada"}}},
            {"type": "message", "upsert": "notify",
             "key": {**key, "remoteJid": "status@broadcast", "id": "S1", "fromMe": False},
             "content_type": "conversation", "echo": False,
             "message": {"key": {**key, "remoteJid": "status@broadcast", "id": "S1",
                                 "fromMe": False}, "message": {"conversation": "status"}}},
        )],
        {"emit": {"type": "qr", "qr": "2@marker"}},
    ])
    h = await harness_for(str(script), linked=False)
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: runner.current_qr == "2@marker", what="the script's last frame")
    assert h.sync.keys("ponte:mailbox:wa:*") == []


# --- issue 6: lifecycle guards ------------------------------------------------------------
async def test_a_crash_loop_goes_fatal_and_tells_the_operator(harness_for: Any) -> None:
    h = await harness_for("crash", baileys_reconnect_delay_ms=100,
                          baileys_crash_loop_count=3, baileys_crash_loop_minutes=1)
    await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.state() is ProcessState.FATAL, timeout=15, what="fatal")
    await h.until(lambda: h.notes(), what="the note")
    assert h.runs() == 3
    assert "3 vezes em 1 minutos" in h.notes()[-1]["content"]
    record = await h.registry.get(INSTANCE)
    assert record is not None and record.desired is Desired.STOPPED
    await asyncio.sleep(0.5)
    assert h.runs() == 3  # stays down


async def test_a_sidecar_over_its_memory_limit_is_restarted_with_its_session(
        harness_for: Any) -> None:
    h = await harness_for("linked", baileys_max_rss_mb=1, baileys_rss_check_seconds=0.3)
    runner = await h.supervisor.start(INSTANCE)
    await h.until(lambda: h.runs() >= 2, timeout=15, what="a restart")
    await h.until(lambda: runner.connection is ConnectionState.OPEN, what="open again")
    assert "memory: RSS" in (runner.last_restart or "")
    assert [c["type"] for c in h.commands()][:1] == ["shutdown"]  # an orderly stop
    record = await h.registry.get(INSTANCE)
    assert record is not None and record.linked and record.desired is Desired.RUNNING


async def test_one_identity_never_runs_in_two_serves(harness_for: Any,
                                                   make_settings: SettingsFactory,
                                                   redis_url: str, tmp_path: Path) -> None:
    h = await harness_for("linked", baileys_lease_ms=3000)
    first = await h.supervisor.start(INSTANCE)
    await h.until(lambda: first.connection is ConnectionState.OPEN, what="open")
    # A second `ponte serve` on the same Redis tries to run the same number.
    command = scripted_sidecar_command(h.control, "linked")
    settings = make_settings(baileys_lease_ms=3000, baileys_sidecar_command=command)
    ra, rs = aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    other = InstanceSupervisor(settings, Registry(ra), Dispatcher(ra, rs), project_root=ROOT)
    try:
        second = await other.start(INSTANCE)
        await h.until(lambda: (second.last_error or "").startswith("running on another host"),
                      what="the second serve to wait")
        assert h.runs() == 1 and second.state is ProcessState.BACKOFF
        # The first host goes away: the number moves once its lease is released.
        await h.supervisor.shutdown()
        await h.until(lambda: second.connection is ConnectionState.OPEN, timeout=15,
                      what="the second serve to take over")
        assert h.runs() == 2
    finally:
        await other.shutdown()
        await ra.aclose()
        rs.close()
