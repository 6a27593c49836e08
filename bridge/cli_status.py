"""`ponte status`: the status page as one terminal screen, from any host that reaches Ponte.

It reads `GET /global-status` and `GET /recent-failures` over HTTP (so `--url` works against a
remote Ponte just as against this host) and prints instances with coloured states, queues and
the newest failures. Colours and in-place refresh (`--watch`) only on a terminal: piped, it
prints plain text, one snapshot after another. Exit codes follow sysexits: 69 when Ponte cannot
be reached, 77 when it refuses the admin token.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from bridge.config import Settings

if TYPE_CHECKING:
    import httpx

EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE
EXIT_DENIED = 77  # EX_NOPERM
DEFAULT_WATCH_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 5.0
ERROR_WIDTH = 60

_ANSI = {"ok": "32", "pending": "33", "transient": "36", "idle": "90", "bad": "31",
         "bold": "1", "dim": "2"}


class Unreachable(Exception):
    """Ponte did not answer, or not with a status."""


class Denied(Exception):
    """Ponte refused the admin token (or none was given and it wants one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    status: dict[str, Any]
    failures: list[dict[str, Any]] | None  # None: this Ponte has no /recent-failures


def add_parser(sub: Any) -> None:
    """Register `ponte status` on cli.py's subparsers."""
    parser = sub.add_parser("status", help="terminal dashboard: instances, queues, failures")
    parser.add_argument("--url", help="Ponte's address (default: http://127.0.0.1:SERVER_PORT)")
    parser.add_argument("--token", help="admin token (default: SERVER_ADMIN_TOKEN, which keeps "
                                        "it out of the process list)")
    parser.add_argument("--watch", nargs="?", type=float, const=DEFAULT_WATCH_SECONDS,
                        metavar="SECONDS", help="refresh every SECONDS (default "
                                                f"{DEFAULT_WATCH_SECONDS:g}) until Ctrl-C")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="ANSI colours (auto: only on a terminal)")


def default_url(settings: Settings) -> str:
    host = settings.server_host
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: this host's loopback reaches it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server_port}"


# --- fetching ------------------------------------------------------------------------------
def _get(client: httpx.Client, path: str) -> httpx.Response:
    import httpx  # here, not at the top: cli.py imports this module for every command

    try:
        response = client.get(path)
    except httpx.HTTPError as err:
        raise Unreachable(f"cannot reach {client.base_url}: {type(err).__name__} {err}") from err
    if response.status_code in (401, 403):
        raise Denied(f"{client.base_url} refused the admin token ({response.status_code}): "
                     "pass --token or set SERVER_ADMIN_TOKEN")
    return response


def fetch(client: httpx.Client) -> Snapshot:
    import httpx

    response = _get(client, "/global-status")
    try:
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        instances = status["instancesGlobal"]
    except (httpx.HTTPStatusError, ValueError, KeyError, TypeError) as err:
        raise Unreachable(f"{client.base_url}/global-status answered {response.status_code} "
                          "without Ponte's status") from err
    if not isinstance(instances, list):
        raise Unreachable(f"{client.base_url}/global-status: instancesGlobal is not a list")
    failures = _get(client, "/recent-failures")
    if failures.status_code == 404:  # an older Ponte: show the count only
        return Snapshot(status=status, failures=None)
    try:
        failures.raise_for_status()
        return Snapshot(status=status, failures=list(failures.json()["failures"]))
    except (httpx.HTTPStatusError, ValueError, KeyError, TypeError):
        return Snapshot(status=status, failures=None)


# --- rendering -----------------------------------------------------------------------------
def _paint(text: str, tone: str | None, color: bool) -> str:
    if not color or tone not in _ANSI:
        return text
    return f"\x1b[{_ANSI[tone]}m{text}\x1b[0m"


def _cell(value: object) -> str:
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= ERROR_WIDTH else text[:ERROR_WIDTH - 1] + "…"


def _table(header: Sequence[str], rows: list[list[tuple[str, str | None]]], color: bool,
           right: frozenset[int] = frozenset()) -> list[str]:
    """Aligned columns; each cell is (text, tone), padded before it is painted."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(text)) for w, (text, _) in zip(widths, row, strict=True)]

    def line(cells: list[tuple[str, str | None]]) -> str:
        out = []
        last = len(cells) - 1
        for i, ((text, tone), width) in enumerate(zip(cells, widths, strict=True)):
            padded = text.rjust(width) if i in right else text if i == last else text.ljust(width)
            out.append(_paint(padded, tone, color))
        return "  ".join(out)

    return [line([(h, "bold") for h in header]), *(line(r) for r in rows)]


def render(snapshot: Snapshot, *, url: str, color: bool) -> str:
    from bridge.web.page import (
        STATE_TONE,
        format_bytes,
        format_duration,
        format_when,
        journal_line,
        number_of,
    )

    status = snapshot.status
    instances: list[dict[str, Any]] = status.get("instancesGlobal") or []
    opened = sum(1 for i in instances if i.get("status") == "open")
    lines = [" ".join([_paint("Ponte", "bold", color), url, "·",
                       format_when(status.get("serverTime")), "· serve up",
                       format_duration(status.get("uptimeSeconds")), "·",
                       f"{opened} of {len(instances)} open"])]
    redis = status.get("redis")
    if isinstance(redis, dict) and redis.get("ok") is False:
        lines.append(_paint(f"Redis unreachable: {_cell(redis.get('error'))}", "bad", color))
    journal = status.get("journal")
    if isinstance(journal, dict) and journal.get("mode") == "journal":
        lines.append(_paint(journal_line(journal), "bad", color))
    lines.append("")
    rows = []
    for inst in instances:
        state = str(inst.get("status", "?"))
        qr = "pending" if inst.get("qrPending") else "-"
        error = inst.get("lastError")
        rows.append([(_cell(inst.get("instanceName")), None), (_cell(inst.get("instanceId")), None),
                     (state, STATE_TONE.get(state, "idle")),
                     (number_of(inst.get("connectedJid")), None),
                     (format_duration(inst.get("uptimeSeconds")), None),
                     (str(inst.get("restarts", 0)), None),
                     (format_bytes(inst.get("rssBytes")), None),
                     (str(inst.get("outboxDepth", 0)), None),
                     (qr, "pending" if qr != "-" else None),
                     (_cell(error), "bad" if error else None)])
    if rows:
        lines += _table(("INBOX", "INSTANCE", "STATE", "NUMBER", "UPTIME", "RESTARTS", "MEMORY",
                         "OUTBOX", "QR", "LAST ERROR"), rows, color, right=frozenset({5, 6, 7}))
    else:
        lines.append("No instance yet: an agent types the keyword in Chatwoot to link a number.")
    if any(i.get("qrPending") for i in instances):
        lines.append(_paint(f"A QR code is waiting to be scanned: open {url}/ in a browser, or "
                            "scan the one posted in Chatwoot.", "pending", color))
    queues: dict[str, Any] = status.get("queues") or {}
    stats: dict[str, Any] = status.get("queueStats") or {}
    parts = []
    for name, depth in sorted(queues.items()):
        oldest = (stats.get(name) or {}).get("oldestJobAgeSeconds")
        parts.append(f"{name} {depth}" + (f" (oldest {format_duration(oldest)})"
                                          if oldest is not None else ""))
    if status.get("workers") is not None:
        parts.append(f"workers {status['workers']}")
    parts.append(f"mailboxes pending {status.get('mailboxesPending', '-')}")
    failed = status.get("failedCount", 0)
    parts.append(_paint(f"failed {failed}", "bad" if failed else None, color))
    if isinstance(journal, dict):
        parts.append(f"journal {journal.get('entries', 0)}")
    lines += ["", _paint("QUEUES", "bold", color) + "  " + " · ".join(parts)]
    if snapshot.failures:
        lines += ["", _paint("RECENT FAILURES", "bold", color) + " (newest first)"]
        lines += _table(("WHEN", "WHERE", "KIND", "ERROR", "REASON"), [
            [(format_when(f.get("at")), None), (_cell(f.get("where")), None),
             (_cell(f.get("kind")), None), (_cell(f.get("error")), "bad"),
             (_cell(f.get("reason")), None)] for f in snapshot.failures], color)
    return "\n".join(lines) + "\n"


# --- running -------------------------------------------------------------------------------
def _show(out: TextIO, frame: str, *, in_place: bool) -> None:
    if in_place:
        # Home, each line cleared to its end, then the rest of the screen: no flicker.
        out.write("\x1b[H" + frame.replace("\n", "\x1b[K\n") + "\x1b[J")
    else:
        out.write(frame)
    out.flush()


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    tty = out.isatty()
    color = args.color == "always" or (args.color == "auto" and tty)
    url = (args.url or default_url(settings)).rstrip("/")
    token = args.token or (settings.server_admin_token.get_secret_value()
                           if settings.server_admin_token else None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    in_place = tty and args.watch is not None
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
        if in_place:
            out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once
        try:
            while True:
                try:
                    frame = render(fetch(client), url=url, color=color)
                except Unreachable as err:
                    if args.watch is None:
                        print(f"ponte status: {err}", file=sys.stderr)
                        return EXIT_UNREACHABLE
                    # Watching through a restart: say so, keep trying.
                    frame = _paint(f"ponte status: {err} (retrying)", "bad", color) + "\n"
                except Denied as err:
                    print(f"ponte status: {err}", file=sys.stderr)
                    return EXIT_DENIED
                _show(out, frame, in_place=in_place)
                if args.watch is None:
                    return 0
                if not in_place:
                    out.write("\n")
                time.sleep(max(args.watch, 0.2))
        except KeyboardInterrupt:
            return 0
        finally:
            if in_place:
                out.write("\x1b[?25h\n")  # the cursor back
                out.flush()
