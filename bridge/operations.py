"""What an operator can do to an instance; shared by agent commands and the admin API.

Every operation answers at once and leaves the slow part (stopping a sidecar takes a second or
two, a logout waits for WhatsApp) to a background task, so a webhook is never late for it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, replace
from typing import Literal

from loguru import logger

from bridge.errors import SidecarError
from bridge.ids import InstanceId, make_instance_id, phone_from_jid
from bridge.sidecar.supervisor import ConnectionState
from bridge.store.outbox import Outbox
from bridge.store.registry import Desired, InstanceRecord
from bridge.web.services import Services
from bridge.web.status import summary_status

LinkOutcome = Literal["linking", "resuming", "already_linked"]
_UNLINK_WAIT_SECONDS = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceView:
    """One instance as an operator sees it."""

    instance_id: InstanceId
    account_id: int
    inbox_id: int
    label: str
    state: str  # open, qr_pending, connecting, reconnecting, stopped, fatal...
    number: str | None  # +5511...
    linked: bool
    desired: str
    uptime_seconds: float | None
    queue: int  # agent messages waiting to go out
    last_error: str | None
    qr: str | None  # the live QR string, while waiting for a scan
    pairing_code: str | None


class Operations:
    def __init__(self, services: Services) -> None:
        self._s = services

    # --- reading ----------------------------------------------------------------------------
    async def view(self, instance_id: InstanceId) -> InstanceView | None:
        record = await self._s.registry.get(instance_id)
        return None if record is None else await self._view(record)

    async def views(self, account_id: int | None = None) -> list[InstanceView]:
        records = await self._s.registry.all()
        return [await self._view(r) for r in records
                if account_id is None or r.account_id == account_id]

    async def _view(self, record: InstanceRecord) -> InstanceView:
        runner = self._s.supervisor.runner(record.instance_id)
        status = runner.status() if runner is not None else None
        started = status.started_at if status else None
        return InstanceView(
            instance_id=record.instance_id, account_id=record.account_id,
            inbox_id=record.inbox_id, label=record.label(),
            state=summary_status(record, status),
            number=phone_from_jid(record.wa_jid) if record.wa_jid else None,
            linked=record.linked, desired=record.desired.value,
            uptime_seconds=round(time.time() - started, 1) if started else None,
            queue=await Outbox(self._s.redis, record.instance_id).depth(),
            last_error=(status.last_error if status and status.last_error
                        else record.last_error),
            qr=runner.current_qr if runner else None,
            pairing_code=runner.current_pairing_code if runner else None)

    # --- linking ------------------------------------------------------------------------------
    async def link(self, account_id: int, inbox_id: int, *, inbox_name: str | None = None,
                   notify: tuple[int, int] | None = None, pairing_phone: str | None = None,
                   replace_number: bool = False) -> LinkOutcome:
        """Link (or re-link) a number to the inbox. A healthy linked number is left alone unless
        `replace_number`: then it is unlinked first, and a new one is paired."""
        instance_id = make_instance_id(account_id, inbox_id)
        record = (await self._s.registry.get(instance_id)
                  or InstanceRecord.new(account_id, inbox_id))
        if inbox_name:
            record = replace(record, inbox_name=inbox_name)
        runner = self._s.supervisor.runner(instance_id)
        healthy = runner is not None and runner.alive and \
            runner.connection is ConnectionState.OPEN
        if healthy and not replace_number:
            return "already_linked"
        linked = record.linked and not replace_number
        record = replace(
            record, desired=Desired.RUNNING, qr_attempts=0, last_error=None,
            pairing_phone=None if linked else pairing_phone,
            notify_account_id=notify[0] if notify else record.notify_account_id,
            notify_conversation_id=notify[1] if notify else record.notify_conversation_id)
        await self._s.registry.put(record)

        async def go() -> None:
            if replace_number and record.linked:
                await self._unlink(instance_id)
            await self._s.supervisor.relink(instance_id)

        self._s.background(go(), name=f"link-{instance_id}")
        return "resuming" if linked else "linking"

    # --- steering -----------------------------------------------------------------------------
    async def start(self, instance_id: InstanceId) -> bool:
        """Run again with the saved session (a never-linked instance starts pairing)."""
        record = await self._s.registry.update(instance_id, desired=Desired.RUNNING,
                                               last_error=None, qr_attempts=0)
        if record is None:
            return False
        self._s.background(self._s.supervisor.relink(instance_id), name=f"start-{instance_id}")
        return True

    async def stop(self, instance_id: InstanceId) -> bool:
        """Stop the sidecar, keep the session; it stays stopped across restarts."""
        if await self._s.registry.update(instance_id, desired=Desired.STOPPED) is None:
            return False
        self._s.background(self._s.supervisor.stop(instance_id), name=f"stop-{instance_id}")
        return True

    async def restart(self, instance_id: InstanceId) -> bool:
        return await self.start(instance_id)  # relink = stop what runs, then start

    async def logout(self, instance_id: InstanceId, *, then_note: bool = True) -> bool:
        """Unlink the number from WhatsApp and wipe its session."""
        record = await self._s.registry.update(instance_id, desired=Desired.STOPPED)
        if record is None:
            return False

        async def go() -> None:
            await self._unlink(instance_id)
            if then_note:
                await self._s.supervisor.notify(record, self._s.texts.logged_out_by_request.format(
                    number=phone_from_jid(record.wa_jid) if record.wa_jid else record.label(),
                    inbox=record.label()))

        self._s.background(go(), name=f"logout-{instance_id}")
        return True

    async def delete(self, instance_id: InstanceId) -> bool:
        """Forget the instance: unlink, wipe, remove it from the registry."""
        if await self._s.registry.get(instance_id) is None:
            return False
        await self._s.registry.update(instance_id, desired=Desired.STOPPED)

        async def go() -> None:
            await self._unlink(instance_id)
            await self._s.registry.delete(instance_id)

        self._s.background(go(), name=f"delete-{instance_id}")
        return True

    async def _unlink(self, instance_id: InstanceId) -> None:
        """Log out through the sidecar when it is connected (so the phone drops the device),
        then make sure the session is gone whatever happened."""
        runner = self._s.supervisor.runner(instance_id)
        if runner is not None and runner.alive and runner.connection is ConnectionState.OPEN:
            runner.logout_requested = True
            try:
                await runner.logout()
            except SidecarError as err:
                logger.bind(instance=instance_id, code=err.code).warning("Logout not answered")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _UNLINK_WAIT_SECONDS
            while runner.alive and loop.time() < deadline:
                await asyncio.sleep(0.1)
        await self._s.supervisor.stop(instance_id)
        shutil.rmtree(self._s.supervisor.session_dir(instance_id), ignore_errors=True)
        await self._s.registry.update(instance_id, linked=False, wa_jid=None, lid=None,
                                      pairing_phone=None)
        logger.bind(instance=instance_id).info("Instance unlinked and its session wiped")
