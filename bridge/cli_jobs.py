"""`ponte jobs failed | retry <id>|--all | purge`: work that failed for good, listed and re-run.

Failed work sits in two places:
- `ponte:failed` (newest first): mailbox items (WhatsApp messages, Ponte's notes, contact merges)
  that Chatwoot refused or that ran out of `BULLMQ_JOB_ATTEMPTS`. Their chat went on without them
  and the agents got a note. A retry puts the item back at the head of its mailbox and schedules a
  drain; the mapping store keeps it from being posted twice if it had landed after all.
- RQ's FailedJobRegistry of each queue: jobs that raised (a status update after its retries, a
  drain that crashed). A retry requeues the job.
Listings never show message text: id, when, kind, instance/chat, error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import FailedJobRegistry

from bridge import errors, metrics
from bridge.config import Settings, mask_url
from bridge.jobs.deliver import DRAIN_BUDGET_SECONDS, LOCK_TTL_SECONDS
from bridge.jobs.queues import ALL_QUEUES, schedule_drain
from bridge.store import keys
from bridge.store.connection import sync_client

# Back into its mailbox, atomically: only if the entry is still on the failed list (two retries
# at once must not deliver it twice), with the per-instance count the status shows kept true.
_RETRY = """
if redis.call('lrem', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('lpush', KEYS[2], ARGV[2])
redis.call('sadd', KEYS[3], KEYS[2])
if redis.call('hincrby', KEYS[4], ARGV[3], -1) <= 0 then redis.call('hdel', KEYS[4], ARGV[3]) end
return 1
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedWork:
    """One failed entry or job, as listed."""

    id: str
    source: str  # `ponte` (the failed list) or the RQ queue's name
    at: float | None
    kind: str
    where: str  # instance and chat, or account and conversation
    error: str
    raw: bytes | str | None = None  # a `ponte:failed` entry exactly as stored


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="failed work: list, retry, purge")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="Redis URL (default: the configured one)")
    actions = jobs.add_subparsers(dest="action", required=True)
    actions.add_parser("failed", parents=[common], help="list what failed for good")
    retry = actions.add_parser("retry", parents=[common], help="run failed work again")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="an id from `ponte jobs failed`")
    target.add_argument("--all", action="store_true", help="everything that failed")
    actions.add_parser("purge", parents=[common], help="remove all failed work (no question "
                                                       "asked; prints what it removed)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or settings.redis_connection_url()
    connection = sync_client(url)
    try:
        if args.action == "failed":
            return _print_failed(connection)
        if args.action == "retry":
            return _retry(connection, None if args.all else args.id)
        return _purge(connection)
    except redis.ConnectionError as err:
        print(f"ponte: Redis at {mask_url(url)} is not reachable: {err}", file=sys.stderr)
        return 1
    finally:
        connection.close()


# --- reading --------------------------------------------------------------------------------
def failed_work(connection: redis.Redis) -> list[FailedWork]:
    """Everything that failed: the failed list (newest first), then RQ's registries."""
    return [*map(_entry, connection.lrange(keys.FAILED, 0, -1)), *_rq_failed(connection)]


def _entry(raw: bytes | str) -> FailedWork:
    try:
        entry = json.loads(raw)
        item = entry["item"]
        at = float(entry["at"])
    except (ValueError, KeyError, TypeError):
        return FailedWork(id="?", source="ponte", at=None, kind="?", where="?",
                          error="unreadable entry", raw=raw)
    # Entries written before ids existed get the id deliver.py gives new ones.
    entry_id = entry.get("id") or f"{item.get('id')}-{int(at * 1000)}"
    return FailedWork(id=str(entry_id), source="ponte", at=at, kind=str(item.get("kind")),
                      where=_where(str(entry.get("mailbox", ""))),
                      error=_error(str(entry.get("error")), str(entry.get("reason", ""))),
                      raw=raw)


def _rq_failed(connection: redis.Redis) -> list[FailedWork]:
    found = []
    for name in ALL_QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=connection))
        ids = registry.get_job_ids()
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=connection), strict=True):
            if job is None:
                found.append(FailedWork(id=job_id, source=name, at=None, kind="?",
                                        where="(job data expired)", error="?"))
                continue
            result = job.latest_result()
            kind, where = _job_target(job)
            found.append(FailedWork(
                id=job_id, source=name, at=job.ended_at.timestamp() if job.ended_at else None,
                kind=kind, where=where, error=_exception(result.exc_string if result else None)))
    return found


def _job_target(job: Job) -> tuple[str, str]:
    function = (job.func_name or "?").rsplit(".", 1)[-1]
    args = job.args
    if function == "drain" and args:
        return "drain", _where(str(args[0]))
    if function == "set_status" and len(args) >= 4:
        return "status", f"account {args[0]} conversation {args[1]} message {args[2]}"
    return function, "-"


def _where(mailbox: str) -> str:
    """`ponte:mailbox:wa:<instance>:<jid>` -> `<instance> <jid>`; notes: account, conversation."""
    parts = mailbox.split(":", 4)
    if len(parts) == 5 and parts[2] == "wa":
        return f"{parts[3]} {parts[4]}"
    if len(parts) == 5 and parts[2] == "note":
        return f"account {parts[3]} conversation {parts[4]}"
    return mailbox or "?"


def _error(name: str, reason: str) -> str:
    """The error's class; with its text only for Ponte's own errors, whose texts are ours (a
    stranger's text, a pydantic error for one, may quote the message)."""
    cls = getattr(errors, name, None)
    ours = isinstance(cls, type) and issubclass(cls, errors.PonteError)
    return f"{name}: {reason[:160]}" if ours and reason and reason != name else name


def _exception(traceback: str | None) -> str:
    """The last line of an RQ traceback, `module.Class: text`, as `_error` shows it."""
    lines = [line for line in (traceback or "").splitlines() if line.strip()]
    if not lines:
        return "?"
    name, _, text = lines[-1].partition(":")
    return _error(name.rsplit(".", 1)[-1].strip(), text.strip())


def _print_failed(connection: redis.Redis) -> int:
    work = failed_work(connection)
    if not work:
        print("No failed work.")
        return 0
    rows = [("ID", "WHEN (UTC)", "SOURCE", "KIND", "WHERE", "ERROR")] + [
        (w.id, _when(w.at), w.source, w.kind, w.where, w.error) for w in work]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[5])
    return 0


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "?"


# --- acting ---------------------------------------------------------------------------------
def _retry(connection: redis.Redis, work_id: str | None) -> int:
    chosen = [w for w in failed_work(connection) if work_id is None or w.id == work_id]
    if not chosen:
        if work_id is not None:
            print(f"ponte: no failed work with id {work_id} (see `ponte jobs failed`)",
                  file=sys.stderr)
            return 1
        print("No failed work.")
        return 0
    status = 0
    # The list is newest first and each item goes to the head of its mailbox: retrying in this
    # order leaves a chat's items oldest first again.
    for work in chosen:
        if work.raw is not None:
            done = _retry_entry(connection, work.raw)
        else:
            try:
                FailedJobRegistry(queue=Queue(work.source, connection=connection)).requeue(
                    work.id)
                done = True
            except InvalidJobOperation:  # requeued or removed meanwhile
                done = False
        print(f"{'retrying' if done else 'not retried'} {work.id} ({work.kind}, {work.where})")
        status = status if done else 1
    return status


def _retry_entry(connection: redis.Redis, raw: bytes | str) -> bool:
    entry = json.loads(raw)
    mailbox = str(entry["mailbox"])
    item = json.dumps(entry["item"], separators=(",", ":"), ensure_ascii=False)
    instance = str(entry.get("instance", entry["item"]["payload"].get("instance_id", "")))
    # A drain pops the head it handled: nothing may slip in front of it while it works, so the
    # item goes in under the mailbox's lock (a drain holds it at most its budget).
    lock = connection.lock(keys.mailbox_lock(mailbox), timeout=LOCK_TTL_SECONDS,
                           blocking_timeout=DRAIN_BUDGET_SECONDS + LOCK_TTL_SECONDS,
                           thread_local=False)
    if not lock.acquire():
        return False
    try:
        moved = connection.eval(_RETRY, 4, keys.FAILED, mailbox, keys.MAILBOXES_PENDING,
                                keys.stats(metrics.FAILED_ITEMS), raw, item, instance)
    finally:
        lock.release()
    if moved:
        schedule_drain(connection, mailbox)
    return bool(moved)


def _purge(connection: redis.Redis) -> int:
    with connection.pipeline(transaction=True) as pipe:  # what is listed is what is removed
        pipe.lrange(keys.FAILED, 0, -1)
        pipe.delete(keys.FAILED, keys.stats(metrics.FAILED_ITEMS))
        raw_entries, _ = pipe.execute()
    removed = [_entry(raw) for raw in raw_entries]
    for name in ALL_QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=connection))
        ids = registry.get_job_ids()
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=connection), strict=True):
            kind, where = _job_target(job) if job else ("?", "(job data expired)")
            registry.remove(job or job_id, delete_job=job is not None)
            removed.append(FailedWork(id=job_id, source=name, at=None, kind=kind, where=where,
                                      error="-"))
    for work in removed:
        print(f"removed {work.id} ({work.source}, {work.kind}, {work.where})")
    print(f"Purged {len(removed)} failed item(s).")
    return 0
