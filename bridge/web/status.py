"""Operators' endpoints: `GET /global-status`, `/metrics`, `/healthz`, `/readyz`.

`/global-status` keeps the original bridge's keys (`instanceId`, `instanceName`, `status`,
`connectedJid`, `qrPending`, `qrSendAttempts`, `lastError`, `relayToInboxId`, `relayToAccountId`;
top level `serverTime`, `totalActiveInstances`, `instancesGlobal`) and adds Ponte's own. When
Redis does not answer it still answers 200, with `redis: {"ok": false, "error": ...}` and what
serve knows by itself, so a status page can show the outage instead of an error.
`/global-status` and `/metrics` need the admin token when one is set; `/healthz` (the process
is up) and `/readyz` (Redis, Chatwoot and the supervisor work) are for probes and need none.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge import metrics
from bridge.config import Settings
from bridge.ids import InstanceId
from bridge.jobs.queues import ALL_QUEUES
from bridge.sidecar.supervisor import ConnectionState, InstanceStatus, ProcessState
from bridge.store import keys
from bridge.store.registry import InstanceRecord
from bridge.web.security import admin_allowed
from bridge.web.services import Services

# Every value `summary_status` gives, in the order a dashboard lists them.
STATES = ("open", "qr_pending", "connecting", "disconnected", "reconnecting", "stopping",
          "stopped", "qr_limit_reached", "fatal")
_REDIS_TIMEOUT_SECONDS = 3.0
_CHATWOOT_TIMEOUT_SECONDS = 3.0
_CHATWOOT_CHECK_TTL_SECONDS = 5.0  # probes come every few seconds; Chatwoot need not see each
_cpu = metrics.CpuSampler()


def summary_status(record: InstanceRecord, status: InstanceStatus | None) -> str:
    """One word per instance, in the original bridge's vocabulary where it had one."""
    return _summary(record.last_error, status)


def _summary(last_error: str | None, status: InstanceStatus | None) -> str:
    if status is None:
        return "stopped"
    if status.process_state in (ProcessState.STARTING, ProcessState.RUNNING):
        return {ConnectionState.OPEN: "open", ConnectionState.PAIRING: "qr_pending",
                ConnectionState.CONNECTING: "connecting",
                ConnectionState.CLOSED: "disconnected"}[status.connection]
    if status.process_state is ProcessState.EXITED and last_error and \
            last_error.startswith("QR limit"):
        return "qr_limit_reached"
    return {ProcessState.BACKOFF: "reconnecting", ProcessState.STOPPING: "stopping",
            ProcessState.EXITED: "stopped", ProcessState.FATAL: "fatal",
            ProcessState.STOPPED: "stopped"}.get(status.process_state, "stopped")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Instance:
    instance_id: InstanceId
    record: InstanceRecord | None  # None while Redis does not answer
    status: InstanceStatus | None  # None when this serve does not run it
    state: str
    cpu_percent: float | None
    cpu_seconds: float | None
    last_event_at: float | None
    outbox_depth: int | None
    protocol_errors: int
    outbound_restarts: int  # its outbox consumer crashed and was started again


async def _survey(services: Services) -> tuple[list[_Instance], metrics.HostSample]:
    """Everything both endpoints show, read once: serve's own state, Redis, RQ."""
    statuses = services.supervisor.statuses()
    host = await metrics.sample_host(services.redis, services.settings.redis_connection_url(),
                                     ALL_QUEUES, timeout_s=_REDIS_TIMEOUT_SECONDS)
    records: dict[InstanceId, InstanceRecord | None] = {iid: None for iid in sorted(statuses)}
    outboxes: dict[InstanceId, int] = {}
    if host.redis_error is None:
        try:
            found, outboxes = await asyncio.wait_for(_records(services),
                                                     _REDIS_TIMEOUT_SECONDS)
            records = {r.instance_id: r for r in found}
        except metrics.REDIS_ERRORS as err:
            host = replace(host, redis_error=f"{type(err).__name__}: {err}"[:300])
    cpu = _cpu.sample(s.pid for s in statuses.values() if s.pid)
    instances = []
    for iid, record in records.items():
        status = statuses.get(iid)
        runner = services.supervisor.runner(iid)
        percent, seconds = cpu.get(status.pid, (None, None)) if status and status.pid \
            else (None, None)
        instances.append(_Instance(
            instance_id=iid, record=record, status=status,
            state=_summary(record.last_error if record else None, status),
            cpu_percent=percent, cpu_seconds=seconds,
            last_event_at=runner.last_event_at if runner else None,
            outbox_depth=outboxes.get(iid),
            protocol_errors=services.supervisor.protocol_errors.get(iid, 0),
            outbound_restarts=services.outbound.restarts(iid)))
    return instances, host


async def _records(services: Services) -> tuple[list[InstanceRecord], dict[InstanceId, int]]:
    records = await services.registry.all()
    async with services.redis.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.xlen(keys.outbox(record.instance_id))
        depths = await pipe.execute()
    return records, {r.instance_id: int(d) for r, d in zip(records, depths, strict=True)}


def _instance_json(item: _Instance, host: metrics.HostSample, now: float) -> dict[str, Any]:
    record, status = item.record, item.status
    return {
        "instanceId": item.instance_id,
        "instanceName": record.label() if record else item.instance_id,
        "status": item.state,
        "processState": status.process_state.value if status else "STOPPED",
        "connectionState": status.connection.value if status else "close",
        "desired": record.desired.value if record else None,
        "linked": record.linked if record else None,
        "connectedJid": record.wa_jid if record else None,
        "qrPending": bool(status and status.qr_pending),
        "qrSendAttempts": record.qr_attempts if record else None,
        "lastError": (status.last_error if status and status.last_error
                      else record.last_error if record else None),
        "lastCloseCode": status.last_close_code if status else None,
        "relayToInboxId": record.inbox_id if record else None,
        "relayToAccountId": record.account_id if record else None,
        "pid": status.pid if status else None,
        "rssBytes": status.rss_bytes if status else None,
        "cpuPercent": item.cpu_percent,  # since the previous request; null the first time
        "uptimeSeconds": round(now - status.started_at, 1)
        if status and status.started_at else None,
        "lastEventAgeSeconds": round(now - item.last_event_at, 1)
        if item.last_event_at else None,
        "restarts": status.restarts if status else 0,
        "outboxDepth": item.outbox_depth,
        "mailboxDepth": (host.mailbox_depth or {}).get(item.instance_id, 0)
        if host.mailbox_depth is not None else None,
        "failedCount": (host.failed_items or {}).get(item.instance_id, 0)
        if host.failed_items is not None else None,
        "protocolErrors": item.protocol_errors,
        "outboundRestarts": item.outbound_restarts,
    }


async def global_status(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    if not admin_allowed(services.settings, request):
        return _admin_required()
    now = time.time()
    instances, host = await _survey(services)
    rows = [_instance_json(item, host, now) for item in instances]
    queues = host.queues or {}
    return JSONResponse({
        "message": "Ponte: status of every WhatsApp instance.",
        "serverTime": datetime.now(UTC).isoformat(),
        "uptimeSeconds": round(now - services.supervisor.started_at, 1),
        "totalActiveInstances": sum(1 for i in rows if i["status"] == "open"),
        "instancesGlobal": rows,
        "queues": {name: stats.depth for name, stats in queues.items()},
        "queueStats": {name: {"depth": stats.depth,
                              "oldestJobAgeSeconds": stats.oldest_job_age_s,
                              "scheduled": stats.scheduled, "failed": stats.failed}
                       for name, stats in queues.items()},
        "workers": host.workers,
        "mailboxesPending": host.pending_mailboxes,
        "failedCount": host.failed_total,
        "redis": {"ok": True} if host.redis_error is None
        else {"ok": False, "error": host.redis_error},
        # What this serve received while Redis did not answer, waiting to be replayed.
        "journal": services.intake.status(),
    })


class _Scrape(Collector):
    """The families of one scrape, gathered (async) before prometheus-client asks for them."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def prometheus_metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    if not admin_allowed(services.settings, request):
        return _admin_required()
    now = time.time()
    instances, host = await _survey(services)
    samples = [metrics.InstanceSample(
        instance_id=i.instance_id, state=i.state,
        rss_bytes=i.status.rss_bytes if i.status else None, cpu_seconds=i.cpu_seconds,
        last_event_age_s=now - i.last_event_at if i.last_event_at else None,
        restarts=i.status.restarts if i.status else 0, outbox_depth=i.outbox_depth,
        protocol_errors=i.protocol_errors)
        for i in instances]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape([*metrics.families(host, samples, STATES),
                               *metrics.journal_families(services.intake.status())]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 when Redis answers, Chatwoot accepts our token, and the supervisor runs; else 503
    naming each failed check."""
    services: Services = request.app.state.services
    checks = {
        "redis": await _check_redis(services),
        "chatwoot": await _check_chatwoot(request.app.state, services.settings),
        "supervisor": "stopping" if services.supervisor.stopping else "ok",
    }
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


async def _check_redis(services: Services) -> str:
    try:
        await asyncio.wait_for(services.redis.ping(), _REDIS_TIMEOUT_SECONDS)
    except metrics.REDIS_ERRORS as err:
        return f"{type(err).__name__}: {err}"[:200]
    return "ok"


async def _check_chatwoot(state: State, settings: Settings) -> str:
    """GET /api/v1/profile with our token, cached for a few seconds per app."""
    cached: tuple[float, str] | None = getattr(state, "chatwoot_check", None)
    if cached is not None and time.monotonic() - cached[0] < _CHATWOOT_CHECK_TTL_SECONDS:
        return cached[1]
    try:
        async with httpx.AsyncClient(timeout=_CHATWOOT_TIMEOUT_SECONDS) as client:
            answer = await client.get(f"{settings.chatwoot_url}/api/v1/profile",
                                      headers={"api_access_token": settings.chatwoot_token})
        result = "ok" if answer.status_code == 200 else f"answered {answer.status_code}"
    except httpx.HTTPError as err:
        result = f"unreachable: {type(err).__name__}"
    state.chatwoot_check = (time.monotonic(), result)
    return result


def _admin_required() -> JSONResponse:
    return JSONResponse({"error": "admin token required (Authorization: Bearer ...)"},
                        status_code=401)


ROUTES = [
    Route("/global-status", global_status, methods=["GET"]),
    Route("/metrics", prometheus_metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
