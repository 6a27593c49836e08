"""/global-status, /readyz and /metrics through the real app: a real Redis (and an unreachable
one), RQ's real queues, the fake Chatwoot for the readiness check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bridge.ids import ChatKey, InstanceId, Jid
from bridge.jobs.queues import schedule_drain
from bridge.store import keys
from bridge.store.mailbox import MailboxItem
from bridge.store.registry import InstanceRecord, _encode
from bridge.web.app import create_app
from tests.conftest import SettingsFactory, free_port
from tests.fakes.chatwoot import FakeChatwoot

INSTANCE = InstanceId("1-7")


@pytest.fixture
def client(make_settings: SettingsFactory, fake_chatwoot: FakeChatwoot) -> Iterator[TestClient]:
    settings = make_settings(chatwoot_base_url=fake_chatwoot.url,
                             chatwoot_api_access_token=fake_chatwoot.token)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


@pytest.fixture
def redis_down(client: TestClient) -> Iterator[None]:
    """Serve's Redis client pointed at a port nobody listens on, as when Redis dies."""
    real = services(client).redis
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                   socket_connect_timeout=1)
    services(client).redis = dead
    yield
    services(client).redis = real
    assert client.portal is not None
    client.portal.call(dead.aclose)


def test_status_shows_queues_mailboxes_and_workers(client: TestClient,
                                                   redis_client: redis.Redis) -> None:
    redis_client.hset(keys.instance(INSTANCE), mapping=_encode(  # type: ignore[arg-type]
        InstanceRecord.new(1, 7)))
    redis_client.sadd(keys.INSTANCES, INSTANCE)
    mailbox = keys.chat_mailbox(ChatKey(INSTANCE, Jid("5511988887777@s.whatsapp.net")))
    for n in (1, 2):
        redis_client.rpush(mailbox, MailboxItem.note({"n": n}).dumps())
    redis_client.sadd(keys.MAILBOXES_PENDING, mailbox, keys.note_mailbox(1, 42))
    redis_client.rpush(keys.note_mailbox(1, 42), MailboxItem.note({}).dumps())
    schedule_drain(redis_client, mailbox)  # no worker runs: it waits in the queue

    status = client.get("/global-status").json()
    (row,) = status["instancesGlobal"]
    assert row["mailboxDepth"] == 2 and row["failedCount"] == 0
    assert row["status"] == "stopped" and row["cpuPercent"] is None
    assert status["mailboxesPending"] == 2  # chats and notes conversations with work
    assert status["queues"] == {"ponte-chatwoot": 1}
    stats = status["queueStats"]["ponte-chatwoot"]
    assert stats["depth"] == 1 and 0 <= stats["oldestJobAgeSeconds"] < 10
    assert status["workers"] == 0 and status["redis"] == {"ok": True}

    metrics = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in metrics.values() for s in f.samples}
    assert samples[("ponte_mailbox_depth", (("instance", "1-7"),))] == 2
    assert samples[("ponte_note_mailbox_depth", ())] == 1
    assert samples[("ponte_queue_depth", (("queue", "ponte-chatwoot"),))] == 1
    assert samples[("ponte_workers", ())] == 0


def test_status_still_answers_when_redis_does_not(client: TestClient, redis_down: None) -> None:
    answer = client.get("/global-status")
    assert answer.status_code == 200  # the page renders, and says what is wrong
    status = answer.json()
    assert status["redis"]["ok"] is False and "Error" in status["redis"]["error"]
    assert status["instancesGlobal"] == [] and status["failedCount"] is None
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "ponte_redis_up 0.0" in metrics.text


def test_readyz_checks_redis_chatwoot_and_the_supervisor(client: TestClient,
                                                         fake_chatwoot: FakeChatwoot) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {
        "redis": "ok", "chatwoot": "ok", "supervisor": "ok"}}
    client.get("/readyz")
    profile = fake_chatwoot.calls_to("GET", r"^/api/v1/profile$")
    assert len(profile) == 1  # cached: probes do not each reach Chatwoot
    assert profile[0].headers["api_access_token"] == fake_chatwoot.token

    services(client).supervisor.stopping = True
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["supervisor"] == "stopping"
    services(client).supervisor.stopping = False
    assert client.get("/healthz").json() == {"status": "ok"}  # the process is up all along


def test_readyz_names_redis_when_it_is_down(client: TestClient, redis_down: None) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["redis"] != "ok" and checks["chatwoot"] == "ok"


def test_readyz_names_chatwoot_when_it_refuses_the_token(
        make_settings: SettingsFactory, fake_chatwoot: FakeChatwoot) -> None:
    settings = make_settings(chatwoot_base_url=fake_chatwoot.url,
                             chatwoot_api_access_token="revoked-token")
    with TestClient(create_app(settings)) as test_client:
        answer = test_client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"redis": "ok", "chatwoot": "answered 401",
                                       "supervisor": "ok"}


def test_metrics_need_the_admin_token_when_one_is_set(make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(server_admin_token="adm-1"))) as test_client:
        assert test_client.get("/metrics").status_code == 401
        answer = test_client.get("/metrics", headers={"authorization": "Bearer adm-1"})
        assert answer.status_code == 200 and "ponte_redis_up 1.0" in answer.text
        assert test_client.get("/readyz").status_code in (200, 503)  # a probe needs no token
