"""RQ queue names and the enqueue helpers; `rq info --url <REDIS_URL>` shows these queues.

| queue | holds |
|---|---|
| `ponte-chatwoot` | drain jobs (one per mailbox with work: WhatsApp messages, notes); status jobs |
| | and the coalesced failure notes (`notes.flush_failures`) |
"""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue, Retry

CHATWOOT_QUEUE = "ponte-chatwoot"
ALL_QUEUES = (CHATWOOT_QUEUE,)
DRAIN_JOB = "bridge.jobs.deliver.drain"
STATUS_JOB = "bridge.jobs.statuses.set_status"
FAILURE_NOTE_JOB = "bridge.jobs.notes.flush_failures"
DRAIN_TIMEOUT_SECONDS = 600
# Finished drain jobs are not kept: the mapping store is the record of what was done.
_RESULT_TTL = 0
_FAILURE_TTL = 7 * 24 * 3600


def chatwoot_queue(connection: redis.Redis) -> Queue:
    return Queue(CHATWOOT_QUEUE, connection=connection)


def schedule_drain(connection: redis.Redis, mailbox: str, *, delay_s: float = 0) -> None:
    """Queue a drain of `mailbox` now, or after `delay_s` seconds (retry backoff)."""
    queue = chatwoot_queue(connection)
    options = {
        "job_timeout": DRAIN_TIMEOUT_SECONDS,
        "result_ttl": _RESULT_TTL,
        "failure_ttl": _FAILURE_TTL,
        "description": f"drain {mailbox}",
    }
    if delay_s > 0:
        # A fresh job id each time: a retry is often scheduled from inside the previous retry
        # job, and reusing its id would overwrite the record of the job that is running.
        queue.enqueue_in(timedelta(seconds=delay_s), DRAIN_JOB, mailbox, **options)
    else:
        queue.enqueue(DRAIN_JOB, mailbox, **options)


def schedule_status(connection: redis.Redis, account_id: int, conversation_id: int,
                    cw_message_id: int, status: str, external_error: str | None = None) -> None:
    """Queue a status update of an agent's message (sent, delivered, read, failed)."""
    chatwoot_queue(connection).enqueue(
        STATUS_JOB, account_id, conversation_id, cw_message_id, status, external_error,
        job_timeout=60, result_ttl=_RESULT_TTL, failure_ttl=_FAILURE_TTL,
        retry=Retry(max=5, interval=[2, 5, 15, 30, 60]),
        description=f"status {status} of message {cw_message_id}")


def schedule_failure_note(connection: redis.Redis, instance_id: str, chat_jid: str, *,
                          delay_s: float) -> None:
    """Queue the note telling a chat's failures held back by the once-a-minute rule."""
    chatwoot_queue(connection).enqueue_in(
        timedelta(seconds=delay_s), FAILURE_NOTE_JOB, instance_id, chat_jid, job_timeout=60,
        result_ttl=_RESULT_TTL, failure_ttl=_FAILURE_TTL,
        description=f"failure note for {instance_id} {chat_jid}")
