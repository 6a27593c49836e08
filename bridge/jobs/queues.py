"""RQ queue names and the enqueue helpers; `rq info --url <REDIS_URL>` shows these queues.

| queue | holds |
|---|---|
| `ponte-chatwoot` | drain jobs, one per mailbox with work: WhatsApp messages and notes to post |
"""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue

CHATWOOT_QUEUE = "ponte-chatwoot"
ALL_QUEUES = (CHATWOOT_QUEUE,)
DRAIN_JOB = "bridge.jobs.deliver.drain"
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
