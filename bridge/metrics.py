"""Prometheus metrics: counted in Redis where things happen, exported by `GET /metrics`.

Serve and the RQ workers are different processes (and the worker pool forks), so what happens to
messages is counted in Redis hashes under `ponte:stats:<name>` by whichever process sees it, in
one pipelined call per message (serve batches its own, see Recorder); the counts survive restarts
and every serve exports the same totals. At scrape time serve reads them and adds what only it
knows (its sidecars, instance states, reconnects) and what Redis and RQ hold (mailboxes, queues,
workers).

Hash layout: a counter's field is its label values joined by TAB; a histogram has one field per
bucket, `<labels>TAB<le>`, not cumulative (an observation increments exactly one bucket, +Inf
included, so the count is their sum), and `<labels>TABsum`. Recording never raises: a metric lost
to a Redis hiccup is better than a message retried for it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

import psutil
import redis
import redis.asyncio as aioredis
from loguru import logger
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import Response

from bridge.attachments import AttachmentError
from bridge.convert import baileys
from bridge.errors import SidecarError
from bridge.sidecar.protocol import MessageEvent
from bridge.store import keys

WA_TO_CW = "wa_to_cw"
CW_TO_WA = "cw_to_wa"
REDIS_ERRORS = (redis.RedisError, ConnectionError, OSError, TimeoutError)


class Tally:
    """Increments added up in memory, written later as one HINCRBY(FLOAT) per field (Recorder):
    a hundred webhooks' recordings touch a dozen fields."""

    def __init__(self) -> None:
        self.ints: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.floats: defaultdict[tuple[str, str], float] = defaultdict(float)

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.ints[name, key] += amount

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> None:
        self.floats[name, key] += amount

    def __bool__(self) -> bool:
        return bool(self.ints or self.floats)

    def write(self, pipe: Pipe) -> None:
        for (name, key), count in self.ints.items():
            pipe.hincrby(name, key, count)
        for (name, key), amount in self.floats.items():
            pipe.hincrbyfloat(name, key, amount)


# Where recordings go: a pipeline (both kinds queue commands synchronously) or a Tally.
Pipe = redis.client.Pipeline | aioredis.client.Pipeline | Tally


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`0.5`, `+Inf`)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _field(values: Iterable[object]) -> str:
    return "\t".join(str(v).replace("\t", " ") for v in values)


@dataclass(frozen=True, slots=True)
class RedisCounter:
    name: str  # without `_total`, which prometheus-client appends
    help: str
    labels: tuple[str, ...]
    stat: str  # the hash is keys.stats(stat)

    def inc(self, pipe: Pipe, *values: object, by: int = 1) -> None:
        pipe.hincrby(keys.stats(self.stat), _field(values), by)

    def family(self, raw: Mapping[str, str]) -> Metric:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for field, value in sorted(raw.items()):
            values = field.split("\t")
            if len(values) == len(self.labels):
                family.add_metric(values, float(value))
        return family


@dataclass(frozen=True, slots=True)
class RedisHistogram:
    name: str
    help: str
    labels: tuple[str, ...]
    stat: str
    buckets: tuple[float, ...]

    def observe(self, pipe: Pipe, value: float, *values: object) -> None:
        value = max(0.0, value)
        le = next((b for b in self.buckets if value <= b), math.inf)
        prefix = _field(values)
        pipe.hincrby(keys.stats(self.stat), f"{prefix}\t{_le(le)}", 1)
        pipe.hincrbyfloat(keys.stats(self.stat), f"{prefix}\tsum", value)

    def family(self, raw: Mapping[str, str]) -> Metric:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
        series: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            prefix, _, last = field.rpartition("\t")
            series.setdefault(prefix, {})[last] = float(value)
        for prefix, fields in sorted(series.items()):
            values = prefix.split("\t") if self.labels else []
            if len(values) != len(self.labels):
                continue
            running, buckets = 0.0, []
            for le in (*self.buckets, math.inf):
                running += fields.get(_le(le), 0.0)
                buckets.append((_le(le), running))
            family.add_metric(values, buckets, fields.get("sum", 0.0))
        return family


RELAYED = RedisCounter(
    "ponte_messages_relayed", "Messages relayed, by instance, direction and kind (WhatsApp "
    "content type towards Chatwoot; text, image, video, audio or document towards WhatsApp).",
    ("instance", "direction", "kind"), "relayed")
FAILURES = RedisCounter(
    "ponte_failures", "Work that failed for good: towards Chatwoot by error class (messages "
    "and Ponte's notes), towards WhatsApp by reason code.", ("direction", "reason"), "failures")
UNDECRYPTABLE = RedisCounter(  # written by jobs/wa_messages.py (hash instance -> count)
    "ponte_undecryptable_messages", "Messages WhatsApp could not decrypt (a note was posted).",
    ("instance",), "undecryptable")
RELAY_LATENCY = RedisHistogram(
    "ponte_relay_latency_seconds", "wa_to_cw: WhatsApp's timestamp (whole seconds) to Chatwoot "
    "accepting the post; cw_to_wa: the webhook's arrival to WhatsApp accepting the send.",
    ("direction",), "relay_latency", (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 1800))
WEBHOOK_DURATION = RedisHistogram(
    "ponte_webhook_duration_seconds", "Time to answer Chatwoot's webhook, by outcome.",
    ("outcome",), "webhook_duration", (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
FAILED_ITEMS = "failed_items"  # hash instance -> entries now in ponte:failed ("" for notes)
REDIS_METRICS: tuple[RedisCounter | RedisHistogram, ...] = (
    RELAYED, FAILURES, UNDECRYPTABLE, RELAY_LATENCY, WEBHOOK_DURATION)


# --- recording --------------------------------------------------------------------------------
def _sync(connection: redis.Redis, record: Callable[[Pipe], None]) -> None:
    try:
        with connection.pipeline(transaction=False) as pipe:
            record(pipe)
            pipe.execute()
    except REDIS_ERRORS as err:
        logger.bind(error=type(err).__name__).debug("Metric not recorded")


async def _async(connection: aioredis.Redis, record: Callable[[Pipe], None]) -> None:
    try:
        async with connection.pipeline(transaction=False) as pipe:
            record(pipe)
            await pipe.execute()
    except REDIS_ERRORS as err:
        logger.bind(error=type(err).__name__).debug("Metric not recorded")


class Recorder:
    """Serve's recordings, added up in memory and written every FLUSH_SECONDS in one pipeline
    with one command per counter field touched. Writing each webhook's and send's recordings
    on their own cost a Redis round trip each, and packing a quarter second's worth of them
    into one pipeline stalled the event loop (and the webhook answers waiting on it) for ~10 ms.
    A crash loses at most FLUSH_SECONDS of counts."""

    FLUSH_SECONDS = 0.25

    def __init__(self, connection: aioredis.Redis) -> None:
        self._connection = connection
        self._tally = Tally()
        self._flusher: asyncio.Task[None] | None = None

    def add(self, record: Callable[[Pipe], None]) -> None:
        record(self._tally)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_later(), name="metrics-flush")

    async def _flush_later(self) -> None:
        # Recordings added while a write is in flight find this task still running and start
        # no other: keep going until a write leaves nothing behind.
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            await self.flush()
            if not self._tally:
                return

    async def flush(self) -> None:
        tally, self._tally = self._tally, Tally()
        if tally:
            await _async(self._connection, tally.write)

    async def close(self) -> None:
        """At shutdown: what is pending is written, not lost."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()


def relayed_to_chatwoot(connection: redis.Redis, instance_id: str, event: MessageEvent) -> None:
    """A WhatsApp message is in Chatwoot (worker). History (`append`) has no relay latency."""
    sent = baileys.timestamp(event.message) if event.upsert == "notify" else None

    def record(pipe: Pipe) -> None:
        RELAYED.inc(pipe, instance_id, WA_TO_CW, event.content_type or "none")
        if sent is not None:
            RELAY_LATENCY.observe(pipe, time.time() - sent, WA_TO_CW)
    _sync(connection, record)


def relayed_to_whatsapp(recorder: Recorder, instance_id: str, kind: str, since: float) -> None:
    """One part of an agent's message went out (serve); `since`: the webhook's arrival."""
    latency = time.time() - since

    def record(pipe: Pipe) -> None:
        RELAYED.inc(pipe, instance_id, CW_TO_WA, kind)
        RELAY_LATENCY.observe(pipe, latency, CW_TO_WA)
    recorder.add(record)


def send_failure_reason(failed: BaseException) -> str:
    """A stable code for a part not sent, from what caused it (texts are translated)."""
    cause = failed.__cause__
    if isinstance(cause, SidecarError):
        return cause.code
    if isinstance(cause, AttachmentError):
        return f"attachment_{cause.reason}"
    return "not_connected"  # BAILEYS_SEND_WAIT_MS passed without a connection


def send_failed(recorder: Recorder, failed: BaseException) -> None:
    reason = send_failure_reason(failed)
    recorder.add(lambda pipe: FAILURES.inc(pipe, CW_TO_WA, reason))


UNEXPECTED_ERROR = "unexpected_error"


def send_crashed(recorder: Recorder) -> None:
    """An agent's message failed on an error of Ponte's own (a bug), not on WhatsApp's answer."""
    recorder.add(lambda pipe: FAILURES.inc(pipe, CW_TO_WA, UNEXPECTED_ERROR))


def failed_for_good(pipe: Pipe, instance_id: str, error: str) -> None:
    """In the pipeline that appends to `ponte:failed` (deliver.py): count it, and keep the
    per-instance number of entries that /global-status shows."""
    FAILURES.inc(pipe, WA_TO_CW, error)
    pipe.hincrby(keys.stats(FAILED_ITEMS), instance_id, 1)


Endpoint = Callable[[Request], Awaitable[Response]]


def timed_webhook(endpoint: Endpoint) -> Endpoint:
    """Time the webhook's answer; recorded after the response is sent, so Chatwoot never waits
    on it. Outcome: the answer's `status` (queued, ignored, failed, command), else its HTTP code.
    A refusal that reaches the agents (`failed`) also counts as a failure, by its reason."""
    @wraps(endpoint)
    async def timed(request: Request) -> Response:
        started = time.perf_counter()
        response = await endpoint(request)
        elapsed = time.perf_counter() - started
        outcome, reason = str(response.status_code), None
        if response.status_code == 200 and response.media_type == "application/json":
            body = json.loads(bytes(response.body))
            outcome = str(body.get("status", outcome))
            if outcome == "failed":
                reason = "_".join(str(body.get("reason", "rejected")).lower().split())

        def record(pipe: Pipe) -> None:
            WEBHOOK_DURATION.observe(pipe, elapsed, outcome)
            if reason is not None:
                FAILURES.inc(pipe, CW_TO_WA, reason)
        request.app.state.services.recorder.add(record)
        return response
    return timed


# Serve-local: a connection's life is the serve process's business; counted in memory.
_reconnects: Counter[tuple[str, str]] = Counter()


def reconnect(instance_id: str, close_code: int | None) -> None:
    """The WhatsApp connection closed (not by us); the sidecar reconnects or is restarted."""
    _reconnects[(instance_id, "none" if close_code is None else str(close_code))] += 1


_outbound_restarts: Counter[str] = Counter()


def outbound_restart(instance_id: str) -> None:
    """An instance's outbox consumer crashed and was started again (relay/outbound.py)."""
    _outbound_restarts[instance_id] += 1


# --- reading ----------------------------------------------------------------------------------
class CpuSampler:
    """psutil's cpu_percent compares with the previous call on the same Process object, so one
    object is kept per sidecar pid (forgotten once the pid is not asked about)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pids: Iterable[int]) -> dict[int, tuple[float | None, float]]:
        """pid -> (CPU % since the previous sample, None the first time; CPU seconds)."""
        out: dict[int, tuple[float | None, float]] = {}
        seen: dict[int, psutil.Process] = {}
        for pid in pids:
            try:
                proc = self._procs.get(pid)
                first = proc is None
                proc = proc or psutil.Process(pid)
                percent = proc.cpu_percent(interval=None)
                times = proc.cpu_times()
            except psutil.Error:
                continue
            seen[pid] = proc
            out[pid] = (None if first else percent, times.user + times.system)
        self._procs = seen
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    depth: int
    oldest_job_age_s: float | None  # of the job at the head of the queue
    scheduled: int  # retries waiting for their time
    failed: int  # RQ's FailedJobRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSample:
    """What Redis and RQ say, for /global-status and /metrics; empty when Redis is down."""

    redis_error: str | None = None
    queues: Mapping[str, QueueStats] | None = None
    workers: int | None = None
    pending_mailboxes: int | None = None  # mailboxes (chats, notes) with work
    mailbox_depth: Mapping[str, int] | None = None  # instance -> WhatsApp items waiting
    note_mailbox_depth: int | None = None
    failed_items: Mapping[str, int] | None = None  # instance -> entries in ponte:failed
    failed_total: int | None = None
    stats: Mapping[str, Mapping[str, str]] | None = None  # the REDIS_METRICS hashes


def rq_stats(url: str, queue_names: Iterable[str]) -> tuple[dict[str, QueueStats], int]:
    """RQ's own view, through its API (blocking: run it in a thread)."""
    from rq import Queue, Worker
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    connection = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        queues = {}
        for name in queue_names:
            queue = Queue(name, connection=connection)
            head = queue.get_job_ids(0, 1)  # (offset, length)
            job = queue.fetch_job(head[0]) if head else None
            enqueued = job.enqueued_at.timestamp() if job and job.enqueued_at else None
            queues[name] = QueueStats(
                depth=queue.count,
                oldest_job_age_s=round(max(0.0, time.time() - enqueued), 3)
                if enqueued is not None else None,
                scheduled=ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
                failed=FailedJobRegistry(queue=queue).count)
        return queues, len(Worker.all(connection=connection))
    finally:
        connection.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def sample_host(connection: aioredis.Redis, url: str, queue_names: Iterable[str],
                      timeout_s: float = 3.0) -> HostSample:
    try:
        return await asyncio.wait_for(_sample_host(connection, url, tuple(queue_names)),
                                      timeout_s)
    except REDIS_ERRORS as err:  # TimeoutError included: wait_for's
        return HostSample(redis_error=f"{type(err).__name__}: {err}"[:300])


async def _sample_host(connection: aioredis.Redis, url: str,
                       queue_names: tuple[str, ...]) -> HostSample:
    mailboxes = sorted(_text(m) for m in await connection.smembers(keys.MAILBOXES_PENDING))
    async with connection.pipeline(transaction=False) as pipe:
        for mailbox in mailboxes:
            pipe.llen(mailbox)
        pipe.llen(keys.FAILED)
        pipe.hgetall(keys.stats(FAILED_ITEMS))
        for metric in REDIS_METRICS:
            pipe.hgetall(keys.stats(metric.stat))
        answers: list[Any] = await pipe.execute()
    depth: Counter[str] = Counter()
    notes = 0
    for mailbox, length in zip(mailboxes, answers, strict=False):
        instance = _mailbox_instance(mailbox)
        if instance is None:
            notes += int(length)
        else:
            depth[instance] += int(length)
    rest = answers[len(mailboxes):]
    failed_items = {_text(k): int(v) for k, v in rest[1].items() if int(v) > 0}
    stats = {metric.stat: {_text(k): _text(v) for k, v in raw.items()}
             for metric, raw in zip(REDIS_METRICS, rest[2:], strict=True)}
    queues, workers = await asyncio.to_thread(rq_stats, url, queue_names)
    return HostSample(queues=queues, workers=workers, pending_mailboxes=len(mailboxes),
                      mailbox_depth=dict(depth),
                      note_mailbox_depth=notes, failed_items=failed_items,
                      failed_total=int(rest[0]), stats=stats)


def _mailbox_instance(mailbox: str) -> str | None:
    """The instance of a chat mailbox (`ponte:mailbox:wa:<instance>:<jid>`); None for notes."""
    parts = mailbox.split(":", 4)
    return parts[3] if len(parts) == 5 and parts[2] == "wa" else None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceSample:
    """What serve knows about one instance at scrape time."""

    instance_id: str
    state: str  # the one-word summary of /global-status
    rss_bytes: int | None
    cpu_seconds: float | None
    last_event_age_s: float | None
    restarts: int
    outbox_depth: int | None
    protocol_errors: int


def families(host: HostSample, instances: Iterable[InstanceSample],
             states: Iterable[str]) -> Iterator[Metric]:
    """Every metric family of one scrape."""
    yield GaugeMetricFamily("ponte_redis_up", "1 when Redis answered this scrape.",
                            value=0 if host.redis_error else 1)
    for metric in REDIS_METRICS:
        yield metric.family((host.stats or {}).get(metric.stat, {}))
    gauges = {name: GaugeMetricFamily(name, text, labels=labels) for name, text, labels in (
        ("ponte_queue_depth", "Jobs waiting in each RQ queue.", ["queue"]),
        ("ponte_queue_oldest_job_age_seconds", "Age of the oldest job waiting in each queue "
         "(0 when none).", ["queue"]),
        ("ponte_queue_scheduled_jobs", "Jobs scheduled for later (retries).", ["queue"]),
        ("ponte_queue_failed_jobs", "Jobs in RQ's failed registry.", ["queue"]),
        ("ponte_mailbox_depth", "WhatsApp messages waiting for Chatwoot, by instance.",
         ["instance"]),
        ("ponte_failed_items", "Entries of the failed list (ponte:failed), by instance "
         "(empty: Ponte's notes).", ["instance"]),
    )}
    for name, stats in sorted((host.queues or {}).items()):
        gauges["ponte_queue_depth"].add_metric([name], stats.depth)
        gauges["ponte_queue_oldest_job_age_seconds"].add_metric(
            [name], stats.oldest_job_age_s or 0.0)
        gauges["ponte_queue_scheduled_jobs"].add_metric([name], stats.scheduled)
        gauges["ponte_queue_failed_jobs"].add_metric([name], stats.failed)
    instances = list(instances)
    known = {i.instance_id for i in instances}  # a known instance shows 0, not nothing
    for name, counts in (("ponte_mailbox_depth", host.mailbox_depth),
                         ("ponte_failed_items", host.failed_items)):
        if counts is not None:
            for instance in sorted(known | set(counts)):
                gauges[name].add_metric([instance], counts.get(instance, 0))
    yield from gauges.values()
    if host.workers is not None:
        yield GaugeMetricFamily("ponte_workers", "RQ workers registered in Redis.",
                                value=host.workers)
    if host.note_mailbox_depth is not None:
        yield GaugeMetricFamily("ponte_note_mailbox_depth", "Ponte's notes waiting for "
                                "Chatwoot.", value=host.note_mailbox_depth)
    yield from _instance_families(instances, tuple(states))


def journal_families(journal: Mapping[str, Any]) -> Iterator[Metric]:
    """The journal of this serve (`Intake.status()`): what waits for Redis, and its history."""
    yield GaugeMetricFamily("ponte_journal_active", "1 while serve journals what it receives "
                            "(Redis unreachable, or the journal being replayed).",
                            value=1 if journal["mode"] == "journal" else 0)
    yield GaugeMetricFamily("ponte_journal_entries", "Operations waiting in the journal for "
                            "Redis.", value=journal["entries"])
    yield GaugeMetricFamily("ponte_journal_bytes", "Size of the journal's records.",
                            value=journal["bytes"])
    yield GaugeMetricFamily("ponte_journal_max_bytes", "The journal's bound "
                            "(SERVER_JOURNAL_MAX_MB).", value=journal["maxBytes"])
    for name, key, text in (
            ("ponte_journal_written", "journaledTotal", "Operations journaled since serve "
             "started."),
            ("ponte_journal_replayed", "replayedTotal", "Journaled operations replayed into "
             "Redis since serve started."),
            ("ponte_journal_parked", "parkedTotal", "Journaled operations moved to the failed "
             "list (their handler kept failing) since serve started."),
            ("ponte_redis_outages", "outages", "Times serve found Redis unreachable and "
             "started journaling, since it started.")):
        yield CounterMetricFamily(name, text, value=journal[key])


def _instance_families(instances: list[InstanceSample],
                       states: tuple[str, ...]) -> Iterator[Metric]:
    state = GaugeMetricFamily("ponte_instance_state", "1 for each instance's current state.",
                              labels=["instance", "state"])
    rss = GaugeMetricFamily("ponte_sidecar_rss_bytes", "Resident memory of each sidecar.",
                            labels=["instance"])
    cpu = CounterMetricFamily("ponte_sidecar_cpu_seconds", "CPU time of each running sidecar "
                              "process (user + system).", labels=["instance"])
    age = GaugeMetricFamily("ponte_sidecar_last_event_age_seconds", "Seconds since each "
                            "sidecar's last frame.", labels=["instance"])
    restarts = CounterMetricFamily("ponte_sidecar_restarts", "Sidecar restarts since serve "
                                   "started.", labels=["instance"])
    outbox = GaugeMetricFamily("ponte_outbox_depth", "Agent messages waiting for WhatsApp.",
                               labels=["instance"])
    errors = CounterMetricFamily("ponte_protocol_errors", "Sidecar lines that were not frames.",
                                 labels=["instance"])
    for sample in instances:
        iid = sample.instance_id
        for name in states:
            state.add_metric([iid, name], 1 if name == sample.state else 0)
        restarts.add_metric([iid], sample.restarts)
        errors.add_metric([iid], sample.protocol_errors)
        for family, value in ((rss, sample.rss_bytes), (cpu, sample.cpu_seconds),
                              (age, sample.last_event_age_s), (outbox, sample.outbox_depth)):
            if value is not None:
                family.add_metric([iid], value)
    reconnects = CounterMetricFamily("ponte_reconnects", "WhatsApp connection closes (not "
                                     "requested by Ponte), by close code, since serve started.",
                                     labels=["instance", "code"])
    for (iid, code), count in sorted(_reconnects.items()):
        reconnects.add_metric([iid, code], count)
    outbound = CounterMetricFamily("ponte_outbound_restarts", "Restarts of an instance's "
                                   "outbox consumer (the sender to WhatsApp) after it crashed, "
                                   "since serve started.", labels=["instance"])
    # A known instance shows 0 rather than nothing, so a first crash is an increase.
    for iid in sorted({s.instance_id for s in instances} | set(_outbound_restarts)):
        outbound.add_metric([iid], _outbound_restarts[iid])
    yield from (state, rss, cpu, age, restarts, outbox, errors, reconnects, outbound)
