"""`GET /metrics` after real traffic: real `ponte serve` + `ponte worker`, the fake Chatwoot, the
scripted sidecar; the exposition is read with prometheus-client's own parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bridge.web.app import create_app
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for
from tests.desk import open_desk
from tests.fakes.chatwoot import FakeChatwoot
from tests.test_flow import Flow, frame_message, whatsapp_script
from tests.test_webhook import payload, signed

ADMIN = "adm-metrics-7f3c9e"
CUSTOMER_TEXTS = ("Oi, quero saber do meu pedido", "É o 4512", "Bom dia! Já vou ver.")
REFUSED_TEXT = "Esta mensagem o Chatwoot recusa"
AGENT_TEXT = "Seu pedido 4512 sai hoje."


@contextmanager
def open_flow(fake: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path,
              **overrides: Any) -> Iterator[Flow]:
    """tests/test_flow.py's WhatsApp script, plus a fourth message after the `more` trigger."""
    control = tmp_path / "control"
    script = whatsapp_script(tmp_path / "whatsapp.jsonl")
    with script.open("a") as lines:
        for directive in ({"wait_file": "more"}, frame_message("WAID-0004", REFUSED_TEXT)):
            lines.write(json.dumps(directive) + "\n")
    with open_desk(fake, make_settings, tmp_path,
                   baileys_sidecar_command=scripted_sidecar_command(control, script),
                   **overrides) as desk:
        flow = Flow(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        flow.control = control
        yield flow


def relay_both_ways(flow: Flow) -> int:
    """Link by QR (one 515 on the way), three WhatsApp messages in, one agent reply out, and a
    fourth message Chatwoot refuses (422: failed for good). Returns the conversation id."""
    fake = flow.fake
    flow.command("erga")
    wait_for(lambda: any(n.get("attachments") for n in flow.notes()), timeout=20,
             message="QR note")
    flow.trigger("scanned")
    flow.wait_note("5511999990000")
    flow.trigger("customer_writes")

    def posted() -> list[dict[str, Any]]:
        return [m for m in fake.messages() if (m["source_id"] or "").startswith("WAID-")]
    wait_for(lambda: len(posted()) == 3, timeout=20, message="three messages in Chatwoot")
    conversation_id = int(posted()[0]["conversation_id"])
    fake.agent_message(conversation_id, AGENT_TEXT)
    wait_for(lambda: flow.sidecar_commands("send_text"), timeout=20, message="send_text")
    fake.fail(r"/conversations/\d+/messages$", method="POST", status=422, times=1)
    flow.trigger("more")
    wait_for(lambda: any("WAID-0004" in (m["content"] or "") for m in fake.messages()
                         if m["private"]), timeout=20, message="the failure note")
    fake.flush_webhooks()
    return conversation_id


def scrape(base: str, token: str | None = ADMIN) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    family_name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix(
        "_sum").removesuffix("_bucket")
    for sample in families[family_name].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v
                                              for k, v in labels.items()):
            return float(sample.value)
    return None


def test_metrics_count_real_traffic_both_ways(fake_chatwoot: FakeChatwoot,
                                              make_settings: SettingsFactory,
                                              tmp_path: Path) -> None:
    with open_flow(fake_chatwoot, make_settings, tmp_path, server_admin_token=ADMIN) as flow:
        relay_both_ways(flow)
        assert httpx.get(f"{flow.base}/metrics").status_code == 401
        instance = flow.instance

        def drained() -> dict[str, Any] | None:
            families = scrape(flow.base)
            done = value(families, "ponte_failures_total", direction="wa_to_cw",
                         reason="ChatwootRejected") == 1 and value(
                families, "ponte_queue_depth", queue="ponte-chatwoot") == 0 and value(
                families, "ponte_messages_relayed_total", instance=instance,
                direction="cw_to_wa", kind="text") is not None
            return families if done else None
        # Serve writes its own counts every Recorder.FLUSH_SECONDS: wait for that write too.
        m = wait_for(drained, timeout=20, message="the failure counted, the queue empty")

        # Messages per direction and kind: the refused one is not relayed.
        assert value(m, "ponte_messages_relayed_total", instance=instance,
                     direction="wa_to_cw", kind="conversation") == 3
        assert value(m, "ponte_messages_relayed_total", instance=instance,
                     direction="cw_to_wa", kind="text") == 1
        assert value(m, "ponte_relay_latency_seconds_count", direction="wa_to_cw") == 3
        assert value(m, "ponte_relay_latency_seconds_count", direction="cw_to_wa") == 1
        assert value(m, "ponte_relay_latency_seconds_bucket", direction="cw_to_wa",
                     le="+Inf") == 1
        assert 0 <= (value(m, "ponte_relay_latency_seconds_sum", direction="cw_to_wa")
                     or 0) < 20
        # Webhooks: the command, the agent's reply, and our own posts coming back.
        assert (value(m, "ponte_webhook_duration_seconds_count", outcome="command") or 0) >= 1
        assert value(m, "ponte_webhook_duration_seconds_count", outcome="queued") == 1
        assert (value(m, "ponte_webhook_duration_seconds_count", outcome="ignored") or 0) >= 3
        # The failure, by reason, and on the failed list of its instance.
        assert value(m, "ponte_failed_items", instance=instance) == 1
        # Reconnects by close code: the 515 after the scan.
        assert value(m, "ponte_reconnects_total", instance=instance, code="515") == 1
        # The instance, its sidecar, the host.
        assert value(m, "ponte_instance_state", instance=instance, state="open") == 1
        assert value(m, "ponte_instance_state", instance=instance, state="qr_pending") == 0
        assert (value(m, "ponte_sidecar_rss_bytes", instance=instance) or 0) > 1_000_000
        assert (value(m, "ponte_sidecar_cpu_seconds_total", instance=instance) or 0) > 0
        assert 0 <= (value(m, "ponte_sidecar_last_event_age_seconds", instance=instance)
                     or -1) < 60
        assert value(m, "ponte_mailbox_depth", instance=instance) == 0
        assert value(m, "ponte_outbox_depth", instance=instance) == 0
        assert value(m, "ponte_queue_oldest_job_age_seconds", queue="ponte-chatwoot") == 0
        assert value(m, "ponte_workers") == 2  # CHATWOOT_QUEUE_CONCURRENCY=2
        assert value(m, "ponte_redis_up") == 1
        assert value(m, "ponte_undecryptable_messages_total", instance=instance) is None

        # /global-status shows the same facts per instance and per host.
        headers = {"authorization": f"Bearer {ADMIN}"}
        httpx.get(f"{flow.base}/global-status", headers=headers)  # CPU % needs two samples
        status = httpx.get(f"{flow.base}/global-status", headers=headers).json()
        (row,) = status["instancesGlobal"]
        assert row["status"] == "open" and row["failedCount"] == 1
        assert row["mailboxDepth"] == 0 and row["outboxDepth"] == 0
        assert isinstance(row["cpuPercent"], float) and row["cpuPercent"] >= 0
        assert 0 <= row["lastEventAgeSeconds"] < 60
        assert status["failedCount"] == 1 and status["workers"] == 2
        assert status["redis"] == {"ok": True}
        assert status["queues"] == {"ponte-chatwoot": 0}
        assert status["queueStats"]["ponte-chatwoot"]["oldestJobAgeSeconds"] is None


@dataclass
class App:
    client: TestClient

    def webhook(self, data: dict[str, Any]) -> Any:
        body = json.dumps(data).encode()
        return self.client.post("/webhook/chatwoot", content=body, headers=signed(body))

    def metrics(self) -> dict[str, Any]:
        answer = self.client.get("/metrics")
        assert answer.headers["content-type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(answer.text)}


@pytest.fixture
def app(make_settings: SettingsFactory) -> Iterator[App]:
    with TestClient(create_app(make_settings())) as client:
        yield App(client)


def test_an_agent_message_for_a_stopped_number_counts_as_a_failure(app: App) -> None:
    from bridge.store.registry import InstanceRecord

    services = app.client.app.state.services  # type: ignore[attr-defined]
    app.client.portal.call(services.registry.put,  # type: ignore[union-attr]
                           InstanceRecord.new(1, 7))
    answer = app.webhook(payload("Olá"))
    assert answer.json() == {"status": "failed", "reason": "instance is not running"}
    assert app.webhook(payload("Olá", private=True, message_id=2)).json()["status"] == "ignored"
    m = wait_for(lambda: (lambda f: f if value(f, "ponte_webhook_duration_seconds_count",
                                                outcome="ignored") else None)(app.metrics()),
                 message="the webhooks timed")
    assert value(m, "ponte_failures_total", direction="cw_to_wa",
                 reason="instance_is_not_running") == 1
    assert value(m, "ponte_webhook_duration_seconds_count", outcome="failed") == 1
    assert value(m, "ponte_instance_state", instance="1-7", state="stopped") == 1
