"""`GET /`: the status page for operators, server-rendered, reloading itself every few seconds.

It shows what `GET /global-status` answers (fetched through the app itself, so the page follows
that endpoint as it grows), the live QR code (inline SVG) or pairing code of an instance waiting
to be linked, and the newest entries of the failed list (`GET /recent-failures`, also used by
`ponte status`), never message text.

Access, when `SERVER_ADMIN_TOKEN` is set: a browser cannot send a bearer header when it
navigates, so besides `Authorization: Bearer <token>` the page accepts `/?token=<token>` once:
it answers with a cookie and a redirect to the same page without the token, so the token does
not stay in the address bar, the history or a Referer. The cookie holds an HMAC of the token,
not the token, is HttpOnly and SameSite=Lax, Secure over HTTPS, and only opens this page and
`/recent-failures`. Every comparison is constant-time. Without a token the page is open, like
`/global-status` (serve then listens on loopback only, or SERVER_PUBLIC_STATUS=true says a proxy
restricts it: docs/deploy.md), and never shows a QR or pairing code: whoever scans one owns the
number. It says where to find them instead (the Chatwoot conversation where linking started).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from html import escape
from typing import Any

import httpx
import segno
from loguru import logger
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bridge.config import Settings
from bridge.ids import InstanceId, phone_from_jid
from bridge.store import keys
from bridge.web.security import admin_allowed
from bridge.web.services import Services

REFRESH_SECONDS = 5  # WhatsApp shows a new QR about every 20 s: the page must keep up
RECENT_FAILURES = 10
COOKIE = "ponte_admin"
COOKIE_MAX_AGE = 7 * 24 * 3600
_COOKIE_CONTEXT = b"ponte status page v1"

# Each summary state gets a tone: the page colours it by CSS class, `ponte status` by ANSI code.
STATE_TONE = {
    "open": "ok", "qr_pending": "pending", "connecting": "transient",
    "reconnecting": "transient", "stopping": "transient", "disconnected": "transient",
    "stopped": "idle", "qr_limit_reached": "bad", "fatal": "bad",
}

_HEADERS = {
    "Cache-Control": "no-store",  # a QR on screen is a key to the account: never cache it
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


# --- access --------------------------------------------------------------------------------
def cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie jar never has the token."""
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def page_allowed(settings: Settings, request: Request) -> bool:
    """No token configured, the bearer header (as for /global-status), or the page's cookie."""
    token = settings.server_admin_token
    if token is None or admin_allowed(settings, request):
        return True
    expected = cookie_value(token.get_secret_value())
    return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), expected.encode())


def _token_matches(settings: Settings, given: str) -> bool:
    token = settings.server_admin_token
    return token is None or hmac.compare_digest(given.encode(), token.get_secret_value().encode())


# --- formatting, shared with `ponte status` ------------------------------------------------
def format_duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def format_bytes(count: object) -> str:
    if not isinstance(count, int | float):
        return "-"
    return f"{count / 2**20:.0f} MB"


def journal_line(journal: dict[str, Any]) -> str:
    """What the journal means for the operator while serve journals (`/global-status`)."""
    since = journal.get("redisDownSince")
    size = journal.get("bytes")
    kept = (f"{journal.get('entries', '?')} operations kept in the journal "
            f"({size / 1024:.0f} KiB)" if isinstance(size, int | float) else "")
    if not isinstance(since, int | float):  # a journal an earlier run left, being replayed
        return f"Replaying the journal: {kept}"
    return (f"Redis unreachable for {format_duration(time.time() - since)}: {kept}, "
            "replayed in order when Redis answers")


def number_of(jid: object) -> str:
    """`5511999990000@s.whatsapp.net` -> `+5511999990000`; another address as it is."""
    if not isinstance(jid, str) or not jid:
        return "-"
    return phone_from_jid(jid) or jid


def format_when(value: object) -> str:
    """A Unix time or an ISO 8601 string as `YYYY-MM-DD HH:MM:SS UTC`; `-` if it is neither."""
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value).astimezone(UTC)
        else:
            return "-"
    except (ValueError, OSError, OverflowError):
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def failure_view(raw: bytes | str) -> dict[str, Any]:
    """An entry of the failed list without its payload: where, what kind, why, when."""
    try:
        entry = json.loads(raw)
        item = entry.get("item") or {}
        return {"at": entry.get("at"),
                "where": str(entry.get("mailbox", "?")).removeprefix(f"{keys.PREFIX}:mailbox:"),
                "kind": item.get("kind"), "id": item.get("id"),
                "error": entry.get("error"), "reason": str(entry.get("reason", ""))[:200]}
    except (ValueError, AttributeError):
        return {"at": None, "where": "?", "kind": None, "id": None,
                "error": "unreadable entry", "reason": ""}


async def recent_failures(services: Services, count: int = RECENT_FAILURES
                          ) -> list[dict[str, Any]]:
    return [failure_view(raw) for raw in await services.redis.lrange(keys.FAILED, 0, count - 1)]


# --- data ----------------------------------------------------------------------------------
async def _global_status(request: Request, settings: Settings) -> dict[str, Any]:
    """GET /global-status through this very app: the page shows exactly what operators get."""
    headers: dict[str, str] = {}
    if settings.server_admin_token is not None:
        headers["Authorization"] = f"Bearer {settings.server_admin_token.get_secret_value()}"
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ponte") as client:
        response = await client.get("/global-status", headers=headers)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _linking(services: Services, instance: dict[str, Any]) -> tuple[str | None, str | None]:
    """The live QR string and pairing code of an instance waiting for the phone, else None."""
    if instance.get("status") != "qr_pending":
        return None, None
    runner = services.supervisor.runner(InstanceId(str(instance.get("instanceId"))))
    if runner is None:
        return None, None
    return runner.current_qr, runner.current_pairing_code


# --- HTML ----------------------------------------------------------------------------------
def _e(value: object) -> str:
    return escape("-" if value is None or value == "" else str(value), quote=True)


def qr_svg(qr: str) -> str:
    # The same symbol as the PNG posted into Chatwoot (notes.qr_png); white quiet zone, so a
    # phone reads it on any background.
    svg: str = segno.make(qr, error="l").svg_inline(scale=6, border=4, dark="#000",
                                                    light="#fff", svgclass="qr")
    return svg


CODES_HIDDEN = ("QR code and pairing code hidden: this page shows them only when "
                "SERVER_ADMIN_TOKEN is set. Scan the QR code posted in the Chatwoot conversation "
                "where linking started.")


def _instance_rows(instances: list[dict[str, Any]],
                   linking: dict[str, tuple[str | None, str | None]],
                   codes_hidden: bool) -> str:
    if not instances:
        return '<tr><td colspan="9" class="empty">No instance yet: an agent types the ' \
               'keyword in a Chatwoot conversation to link a number.</td></tr>'
    rows = []
    for inst in instances:
        state = str(inst.get("status", "?"))
        tone = STATE_TONE.get(state, "idle")
        rows.append(
            f'<tr class="instance" data-instance="{_e(inst.get("instanceId"))}">'
            f'<td><b>{_e(inst.get("instanceName"))}</b><br><small>{_e(inst.get("instanceId"))}'
            f'</small></td><td><span class="state {tone}">{_e(state)}</span></td>'
            f'<td>{_e(number_of(inst.get("connectedJid")))}</td>'
            f'<td>{_e(format_duration(inst.get("uptimeSeconds")))}</td>'
            f'<td class="num">{_e(inst.get("restarts", 0))}</td>'
            f'<td class="num">{_e(format_bytes(inst.get("rssBytes")))}</td>'
            f'<td class="num">{_e(inst.get("outboxDepth", 0))}</td>'
            f'<td class="num">{_e(inst.get("qrSendAttempts", 0))}</td>'
            f'<td class="error">{_e(inst.get("lastError"))}</td></tr>')
        qr, code = linking.get(str(inst.get("instanceId")), (None, None))
        if qr or code:
            parts = []
            if qr:
                parts.append(f'<figure>{qr_svg(qr)}<figcaption>On the phone: WhatsApp → Linked '
                             'devices → Link a device, then scan.</figcaption></figure>')
            if code:
                parts.append(f'<p>Pairing code: <code class="pairing">{_e(code)}</code><br>'
                             '<small>WhatsApp → Linked devices → Link with phone number'
                             '</small></p>')
            rows.append(f'<tr class="linking"><td colspan="9">{"".join(parts)}</td></tr>')
        elif codes_hidden and state == "qr_pending":
            rows.append(f'<tr class="linking"><td colspan="9" class="codes-hidden">'
                        f'{_e(CODES_HIDDEN)}</td></tr>')
    return "".join(rows)


def _failure_rows(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return '<tr><td colspan="5" class="empty">Nothing failed.</td></tr>'
    return "".join(
        f'<tr><td>{_e(format_when(f.get("at")))}</td><td>{_e(f.get("where"))}</td>'
        f'<td>{_e(f.get("kind"))}</td><td>{_e(f.get("error"))}</td>'
        f'<td class="error">{_e(f.get("reason"))}</td></tr>' for f in failures)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2433;background:#f6f7f9}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
.meta{color:#5b6475} table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.45rem .6rem;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600} .num{text-align:right} small{color:#5b6475}
.error{color:#8a1c1c;max-width:28rem} .empty{color:#5b6475;font-style:italic}
.state{display:inline-block;padding:.1rem .55rem;border-radius:1rem;font-weight:600;color:#fff}
.ok{background:#1f8a4c} .pending{background:#c77700} .transient{background:#2a6fb0}
.idle{background:#7a8190} .bad{background:#b42318}
.linking td{background:#fffbea} figure{margin:.4rem 0;display:inline-block}
figcaption{color:#5b6475} svg.qr{display:block}
code.pairing{font-size:1.6rem;letter-spacing:.2rem;background:#fff;padding:.1rem .4rem}
.banner{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:.3rem}
.queues{width:auto;min-width:24rem} .queues td:first-child{font-family:ui-monospace,monospace}
"""


def render_page(status: dict[str, Any], linking: dict[str, tuple[str | None, str | None]],
                failures: list[dict[str, Any]], *, error: str | None = None,
                codes_hidden: bool = False) -> str:
    """The whole page; every value from outside goes through `_e`. `codes_hidden`: no admin
    token is set, so `linking` is empty and a waiting instance says why."""
    instances: list[dict[str, Any]] = list(status.get("instancesGlobal") or [])
    queues: dict[str, Any] = dict(status.get("queues") or {})
    stats: dict[str, Any] = dict(status.get("queueStats") or {})
    queue_rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{_e(depth)}</td><td class="num">'
        f'{_e(format_duration((stats.get(name) or {}).get("oldestJobAgeSeconds")))}</td></tr>'
        for name, depth in sorted(queues.items()))
    for label, value in (("workers", status.get("workers")),
                         ("mailboxes pending", status.get("mailboxesPending")),
                         ("failed (total)", status.get("failedCount"))):
        queue_rows += f'<tr><td>{label}</td><td class="num">{_e(value)}</td><td></td></tr>'
    journal = status.get("journal")
    if isinstance(journal, dict):
        queue_rows += (f'<tr><td>journal</td><td class="num">{_e(journal.get("entries"))}</td>'
                       f'<td>{_e(format_bytes(journal.get("bytes")))} of '
                       f'{_e(format_bytes(journal.get("maxBytes")))}</td></tr>')
    redis = status.get("redis")
    if isinstance(redis, dict) and redis.get("ok") is False:
        error = "; ".join(filter(None, [error, f"Redis unreachable: {redis.get('error')}"]))
    if isinstance(journal, dict) and journal.get("mode") == "journal":
        error = "; ".join(filter(None, [error, journal_line(journal)]))
    banner = f'<p class="banner">{_e(error)}</p>' if error else ""
    opened = sum(1 for i in instances if i.get("status") == "open")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Ponte status</title><style>{_STYLE}</style></head>
<body><h1>Ponte</h1>
<p class="meta">{opened} of {len(instances)} instances open · serve up
{_e(format_duration(status.get("uptimeSeconds")))} ·
{_e(format_when(status.get("serverTime")))} · refreshes every {REFRESH_SECONDS} s</p>{banner}
<h2>Instances</h2>
<table id="instances"><tr><th>Inbox</th><th>State</th><th>Number</th><th>Uptime</th>
<th class="num">Restarts</th><th class="num">Memory</th><th class="num">Outbox</th>
<th class="num">QR sent</th>
<th>Last error</th></tr>{_instance_rows(instances, linking, codes_hidden)}</table>
<h2>Queues</h2><table id="queues" class="queues"><tr><th>Queue</th><th class="num">Depth</th>
<th class="num">Oldest job</th></tr>{queue_rows}</table>
<h2>Recent failures</h2><table id="failures"><tr><th>When</th><th>Where</th><th>Kind</th>
<th>Error</th><th>Reason</th></tr>{_failure_rows(failures)}</table>
</body></html>"""


def render_denied(wrong: bool) -> str:
    why = "That token is not the admin token." if wrong else "This page needs the admin token."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ponte: admin token</title>
<style>{_STYLE}</style></head><body><h1>Ponte</h1><p class="banner">{_e(why)}</p>
<form method="get" action="."><label>SERVER_ADMIN_TOKEN
<input type="password" name="token" autocomplete="current-password" autofocus></label>
<button>Open</button></form></body></html>"""


# --- routes --------------------------------------------------------------------------------
async def status_page(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    given = request.query_params.get("token")
    if given is not None:
        if not _token_matches(settings, given):
            return HTMLResponse(render_denied(True), status_code=401, headers=_HEADERS)
        # "." is this page without the query, also under a reverse proxy's path prefix.
        response: Response = RedirectResponse(".", status_code=303, headers=_HEADERS)
        if settings.server_admin_token is not None:
            response.set_cookie(
                COOKIE, cookie_value(settings.server_admin_token.get_secret_value()),
                max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="lax",
                secure=request.url.scheme == "https")
        return response
    if not page_allowed(settings, request):
        return HTMLResponse(render_denied(False), status_code=401, headers=_HEADERS)
    error = None
    try:
        status = await _global_status(request, settings)
    except Exception as err:  # an edge: say so on the page rather than answer 500
        logger.opt(exception=err).error("Status page could not read /global-status")
        status, error = {}, f"/global-status failed: {type(err).__name__}"
    # No admin token: the page may be open to more than operators, and a QR is the account.
    codes_hidden = settings.server_admin_token is None
    linking = {} if codes_hidden else {str(i.get("instanceId")): _linking(services, i)
                                       for i in status.get("instancesGlobal") or []}
    try:
        failures = await recent_failures(services)
    except Exception as err:  # an edge: show the rest of the page even if Redis is down
        logger.opt(exception=err).error("Status page could not read the failed list")
        failures, error = [], error or f"failed list: {type(err).__name__}"
    return HTMLResponse(render_page(status, linking, failures, error=error,
                                    codes_hidden=codes_hidden), headers=_HEADERS)


async def recent_failures_json(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    if not page_allowed(services.settings, request):
        return JSONResponse({"error": "admin token required (Authorization: Bearer ...)"},
                            status_code=401)
    raw = request.query_params.get("count", "")
    count = min(int(raw), 100) if raw.isdigit() and int(raw) > 0 else RECENT_FAILURES
    try:
        failures = await recent_failures(services, count)
    except Exception as err:  # an edge: Redis down is an answer, not a crash
        return JSONResponse({"error": f"failed list unreadable: {type(err).__name__}"},
                            status_code=503)
    return JSONResponse({"failures": failures, "serverTime": time.time()})


ROUTES = [
    Route("/", status_page, methods=["GET"]),
    Route("/recent-failures", recent_failures_json, methods=["GET"]),
]
