"""The real Node sidecar (real Baileys) under the supervisor, pointed at a closed local port."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import redis
import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.relay.dispatch import Dispatcher
from bridge.sidecar.supervisor import InstanceSupervisor, ProcessState
from bridge.store.registry import Desired, InstanceRecord, Registry
from tests.conftest import ROOT, SettingsFactory, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@whiskeysockets").exists(),
    reason="needs node and `npm ci` (make test does both)")


async def test_closed_port_reports_408_and_the_supervisor_backs_off(
        make_settings: SettingsFactory, redis_url: str) -> None:
    closed = free_port()  # nothing listens there
    settings = make_settings(baileys_wa_websocket_url=f"ws://127.0.0.1:{closed}",
                             baileys_reconnect_delay_ms=500, baileys_reconnect_max_delay_ms=4000)
    ra, rs = aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    registry = Registry(ra)
    await registry.put(InstanceRecord.new(1, 7, desired=Desired.RUNNING, linked=True))
    supervisor = InstanceSupervisor(settings, registry, Dispatcher(ra, rs), project_root=ROOT)
    seen: list[tuple[str, int | None]] = []
    try:
        runner = await supervisor.start(InstanceId("1-7"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while runner.restarts < 2 and loop.time() < deadline:
            seen.append((runner.state.value, runner.last_close_code))
            await asyncio.sleep(0.05)
        assert runner.restarts >= 2, "the sidecar should have been restarted after each 408"
        assert runner.last_close_code == 408
        assert runner.last_error == "connectionLost (408)"
        assert ("BACKOFF", 408) in seen
        # Not a hot loop: with a 0.5 s first delay, doubling, a few seconds hold a few starts.
        await asyncio.sleep(2.0)
        assert runner.restarts <= 5
        assert runner.alive and runner.state in (ProcessState.BACKOFF, ProcessState.STARTING,
                                                 ProcessState.RUNNING)
        # Nothing was written as a session: no QR was ever shown, no identity to keep.
        session = supervisor.session_dir(InstanceId("1-7"))
        assert not (session / "creds.json").exists() or (session / "creds.json").stat().st_size
    finally:
        await supervisor.shutdown()
        await ra.aclose()
        rs.close()
