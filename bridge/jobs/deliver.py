"""The drain job: posts one mailbox's items into Chatwoot, in order, each exactly once.

Protocol (see store/mailbox.py): take the mailbox lock; handle the head item; record its effect
(mapping); pop it; repeat. After releasing the lock, look again: an item appended while we were
finishing would otherwise wait for the sweeper. A transient failure (Chatwoot 5xx/429/timeout,
auth) leaves the item at the head and schedules a retry with backoff (at least what a 429's
`Retry-After` asks, capped); after `BULLMQ_JOB_ATTEMPTS` attempts, or at once for a permanent
failure, the item goes to the (capped) failed list with a private note in its conversation (at
most one a minute per chat, see notes.report_failure), and the chat goes on.

Chatwoot telling us to slow down (429, or 422 "Too many messages": more than 200 messages a
minute in one conversation) is no failure: the item stays at the head, the mailbox pauses (longer
each time in a row, up to Chatwoot's one-minute window, after which every slot is free again)
and no attempt is counted. A flooded chat thus drains at Chatwoot's pace, in order; other chats
have mailboxes and jobs of their own and do not wait for it.

Redis going away is not a failure of the item: it stays at the head of its mailbox (nothing is
popped before its effect is recorded), the job waits for Redis and goes on under the same lock
when it can, and when Redis stays away the sweeper re-schedules the mailbox later.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from loguru import logger
from redis.exceptions import LockError
from redis.lock import Lock

from bridge import metrics
from bridge.chatwoot.identity import Identity
from bridge.errors import (
    ChatwootAuthError,
    ChatwootThrottled,
    ChatwootUnavailable,
    PonteError,
)
from bridge.ids import InstanceId
from bridge.jobs import notes, runtime, wa_messages
from bridge.jobs.queues import schedule_drain
from bridge.jobs.runtime import WorkerContext
from bridge.store import failed, keys
from bridge.store.connection import unavailable
from bridge.store.mailbox import ItemKind, Mailbox, MailboxItem

# Short, and kept alive by a renewal thread while the job runs: a worker killed mid-job stops
# renewing, and its chat resumes within this long instead of waiting out a long TTL.
LOCK_TTL_SECONDS = 15
LOCK_RENEW_SECONDS = 5
# A drain hands over after this long (a continuation job takes the rest): one busy chat must
# neither outlive RQ's job timeout nor keep a worker from every other chat.
DRAIN_BUDGET_SECONDS = 60.0
# A help desk cannot have a chat wait many minutes per attempt: flaky Chatwoot is retried at
# least once a minute until the attempts run out.
_MAX_BACKOFF_SECONDS = 60.0
# A 429's Retry-After is honoured up to this: a proxy asking for an hour must not park a chat.
MAX_RETRY_AFTER_SECONDS = 120.0
# A throttled mailbox first pauses this long, doubling each time in a row, up to Chatwoot's
# per-conversation window (Message#validate_conversation_message_limit counts the last minute):
# after a whole window every slot is free, so waiting longer would only slow the chat down.
THROTTLE_FIRST_SECONDS = 2.0
THROTTLE_MAX_SECONDS = 60.0
# The failed list shows only this much of an error's text (it may quote the message).
REASON_MAX_CHARS = 200
# How long a drain that lost Redis waits for it before leaving the mailbox to the sweeper.
REDIS_WAIT_SECONDS = 60.0
_REDIS_PROBE_SECONDS = 0.25


def drain(mailbox_key: str) -> int:
    """RQ job: drain `mailbox_key`; returns how many items it handled."""
    ctx = runtime.current()
    mailbox = Mailbox(ctx.redis, mailbox_key)
    handled = 0
    while True:
        lock = ctx.redis.lock(keys.mailbox_lock(mailbox_key), timeout=LOCK_TTL_SECONDS,
                              thread_local=False)  # the renewal thread must see the token
        try:
            if not lock.acquire(blocking=False):
                return handled  # another job holds it and will look again after releasing
        except Exception as err:
            if not unavailable(err) or not _redis_came_back(ctx.redis):
                raise
            continue
        try:
            count, retry_scheduled = _drain_holding(ctx, mailbox, lock)
            handled += count
        finally:
            _release(ctx, lock, mailbox_key)
        if retry_scheduled is None:
            continue  # the lock was lost during an outage: take it again
        try:
            if retry_scheduled or mailbox.forget_if_empty():
                return handled
        except Exception as err:
            if not unavailable(err) or not _redis_came_back(ctx.redis):
                raise


def _drain_holding(ctx: WorkerContext, mailbox: Mailbox, lock: Lock) -> tuple[int, bool | None]:
    """Drain under `lock`, riding out Redis outages: (items handled, a later job continues it),
    or None for the second when the lock was lost meanwhile."""
    handled = 0
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    while True:
        try:
            with _renewing(lock, mailbox):
                count, retry_scheduled = _drain_locked(ctx, mailbox, deadline)
            return handled + count, retry_scheduled
        except Exception as err:
            if not unavailable(err):
                raise
            logger.bind(mailbox=mailbox.key, error=type(err).__name__).warning(
                "Redis went away while draining; the item stays at the head of its mailbox")
            if not _redis_came_back(ctx.redis):
                raise  # the job ends; the sweeper re-schedules the mailbox once Redis is back
            try:
                lock.reacquire()  # still ours after the outage? then go on at once
            except LockError:
                return handled, None


def _redis_came_back(connection: redis.Redis) -> bool:
    """Wait up to REDIS_WAIT_SECONDS for Redis to answer again."""
    deadline = time.monotonic() + REDIS_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            connection.ping()
            return True
        except Exception as err:
            if not unavailable(err):
                raise
            time.sleep(_REDIS_PROBE_SECONDS)
    return False


def _release(ctx: WorkerContext, lock: Lock, mailbox_key: str) -> None:
    """Release the mailbox lock, riding out an outage: a lock left behind would turn this job's
    own next attempt away ("another job holds it") and leave the mailbox for its TTL."""
    for _ in range(2):
        try:
            lock.release()
            return
        except LockError:
            logger.bind(mailbox=mailbox_key).warning("Mailbox lock expired while draining")
            return
        except Exception as err:
            if not unavailable(err):
                raise
            if not _redis_came_back(ctx.redis):
                return  # Redis stayed away: the lock expires by itself within its TTL


@contextmanager
def _renewing(lock: Lock, mailbox: Mailbox) -> Iterator[None]:
    """Keep the lock, and the "a drain is coming" flag, alive while the job runs. The flag stays
    set for the whole drain (cleared only when the mailbox is found empty), so appends during a
    drain do not each queue a job of their own."""
    stop = threading.Event()
    mailbox.keep_scheduled()

    def renew() -> None:
        while not stop.wait(LOCK_RENEW_SECONDS):
            try:
                lock.reacquire()
                mailbox.keep_scheduled()
            except LockError:
                logger.warning("Lost the mailbox lock while draining")
                return
            except Exception as err:  # Redis away: try again at the next tick
                if not unavailable(err):
                    raise

    thread = threading.Thread(target=renew, name="mailbox-lock-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _drain_locked(ctx: WorkerContext, mailbox: Mailbox, deadline: float) -> tuple[int, bool]:
    """Handle items until the mailbox is empty; True when a later job continues it."""
    handled = 0
    while (item := mailbox.head()) is not None:
        with logger.contextualize(mailbox=mailbox.key, item_id=item.id):
            try:
                _handle(ctx, item)
            except Exception as err:  # edge of the job: every failure is classified here
                if unavailable(err):
                    raise  # not the item's fault: it stays where it is (see drain)
                if isinstance(err, ChatwootThrottled):
                    _pause(ctx, mailbox, err)
                    return handled, True
                if _retryable(err) and _schedule_retry(ctx, mailbox, item, err):
                    return handled, True
                _fail(ctx, mailbox, item, err)
            mailbox.pop(item)
            handled += 1
        if time.monotonic() > deadline:  # checked after an item: every job makes progress
            schedule_drain(ctx.redis, mailbox.key)
            return handled, True
    return handled, False


def _handle(ctx: WorkerContext, item: MailboxItem) -> None:
    if item.kind is ItemKind.WA_MESSAGE:
        wa_messages.deliver(ctx, item)
    elif item.kind is ItemKind.NOTE:
        notes.post(ctx, item)
    elif item.kind is ItemKind.IDENTITY:
        Identity(ctx.chatwoot, ctx.redis).merge_lid(
            InstanceId(item.payload["instance_id"]), item.payload["lid"], item.payload["pn"])
    elif item.kind is ItemKind.AVATAR:
        Identity(ctx.chatwoot, ctx.redis).set_avatar(
            InstanceId(item.payload["instance_id"]), item.payload["chat_jid"],
            item.payload["url"])


def _retryable(err: Exception) -> bool:
    # A refused token is an operator's fix away: keep the messages waiting, not failed.
    return isinstance(err, ChatwootAuthError) or (isinstance(err, PonteError) and err.retryable)


def backoff_seconds(base_ms: int, attempt: int) -> float:
    delay = min(base_ms / 1000 * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
    return float(delay * random.uniform(0.8, 1.2))


def throttle_seconds(streak: int, retry_after: float | None = None, *,
                     first_s: float = THROTTLE_FIRST_SECONDS) -> float:
    """The pause after the `streak`-th "slow down" in a row."""
    delay = min(first_s * 2 ** (streak - 1), THROTTLE_MAX_SECONDS)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS) + 1.0)
    return float(delay)


def _pause(ctx: WorkerContext, mailbox: Mailbox, err: ChatwootThrottled) -> None:
    """Chatwoot asked this conversation to slow down: try the same head again later, without
    counting an attempt (the item did nothing wrong; failing it would lose the flood)."""
    streak = mailbox.record_throttle(ttl_s=int(THROTTLE_MAX_SECONDS * 4))
    # A 422 "Too many messages" is this conversation's one-minute budget: seconds apart. A 429
    # is Chatwoot's (or a proxy's) rate limit for the whole client: it says how long in
    # Retry-After, and without it the usual retry backoff applies.
    first = (THROTTLE_FIRST_SECONDS if err.status == 422
             else ctx.settings.bullmq_job_backoff_delay / 1000)
    delay = throttle_seconds(streak, err.retry_after, first_s=first)
    logger.bind(streak=streak, delay_s=round(delay, 1), status=err.status).warning(
        "Chatwoot throttled the conversation; pausing its mailbox")
    # As in _schedule_retry: the sweeper must not cut the pause short.
    ctx.redis.set(keys.mailbox_scheduled(mailbox.key), "1", ex=int(delay) + 60)
    schedule_drain(ctx.redis, mailbox.key, delay_s=delay)


def _schedule_retry(ctx: WorkerContext, mailbox: Mailbox, item: MailboxItem,
                    err: Exception) -> bool:
    attempt = mailbox.record_attempt(item)
    if attempt >= ctx.settings.bullmq_job_attempts:
        return False
    delay = backoff_seconds(ctx.settings.bullmq_job_backoff_delay, attempt)
    if isinstance(err, ChatwootUnavailable) and err.retry_after is not None:
        # + 1: RQ keeps a scheduled job's time in whole seconds, rounded down.
        delay = max(delay, min(err.retry_after, MAX_RETRY_AFTER_SECONDS) + 1.0)
    logger.bind(attempt=attempt, delay_s=round(delay, 1), error=type(err).__name__).warning(
        "Delivery failed, will retry")
    # The flag tells the sweeper a job is coming: it must not cut the backoff short.
    ctx.redis.set(keys.mailbox_scheduled(mailbox.key), "1", ex=int(delay) + 60)
    schedule_drain(ctx.redis, mailbox.key, delay_s=delay)
    return True


def _fail(ctx: WorkerContext, mailbox: Mailbox, item: MailboxItem, err: Exception) -> None:
    """Record a final failure where operators look, and tell the agents in the conversation.

    The entry keeps the whole item: `ponte jobs retry` puts it back in its mailbox, and it is
    the only copy of the WhatsApp message left. What is bounded is the list (FAILED_MAX_ENTRIES,
    oldest dropped) and the error text kept with it; listings show no message text at all."""
    reason = (str(err) or type(err).__name__)[:REASON_MAX_CHARS]
    logger.bind(error=type(err).__name__, kind=item.kind.value).error(
        "Delivery failed for good; moved to the failed list")
    at = time.time()
    instance = str(item.payload.get("instance_id", ""))  # notes belong to no instance
    # `id` names the entry for `ponte jobs retry` (an item may fail again later, hence `at`).
    entry = {"id": f"{item.id}-{int(at * 1000)}", "instance": instance, "mailbox": mailbox.key,
             "item": json.loads(item.dumps()), "error": type(err).__name__, "reason": reason,
             "at": at}
    with ctx.redis.pipeline(transaction=True) as pipe:
        metrics.failed_for_good(pipe, instance, type(err).__name__)
        failed.push(pipe, json.dumps(entry, ensure_ascii=False),
                    keys.stats(metrics.FAILED_ITEMS))
        pipe.execute()
    if item.kind is ItemKind.WA_MESSAGE:
        wa_messages.report_failure(ctx, item, reason)
