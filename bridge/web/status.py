"""`GET /global-status`: every instance, its process and WhatsApp state, for operators.

Keeps the original bridge's keys (`instanceId`, `instanceName`, `status`, `connectedJid`,
`qrPending`, `qrSendAttempts`, `lastError`, `relayToInboxId`, `relayToAccountId`; top level
`serverTime`, `totalActiveInstances`, `instancesGlobal`) and adds Ponte's own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.jobs.queues import ALL_QUEUES
from bridge.sidecar.supervisor import ConnectionState, InstanceStatus, ProcessState
from bridge.store import keys
from bridge.store.outbox import Outbox
from bridge.store.registry import InstanceRecord
from bridge.web.security import admin_allowed
from bridge.web.services import Services


def summary_status(record: InstanceRecord, status: InstanceStatus | None) -> str:
    """One word per instance, in the original bridge's vocabulary where it had one."""
    if status is None:
        return "stopped"
    if status.process_state in (ProcessState.STARTING, ProcessState.RUNNING):
        return {ConnectionState.OPEN: "open", ConnectionState.PAIRING: "qr_pending",
                ConnectionState.CONNECTING: "connecting",
                ConnectionState.CLOSED: "disconnected"}[status.connection]
    if status.process_state is ProcessState.EXITED and record.last_error and \
            record.last_error.startswith("QR limit"):
        return "qr_limit_reached"
    return {ProcessState.BACKOFF: "reconnecting", ProcessState.STOPPING: "stopping",
            ProcessState.EXITED: "stopped", ProcessState.FATAL: "fatal",
            ProcessState.STOPPED: "stopped"}.get(status.process_state, "stopped")


async def global_status(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    if not admin_allowed(services.settings, request):
        return JSONResponse({"error": "admin token required (Authorization: Bearer ...)"},
                            status_code=401)
    statuses = services.supervisor.statuses()
    now = time.time()
    instances: list[dict[str, Any]] = []
    for record in await services.registry.all():
        status = statuses.get(record.instance_id)
        instances.append({
            "instanceId": record.instance_id,
            "instanceName": record.label(),
            "status": summary_status(record, status),
            "processState": status.process_state.value if status else "STOPPED",
            "connectionState": status.connection.value if status else "close",
            "desired": record.desired.value,
            "linked": record.linked,
            "connectedJid": record.wa_jid,
            "qrPending": bool(status and status.qr_pending),
            "qrSendAttempts": record.qr_attempts,
            "lastError": (status.last_error if status and status.last_error
                          else record.last_error),
            "lastCloseCode": status.last_close_code if status else None,
            "relayToInboxId": record.inbox_id,
            "relayToAccountId": record.account_id,
            "pid": status.pid if status else None,
            "rssBytes": status.rss_bytes if status else None,
            "uptimeSeconds": round(now - status.started_at, 1)
            if status and status.started_at else None,
            "restarts": status.restarts if status else 0,
            "outboxDepth": await Outbox(services.redis, record.instance_id).depth(),
            "protocolErrors": services.supervisor.protocol_errors.get(record.instance_id, 0),
        })
    queues = {name: int(await services.redis.llen(f"rq:queue:{name}")) for name in ALL_QUEUES}
    return JSONResponse({
        "message": "Ponte: status of every WhatsApp instance.",
        "serverTime": datetime.now(UTC).isoformat(),
        "uptimeSeconds": round(now - services.supervisor.started_at, 1),
        "totalActiveInstances": sum(1 for i in instances if i["status"] == "open"),
        "instancesGlobal": instances,
        "queues": queues,
        "mailboxesPending": int(await services.redis.scard(keys.MAILBOXES_PENDING)),
        "failedCount": int(await services.redis.llen(keys.FAILED)),
    })


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


ROUTES = [
    Route("/global-status", global_status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
