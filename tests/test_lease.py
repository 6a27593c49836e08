"""The instance lease (bridge/sidecar/lease.py) against the test Redis: a serve restarted on the
same host takes over at once from its dead predecessor, and waits for anyone else."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.sidecar.lease import Holder, Lease, holder_is_dead
from bridge.sidecar.process import end_leftovers, leftovers
from bridge.store import keys
from tests.conftest import ROOT, SettingsFactory, settings_env, wait_for
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.whatsapp import WhatsAppSimulator
from tests.processes import PonteProcess

INSTANCE = InstanceId("1-7")
TTL_MS = 30_000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


def lease(client: aioredis.Redis, holder: Holder | str) -> Lease:
    return Lease(client, INSTANCE, str(holder), TTL_MS)


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that ran and was reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def spawn(running: list[subprocess.Popen[bytes]], *argv: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE)
    running.append(process)
    return process


def started(pid: int) -> str:
    """The start of a process as the lease records it (clock ticks since boot)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def another(holder: Holder, **changes: Any) -> Holder:
    return dataclasses.replace(holder, nonce="0ther0ne", **changes)


async def held_by(client: aioredis.Redis) -> str:
    value = await client.get(keys.lease(INSTANCE))
    assert isinstance(value, bytes)
    return value.decode()


def test_the_holder_names_host_and_pid() -> None:
    mine = Holder.mine()
    text = str(mine)
    host, pid, *_ = text.split(":")
    assert (host, int(pid)) == (mine.host, os.getpid())
    assert Holder.parse(text) == mine
    assert Holder.mine() != mine  # one per supervisor, even in one process
    assert Holder.parse("oldhost:123:abcd1234") is None  # the old three-part form


async def test_a_dead_serve_of_this_host_is_taken_over_at_once(
        client: aioredis.Redis, dead_pid: int) -> None:
    dead = another(Holder.mine(), pid=dead_pid)
    assert await lease(client, dead).acquire() is None
    mine = Holder.mine()
    ours = lease(client, mine)
    assert await ours.acquire() is None
    assert ours.taken_from == str(dead)
    assert await held_by(client) == str(mine)
    assert 0 < await client.pttl(keys.lease(INSTANCE)) <= TTL_MS


async def test_a_running_holder_is_waited_for(
        client: aioredis.Redis, running: list[subprocess.Popen[bytes]]) -> None:
    process = spawn(running, "sleep", "60")
    alive = another(Holder.mine(), pid=process.pid, start=started(process.pid))
    await lease(client, alive).acquire()
    ours = lease(client, Holder.mine())
    assert await ours.acquire() == str(alive)
    assert ours.taken_from is None and await held_by(client) == str(alive)


async def test_a_reused_pid_counts_as_dead(
        client: aioredis.Redis, running: list[subprocess.Popen[bytes]]) -> None:
    # The holder's pid now belongs to a process that started at another time.
    other_program = spawn(running, "sleep", "60")
    dead = another(Holder.mine(), pid=other_program.pid, start="1")
    await lease(client, dead).acquire()
    assert await lease(client, Holder.mine()).acquire() is None


async def test_a_zombie_holder_counts_as_dead(
        client: aioredis.Redis, running: list[subprocess.Popen[bytes]]) -> None:
    ended = spawn(running, "true")  # never waited for: a zombie until the fixture reaps it
    wait_for(lambda: _state(ended.pid) == "Z", message="a zombie")
    dead = another(Holder.mine(), pid=ended.pid, start=started(ended.pid))
    await lease(client, dead).acquire()
    assert await lease(client, Holder.mine()).acquire() is None


async def test_another_host_or_process_table_is_waited_for_even_with_a_dead_pid(
        client: aioredis.Redis, dead_pid: int) -> None:
    for elsewhere in (another(Holder.mine(), pid=dead_pid, host="other-host"),
                      another(Holder.mine(), pid=dead_pid, table="0123456789ab.4026531999")):
        await client.delete(keys.lease(INSTANCE))
        await lease(client, elsewhere).acquire()
        assert await lease(client, Holder.mine()).acquire() == str(elsewhere)
    # The older three-part holder cannot be checked: its lease runs out.
    await client.set(keys.lease(INSTANCE), f"{Holder.mine().host}:{dead_pid}:abcd1234")
    assert await lease(client, Holder.mine()).acquire() is not None


async def test_our_pid_is_dead_only_when_it_was_an_earlier_run(client: aioredis.Redis) -> None:
    sibling = Holder.mine()  # another supervisor of this very process
    await lease(client, sibling).acquire()
    assert await lease(client, Holder.mine()).acquire() == str(sibling)
    assert not holder_is_dead(sibling)
    # The same pid, written by an earlier process that had it (pids are reused).
    earlier = another(sibling, start=str(int(sibling.start) - 1))
    assert holder_is_dead(earlier)
    await client.set(keys.lease(INSTANCE), str(earlier))
    assert await lease(client, Holder.mine()).acquire() is None


async def test_two_restarted_serves_cannot_both_take_over(
        redis_url: str, client: aioredis.Redis, dead_pid: int) -> None:
    dead = another(Holder.mine(), pid=dead_pid)
    await lease(client, dead).acquire()
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(8)]
    try:
        contenders = [lease(c, Holder.mine()) for c in clients]
        results = await asyncio.gather(*(c.acquire() for c in contenders))
    finally:
        for c in clients:
            await c.aclose()
    winners = [c for c, result in zip(contenders, results, strict=True) if result is None]
    assert len(winners) == 1
    assert await held_by(client) == winners[0]._holder
    # Every loser sees the winner, a live holder of this process, and waits for it.
    assert {r for r in results if r is not None} == {winners[0]._holder}


async def test_leftover_sidecars_of_the_instance_are_ended(
        tmp_path: Path, running: list[subprocess.Popen[bytes]]) -> None:
    auth = tmp_path / "sessions" / INSTANCE
    env = {"PATH": os.environ["PATH"], "PONTE_INSTANCE_ID": INSTANCE,
           "PONTE_AUTH_DIR": str(auth)}
    # One that ends on SIGTERM, as the sidecar does, and one that ignores it.
    polite = spawn(running, "sleep", "60", env=env)
    stubborn = spawn(running, sys.executable, "-c",
                     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                     "print('ready', flush=True); time.sleep(60)", env=env)
    stranger = spawn(running, "sleep", "60", env={**env, "PONTE_INSTANCE_ID": "1-8"})
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    wait_for(lambda: len(leftovers(INSTANCE, auth)) == 2, message="both leftovers visible")
    assert await end_leftovers(INSTANCE, auth, wait_s=1.0) == 2
    # Both gone (psutil reaped them, so their exit statuses are not ours to read); the one
    # that ignores SIGTERM could only have ended by SIGKILL.
    assert not _alive(polite.pid) and not _alive(stubborn.pid)
    assert stranger.poll() is None
    assert leftovers(INSTANCE, auth) == []


# --- end to end: kill -9 of serve, restart on the same host --------------------------------
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@whiskeysockets").exists(),
    reason="needs node and `npm ci` (make test does both)")


@needs_node
def test_serve_killed_and_restarted_is_open_again_well_within_the_lease(
        fake_chatwoot: FakeChatwoot, whatsapp: WhatsAppSimulator,
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=whatsapp.sidecar_command,
                   baileys_wa_websocket_url=whatsapp.websocket_url) as desk:
        assert desk.settings.baileys_lease_ms == 30_000  # the default
        link(desk, whatsapp)
        old_sidecar = desk.status()["pid"]
        desk.serve.proc.send_signal(signal.SIGKILL)
        desk.serve.proc.wait()
        restarted = time.monotonic()
        desk.serve.stop()
        desk.serve = PonteProcess("serve", settings_env(desk.settings), tmp_path / "serve2.log")
        desk.serve.wait_http(f"{desk.base}/healthz")
        wait_for(lambda: desk.status().get("status") == "open", timeout=25,
                 message="open again")
        took = time.monotonic() - restarted
        print(f"kill -9 of serve, restart -> open: {took:.2f}s")
        assert took < 15, took  # it waited out the dead serve's 30 s lease before
        assert "Took over the lease" in desk.serve.output()
        assert desk.status()["pid"] != old_sidecar
        assert not _alive(old_sidecar)
        wait_for(lambda: len(whatsapp.open_connections()) == 1, timeout=10,
                 message="exactly one connection")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def link(desk: Desk, whatsapp: WhatsAppSimulator) -> None:
    desk.command("erga")
    note = wait_for(lambda: next((n for n in desk.notes() if n.get("attachments")), None),
                    timeout=30, message="QR note")
    whatsapp.scan_qr(desk.qr_from_note(note))
    wait_for(lambda: desk.status().get("status") == "open", timeout=30, message="open")
