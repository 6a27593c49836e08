"""The logs of a full run: real `ponte serve` and `ponte worker` (with its RQ pool), the fake
Chatwoot, the scripted sidecar; `SERVER_LOG_FORMAT=json` at the default levels. Every line is one
JSON object with its bound fields; no secret and no message text, either way, ever appears."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SettingsFactory, wait_for
from tests.fakes.chatwoot import FakeChatwoot
from tests.test_metrics import AGENT_TEXT, CUSTOMER_TEXTS, REFUSED_TEXT, open_flow, relay_both_ways

ADMIN = "adm-logs-5d1e0b77"
WEBHOOK_TOKEN = "hook-url-token-c0ffee42"


def records(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines()
    assert lines, f"{log.name} is empty"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{log.name}:{number} is not JSON: {line[:300]!r}") from None
    return parsed


def test_a_full_run_logs_json_lines_without_secrets_or_message_text(
        fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path) -> None:
    with open_flow(fake_chatwoot, make_settings, tmp_path, server_log_format="json",
                   server_admin_token=ADMIN, webhook_token=WEBHOOK_TOKEN) as flow:
        # Chatwoot calls the webhook with the token in the URL as well as signing it.
        fake_chatwoot.update_inbox(flow.inbox["id"],
                                   webhook_url=f"{flow.base}/webhook/chatwoot?token="
                                               f"{WEBHOOK_TOKEN}")
        relay_both_ways(flow)
        headers = {"authorization": f"Bearer {ADMIN}"}
        for path in ("/global-status", "/metrics", "/readyz"):
            httpx.get(f"{flow.base}{path}", headers=headers).raise_for_status()
        wait_for(lambda: "Delivery failed for good" in flow.worker.output(), timeout=20,
                 message="the worker's failure log")
        secrets = {"Chatwoot token": flow.settings.chatwoot_token,
                   "webhook secret": flow.inbox["secret"], "webhook token": WEBHOOK_TOKEN,
                   "admin token": ADMIN}
    # Both processes stopped (SIGTERM): their shutdown lines are in the logs too.
    logs = {"serve": flow.serve.log, "worker": flow.worker.log}
    sent = [*CUSTOMER_TEXTS, REFUSED_TEXT, AGENT_TEXT]
    for name, log in logs.items():
        entries = records(log)
        raw = log.read_text()
        for what, secret in secrets.items():
            assert secret not in raw, f"{what} in the {name} log"
        for text in sent:
            assert text not in raw and json.dumps(text)[1:-1] not in raw, \
                f"message text {text!r} in the {name} log"
        levels = {e["record"]["level"]["name"] for e in entries}
        assert "DEBUG" not in levels and "TRACE" not in levels  # info is the default
        for entry in entries:  # one object per event: the sentence and its fields apart
            assert set(entry) == {"text", "record"}
            assert isinstance(entry["record"]["extra"], dict)

    serve = records(logs["serve"])
    worker = records(logs["worker"])
    sentences = {e["record"]["message"] for e in serve}
    assert {"Ponte serve is up", "Sidecar started", "WhatsApp connection open",
            "Ponte serve is stopping"} <= sentences
    opened = next(e for e in serve if e["record"]["message"] == "WhatsApp connection open")
    assert opened["record"]["extra"]["instance"] == flow.instance
    failed = next(e for e in worker
                  if e["record"]["message"] == "Delivery failed for good; moved to the failed list")
    assert failed["record"]["extra"]["error"] == "ChatwootRejected"
    assert failed["record"]["extra"]["item_id"] == "WAID-0004"
    assert flow.instance in failed["record"]["extra"]["mailbox"]
    # RQ's own logging comes through loguru, as JSON, marked with its origin.
    origins = {e["record"]["extra"].get("origin") for e in worker}
    assert {"rq.worker", "rq.worker_pool"} <= origins
