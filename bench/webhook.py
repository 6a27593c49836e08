"""How fast `ponte serve` answers Chatwoot's webhooks under load (issue 5: p99 ≤ 20 ms at 200/s).

Chatwoot gives a webhook 5 seconds and marks the agent's message failed for good when the answer
is late, so the answer must not wait for WhatsApp: serve verifies the signature, deduplicates,
writes the message to the instance's outbox and answers; the send happens after.

Set-up: real `ponte serve` + `ponte worker`, a throwaway redis-server, the fake Chatwoot and the
scripted sidecar (a linked number that answers every send at once), and agent-started
conversations with a hundred customers. The agent messages are created in the fake Chatwoot
beforehand (its webhooks then go nowhere) and their `message_created` bodies kept; the load
generator then POSTs those bodies, signed at send time exactly as Chatwoot signs them, at a fixed
rate (open loop: each request leaves at its scheduled time whether or not earlier ones were
answered), each on a new connection as Chatwoot's RestClient does. Latency is from the moment a
request leaves to its answer; "late start" is how far the generator fell behind its schedule
(when it is large, the figures understate the wait a real sender would see).

While the load runs, serve also does the send: it reads each message from the outbox, hands it
to the sidecar and records the result, on the same event loop that answers the webhooks. Every
webhook is a message to relay (the most work a webhook causes); in production a good share of
Chatwoot's webhooks are cheaper (notes, status echoes, our own posts, ignored at once).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench.infra import BenchError, RedisServer, settings_factory, wait_until
from bench.report import Section, Table
from bench.stats import fmt_ms, percentile
from tests.conftest import scripted_sidecar_command, write_script
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot

NOWHERE = "http://127.0.0.1:9/webhook"  # the discard port: refused at once


@dataclass(frozen=True)
class Step:
    rate: float  # webhooks per second
    seconds: float


@dataclass
class Options:
    steps: tuple[Step, ...] = (Step(50, 10), Step(200, 20), Step(400, 10))
    concurrency: int = 5  # CHATWOOT_QUEUE_CONCURRENCY (the worker is idle here)
    conversations: int = 100  # the agents' messages are spread over this many customers


@dataclass
class StepResult:
    step: Step
    latencies: list[float] = field(default_factory=list)
    late_starts: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0  # first request out → last answer in
    drained_after: float = 0.0  # first request out → last send_text at the sidecar
    sent: int = 0  # distinct messages the sidecar was asked to send
    serve_cpu: float = 0.0  # seconds of CPU serve used during the step and its drain
    accepted: set[int] = field(default_factory=set)  # indexes of the bodies answered 2xx

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))


@dataclass
class WebhookResults:
    steps: list[StepResult] = field(default_factory=list)


class _Bench:
    def __init__(self, desk: Desk, control: Path) -> None:
        self.desk = desk
        self.fake = desk.fake
        self.control = control
        self.secret: str = desk.inbox["secret"]
        self.url = f"{desk.base}/webhook/chatwoot"

    def serve_cpu(self) -> float:
        times = psutil.Process(self.desk.serve.proc.pid).cpu_times()
        return float(times.user + times.system)

    def sends(self) -> set[str]:
        record = self.control / f"{self.desk.instance}.commands.jsonl"
        if not record.exists():
            return set()
        return {c["text"] for c in map(json.loads, record.read_text().splitlines())
                if c["type"] == "send_text"}

    def conversations(self, count: int) -> list[int]:
        """Agent-started conversations with `count` customers: a busy desk answers many at
        once (and Chatwoot refuses a 201st message a minute in one conversation)."""
        inbox = self.desk.inbox["id"]
        return [int(self.fake.create_conversation_for(f"+55119{k:08d}", inbox)["id"])
                for k in range(count)]

    def bodies(self, conversations: list[int], count: int, tag: str) -> list[bytes]:
        """`count` real agent messages, their webhooks sent nowhere: the bodies to replay."""
        inbox = self.desk.inbox["id"]
        self.fake.update_inbox(inbox, webhook_url=NOWHERE)
        try:
            texts = {f"{tag}-{k}" for k in range(count)}
            for k in range(count):
                self.fake.agent_message(conversations[k % len(conversations)], f"{tag}-{k}")
            self.fake.flush_webhooks(timeout=120)
        finally:
            self.fake.update_inbox(inbox, webhook_url=self.url)
        found = [d.body for d in self.fake.deliveries_for("message_created", url=NOWHERE)
                 if d.payload.get("content") in texts]
        if len(found) != count:
            raise BenchError(f"expected {count} message_created bodies, got {len(found)}")
        return found

    def headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        digest = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body,
                          hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-Chatwoot-Delivery": str(uuid.uuid4()),
                "X-Chatwoot-Timestamp": timestamp, "X-Chatwoot-Signature": f"sha256={digest}"}

    async def fire(self, step: Step, bodies: list[bytes], result: StepResult) -> None:
        # Plain HTTP/1.1 on raw sockets, a new connection per webhook and `Connection: close`,
        # as Chatwoot's RestClient sends them: an HTTP client library here would spend more CPU
        # than serve does, on the same two cores.
        url = urlsplit(self.url)
        host, port = url.hostname or "127.0.0.1", url.port or 80

        async def one(index: int, body: bytes, due: float) -> None:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            head = "".join(f"{k}: {v}\r\n" for k, v in self.headers(body).items())
            request = (f"POST {url.path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
                       f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            began = time.monotonic()
            result.late_starts.append(max(0.0, began - due))
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout=10)
                try:
                    writer.write(request + body)
                    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
                finally:
                    writer.close()
                parts = status_line.split()
                status = parts[1].decode() if len(parts) > 1 else "no answer"
                if status.startswith("2"):
                    result.accepted.add(index)
            except (OSError, TimeoutError) as err:
                status = type(err).__name__
            result.latencies.append(time.monotonic() - began)
            result.statuses[status] = result.statuses.get(status, 0) + 1

        start = time.monotonic() + 0.2
        await asyncio.gather(*(one(k, body, start + k / step.rate)
                               for k, body in enumerate(bodies)))
        result.elapsed = time.monotonic() - start

    def step(self, conversations: list[int], step: Step, index: int) -> StepResult:
        count = int(step.rate * step.seconds)
        tag = f"load{index}"
        bodies = self.bodies(conversations, count, tag)
        print(f"  {step.rate:.0f} webhooks/s for {step.seconds:.0f} s ({count} requests)…",
              flush=True)
        result = StepResult(step)
        cpu_before = self.serve_cpu()
        begun = time.monotonic()
        # The generator's own garbage collector (thousands of tasks in flight) must not stall
        # it mid-request: that would show up as serve's latency.
        gc.disable()
        try:
            asyncio.run(self.fire(step, bodies, result))
        finally:
            gc.enable()
        # What was answered 2xx must reach WhatsApp; what was not, Chatwoot marks failed.
        wanted = {f"{tag}-{k}" for k in result.accepted}
        wait_until(lambda: wanted <= self.sends(), timeout=120 + count / 20,
                   what=f"all {len(wanted)} accepted messages at the sidecar", interval=0.1)
        result.drained_after = time.monotonic() - begun - 0.2
        result.sent = len(wanted & self.sends())
        result.serve_cpu = self.serve_cpu() - cpu_before
        ordered = sorted(result.latencies)
        print(f"    p50 {fmt_ms(percentile(ordered, 0.5))}, p99 {fmt_ms(percentile(ordered, 0.99))}"
              f", max {fmt_ms(ordered[-1])}; non-2xx {result.errors}; all sent after "
              f"{result.drained_after:.1f} s", flush=True)
        return result


def run(fake: FakeChatwoot, work: Path, redis: RedisServer, opts: Options) -> WebhookResults:
    control = work / "webhook-control"
    ready = {"emit": {"type": "ready", "protocol": 1, "sidecar": "scripted",
                      "baileys": "7.0.0-rc14", "pid": "$pid"}}
    opened = {"emit": {"type": "connection", "state": "open",
                       "me": {"id": "5511999990000:3@s.whatsapp.net", "lid": None,
                              "name": "Loja"}}}
    script = write_script(work / "webhook-sidecar.jsonl", [ready, opened])
    make = settings_factory(work / "webhook-data", redis.url,
                            chatwoot_queue_concurrency=opts.concurrency)
    results = WebhookResults()
    with open_desk(fake, make, work, baileys_sidecar_command=scripted_sidecar_command(
            control, script)) as desk:
        desk.command("erga")
        wait_until(lambda: desk.status().get("status") == "open", timeout=30,
                   what="the number open")
        bench = _Bench(desk, control)
        conversations = bench.conversations(opts.conversations)
        for index, step in enumerate(opts.steps):
            results.steps.append(bench.step(conversations, step, index))
        if fake.internal_errors:
            raise BenchError("the fake Chatwoot crashed:\n" + "\n".join(fake.internal_errors))
    return results


def section(results: WebhookResults) -> Section:
    table = Table(["rate", "requests", "non-2xx", "p50", "p90", "p99", "max",
                   "late start p99", "all sent to WhatsApp after", "serve CPU per webhook"])
    for r in results.steps:
        ordered = sorted(r.latencies)
        late = sorted(r.late_starts)
        table.add(f"{r.step.rate:.0f}/s for {r.step.seconds:.0f} s", r.requests,
                  ", ".join(f"{n}×{s}" for s, n in sorted(r.statuses.items())
                            if not s.startswith("2")) or "0",
                  fmt_ms(percentile(ordered, 0.5)), fmt_ms(percentile(ordered, 0.9)),
                  fmt_ms(percentile(ordered, 0.99)), fmt_ms(ordered[-1]),
                  fmt_ms(percentile(late, 0.99)), f"{r.drained_after:.1f} s",
                  fmt_ms(r.serve_cpu / max(1, r.requests)))
    notes = [f"at {r.step.rate:.0f}/s: {len(r.accepted)} of {r.requests} webhooks answered 2xx, "
             f"and all {r.sent} of those messages reached the sidecar" for r in results.steps]
    return Section("5. Chatwoot's webhooks: answer latency under load",
                   how=_HOW, tables=[table], notes=notes)


_HOW = """\
Real `ponte serve` answering signed `message_created` webhooks (each one an agent's message to
relay) for one linked number, POSTed at a fixed rate by an open-loop generator (plain HTTP/1.1, a
new connection per webhook, as Chatwoot's RestClient does). Latency is request sent → status line
received, on loopback; "late start" is how far behind its schedule the generator sent (it shares
the two CPUs with serve, the worker, Redis and the sidecar; its garbage collector is off while it
fires). The target is p99 ≤ 20 ms at 200 webhooks/s. Serve also sends each message to the
(scripted) sidecar meanwhile, on the same event loop. "All sent after" is from the first request
to the last message handed to the sidecar; "serve CPU" is serve's user + system time over the
step and its drain, divided by the requests. `bench/webhook.py` has the details.
"""
