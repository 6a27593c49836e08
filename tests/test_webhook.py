"""The Chatwoot webhook through the real app: verification, bad input, commands, relaying."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from bridge.ids import InstanceId
from bridge.sidecar.supervisor import ConnectionState
from bridge.store import keys
from bridge.web.app import create_app
from bridge.web.security import expected_signature
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for

SECRET = "hook-secret"
INSTANCE = InstanceId("1-7")


def agent(email: str = "boss@example.com", agent_id: int = 3) -> dict[str, Any]:
    return {"id": agent_id, "name": "Ana", "email": email, "type": "user"}


def payload(content: str | None = "Olá!", *, message_id: int = 4821, message_type: str = "outgoing",
            private: bool = False, sender: dict[str, Any] | None = None, inbox_id: int = 7,
            source_id: str | None = None, contact_source_id: str = "5511988887777@s.whatsapp.net",
            contact_phone: str | None = "+5511988887777", event: str = "message_created",
            conversation_id: int = 42, **extra: Any) -> dict[str, Any]:
    """A message webhook as Chatwoot v4.13 builds it (../shared/chatwoot/README.md)."""
    return {
        "event": event, "id": message_id, "content": content, "content_type": "text",
        "content_attributes": {}, "additional_attributes": {}, "message_type": message_type,
        "private": private, "source_id": source_id, "created_at": "2026-11-29T10:15:02.123Z",
        "sender": agent() if sender is None else sender,
        "inbox": {"id": inbox_id, "name": "WhatsApp Loja"}, "account": {"id": 1, "name": "Acme"},
        "conversation": {
            "id": conversation_id, "inbox_id": inbox_id, "channel": "Channel::Api",
            "status": "open",
            "contact_inbox": {"id": 90, "contact_id": 55, "inbox_id": inbox_id,
                              "source_id": contact_source_id},
            "meta": {"sender": {"id": 55, "name": "Maria", "phone_number": contact_phone,
                                "identifier": None, "type": "contact"}, "assignee": None},
            "messages": [], "labels": [],
        },
        **extra,
    }


def signed(body: bytes, *, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"content-type": "application/json", "x-chatwoot-timestamp": stamp,
            "x-chatwoot-signature": expected_signature(secret, stamp, body)}


class Hook:
    def __init__(self, client: TestClient, redis: redis.Redis, control: Path) -> None:
        self.client = client
        self.redis = redis
        self.control = control

    def post(self, data: Any, *, path: str = "/webhook/chatwoot", **headers: str) -> Any:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        return self.client.post(path, content=body, headers={**signed(body), **headers})

    def notes(self, conversation_id: int = 42) -> list[str]:
        raw = self.redis.lrange(keys.note_mailbox(1, conversation_id), 0, -1)
        return [json.loads(r)["payload"]["content"] for r in raw]

    def outbox(self) -> list[dict[str, Any]]:
        entries = self.redis.xrange(keys.outbox(INSTANCE))
        return [json.loads(fields[b"entry"]) for _, fields in entries]

    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    def link(self) -> None:
        """An authorized agent runs `erga` and the (scripted) number comes online."""
        assert self.post(payload("erga"))


@pytest.fixture
def hook(make_settings: SettingsFactory, redis_client: redis.Redis,
         tmp_path: Path) -> Iterator[Hook]:
    control = tmp_path / "control"
    settings = make_settings(
        baileys_sidecar_command=scripted_sidecar_command(control, "linked"),
        webhook_authorized_phone_numbers="+5585999999999", webhook_max_body_bytes=4096)
    with TestClient(create_app(settings)) as client:
        yield Hook(client, redis_client, control)


def linked(hook: Hook) -> None:
    answer = hook.post(payload("erga", private=True, message_id=1))
    assert answer.json() == {"status": "command", "outcome": "linking"}
    runner = wait_for(lambda: hook.services().supervisor.runner(INSTANCE), message="runner")
    wait_for(lambda: runner.connection is ConnectionState.OPEN, message="open")


# --- bad input ------------------------------------------------------------------------------
def test_non_json_body_gets_400_saying_so(hook: Hook) -> None:
    answer = hook.post(b"event=message_created")
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]


def test_json_that_is_not_an_object_or_lacks_event_gets_400(hook: Hook) -> None:
    assert hook.post([1, 2]).status_code == 400
    answer = hook.post({"id": 1})
    assert answer.status_code == 400 and "event" in answer.json()["error"]


def test_unknown_event_is_accepted_and_ignored(hook: Hook) -> None:
    answer = hook.post({"event": "webwidget_triggered", "id": 3})
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"


def test_incomplete_message_payload_gets_422_naming_the_field(hook: Hook) -> None:
    data = payload()
    del data["conversation"]
    answer = hook.post(data)
    assert answer.status_code == 422 and "conversation" in answer.json()["error"]


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"event":"message_created","content":"caf\xe9"}', "not UTF-8"),
    (b'{"event":"message_created","content":' + b"[" * 2000 + b"]" * 2000 + b"}",
     "nested deeper than 64 levels"),
    (b'{"event":"message_created","content":"oi \\ud83d"}', "surrogate"),
    (b'{"event":"message_\\ud800created"}', "surrogate"),
    (b'{"event":"message_created","id":NaN}', "NaN"),
])
def test_a_body_no_webhook_has_gets_400_naming_the_problem(
        hook: Hook, body: bytes, reason: str) -> None:
    # Each of these was a 500 (RecursionError, or UnicodeEncodeError on the way to Redis).
    answer = hook.post(body)
    assert answer.status_code == 400 and reason in answer.json()["error"]


@pytest.mark.parametrize(("change", "named"), [
    ({"account": {"id": 2**70}}, "account.id"),
    ({"id": 0}, "id"),
    ({"conversation": "42"}, "conversation"),
    ({"attachments": None}, "attachments"),
    ({"content": {"text": "x"}}, "content"),
])
def test_a_message_webhook_with_wrong_types_gets_422_naming_the_field(
        hook: Hook, change: dict[str, Any], named: str) -> None:
    answer = hook.post({**payload(), **change})
    assert answer.status_code == 422 and f"{named}:" in answer.json()["error"]


@pytest.mark.parametrize("contact_inbox", [["5511988887777@s.whatsapp.net"], "x", 7.5])
def test_a_status_change_with_wrong_types_gets_422(hook: Hook, contact_inbox: Any) -> None:
    # An AttributeError (500) before: `contact_inbox.get` on a list.
    data = {**payload()["conversation"], "event": "conversation_status_changed",
            "status": "resolved", "contact_inbox": contact_inbox}
    answer = hook.post(data)
    assert answer.status_code == 422 and "contact_inbox" in answer.json()["error"]


def test_an_attachment_url_urllib_cannot_split_is_still_queued(hook: Hook) -> None:
    linked(hook)
    data = payload("Foto", message_id=5100, attachments=[
        {"id": 1, "file_type": "image", "data_url": "http://[::1/rails/foto.jpg"}])
    assert hook.post(data).json() == {"status": "queued"}  # was a ValueError (500)


def test_oversized_body_gets_413(hook: Hook) -> None:
    answer = hook.post(payload("x" * 5000))
    assert answer.status_code == 413


# --- verification ---------------------------------------------------------------------------
def test_unsigned_webhook_without_token_is_refused(hook: Hook) -> None:
    answer = hook.client.post("/webhook/chatwoot", json=payload())
    assert answer.status_code == 401 and "token" in answer.json()["error"]
    assert hook.redis.xlen(keys.outbox(INSTANCE)) == 0


def test_forged_signature_is_refused(hook: Hook) -> None:
    body = json.dumps(payload("erga")).encode()
    answer = hook.client.post("/webhook/chatwoot", content=body,
                              headers=signed(body, secret="not-the-secret"))
    assert answer.status_code == 401 and "does not match" in answer.json()["error"]
    assert hook.services().supervisor.runner(INSTANCE) is None


def test_stale_signature_is_refused_even_if_correct(hook: Hook) -> None:
    body = json.dumps(payload()).encode()
    answer = hook.client.post("/webhook/chatwoot", content=body,
                              headers=signed(body, ts=int(time.time()) - 3600))
    assert answer.status_code == 401 and "too old" in answer.json()["error"]


def test_url_token_is_accepted_for_unsigning_chatwoot_versions(hook: Hook) -> None:
    ok = hook.client.post("/webhook/chatwoot?token=hook-token", json={"event": "x"})
    bad = hook.client.post("/webhook/chatwoot?token=nope", json={"event": "x"})
    assert (ok.status_code, bad.status_code) == (200, 401)


def test_non_ascii_tokens_and_signatures_are_refused_not_a_500(hook: Hook) -> None:
    """hmac.compare_digest refuses non-ASCII str: the comparison is byte-wise."""
    token = hook.client.post("/webhook/chatwoot?token=%C3%A9t%C3%A9", json={"event": "x"})
    body = json.dumps(payload()).encode()
    headers = {**signed(body), "x-chatwoot-signature": "sha256=é".encode()}
    signature = hook.client.post("/webhook/chatwoot", content=body, headers=headers)
    assert (token.status_code, signature.status_code) == (401, 401)


def test_original_path_webhook_comando_is_served(hook: Hook) -> None:
    answer = hook.post({"event": "conversation_created"}, path="/webhook/comando")
    assert answer.status_code == 200


# --- commands -------------------------------------------------------------------------------
def test_unauthorized_agent_gets_a_note_and_nothing_happens(hook: Hook) -> None:
    answer = hook.post(payload("erga", sender=agent(email="intern@example.com", agent_id=9)))
    assert answer.json() == {"status": "command", "outcome": "unauthorized"}
    wait_for(lambda: hook.notes(), message="note")
    assert "Acesso negado" in hook.notes()[0]
    assert hook.services().supervisor.runner(INSTANCE) is None
    assert hook.redis.scard(keys.INSTANCES) == 0


def test_agent_display_name_does_not_authorize(hook: Hook) -> None:
    impostor = {"id": 99, "name": "boss@example.com", "email": "x@example.com", "type": "user"}
    assert hook.post(payload("erga", sender=impostor)).json()["outcome"] == "unauthorized"


def test_authorized_agent_links_the_inbox_and_is_told(hook: Hook) -> None:
    linked(hook)
    record = hook.redis.hgetall(keys.instance(INSTANCE))
    assert record[b"desired"] == b"running" and record[b"notify_conversation_id"] == b"42"
    assert "Iniciando a conexão" in hook.notes()[0]
    wait_for(lambda: len(hook.notes()) == 2, message="linked note")
    assert "5511999990000" in hook.notes()[1]


def test_original_readme_example_from_an_authorized_phone_works(hook: Hook) -> None:
    example = {"message_type": "incoming", "event": "message_created", "id": 77,
               "content": "erga 7 1", "sender": {"phone_number": "+5585999999999"},
               "inbox": {"id": "1", "name": "Caixa de Entrada WhatsApp"},
               "conversation": {"id": "123", "meta": {"sender": {
                   "phone_number": "+5585999999999"}}},
               "account": {"id": "1"}}
    answer = hook.post(example, path="/webhook/comando")
    assert answer.json() == {"status": "command", "outcome": "linking"}
    wait_for(lambda: hook.services().supervisor.runner(INSTANCE), message="runner for 1-7")


def test_a_customer_writing_the_keyword_is_just_a_customer(hook: Hook) -> None:
    customer = {"id": 55, "name": "Maria", "phone_number": "+5511988887777"}
    answer = hook.post(payload("Erga o pedido, por favor", message_type="incoming",
                               sender=customer, source_id="WAID-1"))
    assert answer.json()["status"] == "ignored"
    assert hook.notes() == []


def test_unknown_subcommands_get_help_and_bad_arguments_the_usage(hook: Hook) -> None:
    assert hook.post(payload("erga caixa-sete", message_id=1)).json()["outcome"] == "help"
    assert hook.post(payload("erga 7 conta-um", message_id=2)).json()["outcome"] == "usage"
    wait_for(lambda: len(hook.notes()) == 2, message="two notes")
    assert "erga status" in hook.notes()[0] and "Uso:" in hook.notes()[1]


@pytest.mark.parametrize("text", ["erga 99999999999999999999", "erga ٧", "erga status 0",
                                  "erga 7 " + "9" * 3000])
def test_an_id_no_chatwoot_record_has_gets_the_usage(hook: Hook, text: str) -> None:
    # `erga 99999999999999999999` used to link (and start a sidecar for) that inbox.
    assert hook.post(payload(text, private=True)).json() == {"status": "command",
                                                            "outcome": "usage"}
    assert hook.redis.scard(keys.INSTANCES) == 0


# --- relaying agent messages ----------------------------------------------------------------
def test_agent_reply_in_a_linked_inbox_is_queued_for_whatsapp(hook: Hook) -> None:
    linked(hook)
    answer = hook.post(payload("Seu pedido saiu para entrega.", message_id=5000))
    assert answer.json() == {"status": "queued"}
    wait_for(lambda: hook.outbox() or _sent(hook), message="queued or sent")
    commands = wait_for(lambda: _sent(hook), message="send_text at the sidecar")
    assert commands[-1]["jid"] == "5511988887777@s.whatsapp.net"
    assert commands[-1]["text"] == "Seu pedido saiu para entrega."


def _sent(hook: Hook) -> list[dict[str, Any]]:
    record = hook.control / f"{INSTANCE}.commands.jsonl"
    if not record.exists():
        return []
    return [c for c in map(json.loads, record.read_text().splitlines())
            if c["type"] == "send_text"]


def _template() -> dict[str, Any]:
    data = payload(message_type="template")
    data["sender"] = None  # greetings, CSAT: Chatwoot's own messages have no sender
    return data


@pytest.mark.parametrize(("reason", "data"), [
    ("private note", payload(private=True)),
    ("posted by the bridge", payload(source_id="3EB0ABCDEF")),
    ("incoming message", payload(message_type="incoming", sender={"id": 55, "name": "M"})),
    ("template message", _template()),
])
def test_what_an_agent_did_not_mean_for_the_customer_is_not_relayed(
        hook: Hook, reason: str, data: dict[str, Any]) -> None:
    linked(hook)
    answer = hook.post(data)
    assert answer.json() == {"status": "ignored", "reason": reason}
    time.sleep(0.2)
    assert hook.outbox() == [] and _sent(hook) == []


def test_commands_are_never_relayed_to_the_customer(hook: Hook) -> None:
    linked(hook)
    hook.post(payload("erga", message_id=6000))  # public, in the linked inbox
    time.sleep(0.3)
    assert _sent(hook) == []


def test_duplicate_message_created_is_sent_once(hook: Hook) -> None:
    linked(hook)
    assert hook.post(payload("Uma vez só", message_id=7000)).json()["status"] == "queued"
    assert hook.post(payload("Uma vez só", message_id=7000)).json()["status"] == "ignored"
    wait_for(lambda: _sent(hook), message="sent")
    time.sleep(0.3)
    assert len(_sent(hook)) == 1


def test_duplicate_delivery_header_is_handled_once(hook: Hook) -> None:
    linked(hook)
    data = payload("Entrega repetida", message_id=7100)
    first = hook.post(data, **{"x-chatwoot-delivery": "d-1"})
    again = hook.post(data, **{"x-chatwoot-delivery": "d-1"})
    assert first.json()["status"] == "queued"
    assert again.json() == {"status": "ignored", "reason": "duplicate delivery"}


def test_agent_started_conversation_uses_the_contact_phone(hook: Hook) -> None:
    linked(hook)
    data = payload("Oi, aqui é da loja", message_id=7200,
                   contact_source_id="a3f1c2e4-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
                   contact_phone="+55 11 97777-6666")
    assert hook.post(data).json()["status"] == "queued"
    commands = wait_for(lambda: _sent(hook), message="sent")
    assert commands[-1]["jid"] == "5511977776666@s.whatsapp.net"


def test_no_recipient_tells_the_agent(hook: Hook) -> None:
    linked(hook)
    data = payload("Para quem?", message_id=7300, contact_source_id="uuid-like",
                   contact_phone=None)
    assert hook.post(data).json()["status"] == "failed"
    wait_for(lambda: any("não é um número" in n for n in hook.notes()), message="note")


def test_message_to_an_inbox_not_linked_is_ignored(hook: Hook) -> None:
    answer = hook.post(payload(inbox_id=99))
    assert answer.json() == {"status": "ignored", "reason": "inbox is not linked to WhatsApp"}


# --- status ---------------------------------------------------------------------------------
def test_global_status_keeps_the_original_keys(hook: Hook) -> None:
    linked(hook)
    status = hook.client.get("/global-status").json()
    assert status["totalActiveInstances"] == 1
    (instance,) = status["instancesGlobal"]
    assert instance["instanceId"] == "1-7"
    assert instance["status"] == "open"
    assert instance["connectedJid"] == "5511999990000@s.whatsapp.net"
    assert instance["relayToInboxId"] == 7 and instance["relayToAccountId"] == 1
    assert instance["qrSendAttempts"] == 0 and instance["qrPending"] is False
    assert instance["pid"] and instance["rssBytes"] > 0
    assert {"lastError", "instanceName", "serverTime"} <= set(instance) | set(status)


def test_global_status_needs_the_admin_token_when_one_is_set(
        make_settings: SettingsFactory, redis_client: redis.Redis) -> None:
    settings = make_settings(server_admin_token="adm-123")
    with TestClient(create_app(settings)) as client:
        assert client.get("/global-status").status_code == 401
        wrong = client.get("/global-status", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/global-status", headers={"authorization": "Bearer adm-123"})
        assert right.status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}


def test_pair_command_links_by_code_and_posts_the_code(
        make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path) -> None:
    from tests.conftest import write_script

    script = write_script(tmp_path / "code.jsonl", [
        {"emit": {"type": "ready", "protocol": 1, "sidecar": "s", "baileys": "7", "pid": "$pid"}},
        {"emit": {"type": "connection", "state": "connecting"}},
        {"emit": {"type": "pairing_code", "code": "K7QX9P2M", "phone": "5511999990000"}},
        {"sleep": 30},
    ])
    control = tmp_path / "control"
    settings = make_settings(baileys_sidecar_command=scripted_sidecar_command(control, script))
    session = settings.sessions_dir / "1-7"
    session.mkdir(parents=True)
    (session / "creds.json").write_text('{"me": {"id": "5511999990000@s.whatsapp.net"}}')
    with TestClient(create_app(settings)) as client:
        hook = Hook(client, redis_client, control)
        answer = hook.post(payload("erga pair +55 11 99999-0000", private=True))
        assert answer.json() == {"status": "command", "outcome": "linking"}
        wait_for(lambda: any("K7QX9P2M" in n for n in hook.notes()), message="code note")
        assert "+5511999990000" in hook.notes()[-1]
        assert not (session / "creds.json").exists()  # an abandoned code's identity is gone
        record = redis_client.hgetall(keys.instance(INSTANCE))
        assert record[b"pairing_phone"] == b"5511999990000"
        status = client.get("/global-status").json()["instancesGlobal"][0]
        assert status["status"] == "qr_pending"
        assert hook.post(payload("erga pair", message_id=2)).json()["outcome"] == "usage"


def test_a_resolved_conversation_is_forgotten_under_the_new_policy(
        make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path) -> None:
    from bridge.store.registry import InstanceRecord, _encode

    settings = make_settings(chatwoot_conversation_policy="new")
    jid = "5511988887777@s.whatsapp.net"
    redis_client.hset(keys.instance(INSTANCE), mapping=_encode(InstanceRecord.new(1, 7)))
    redis_client.sadd(keys.INSTANCES, INSTANCE)
    redis_client.set(keys.conversation(INSTANCE, jid), '{"contact_id": 55, "conversation_id": 42}')
    with TestClient(create_app(settings)) as client:
        hook = Hook(client, redis_client, tmp_path)
        conversation = payload()["conversation"]
        open_again = hook.post({**conversation, "event": "conversation_status_changed"})
        assert open_again.json()["status"] == "ignored"
        assert redis_client.exists(keys.conversation(INSTANCE, jid))
        resolved = hook.post({**conversation, "status": "resolved",
                              "event": "conversation_status_changed"})
        assert resolved.json() == {"status": "forgotten"}
        assert not redis_client.exists(keys.conversation(INSTANCE, jid))


def test_agent_markdown_becomes_whatsapp_formatting_and_can_be_signed(
        make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path) -> None:
    control = tmp_path / "control"
    settings = make_settings(baileys_sidecar_command=scripted_sidecar_command(control, "linked"),
                             chatwoot_sign_agent_messages=True)
    with TestClient(create_app(settings)) as client:
        hook = Hook(client, redis_client, control)
        linked(hook)
        hook.post(payload("Seu pedido **4512** saiu *hoje*", message_id=8000))
        sent = wait_for(lambda: _sent(hook), message="sent")
        assert sent[-1]["text"] == "*Ana*\nSeu pedido *4512* saiu _hoje_"


def test_a_delivery_chatwoot_marked_failed_is_sent_on_its_update(hook: Hook) -> None:
    linked(hook)
    lost = payload("Mensagem que o webhook perdeu", message_id=9000, event="message_updated",
                   content_attributes={"external_error": "Timed out reading data from server"})
    assert hook.post(lost).json() == {"status": "queued"}
    wait_for(lambda: any(c["text"] == "Mensagem que o webhook perdeu" for c in _sent(hook)),
             message="sent")
    # The same update again, and one for a message we did send: nothing more goes out.
    assert hook.post(lost).json()["status"] == "ignored"
    status_echo = payload("Olá!", message_id=9001, event="message_updated")
    assert hook.post(status_echo).json() == {"status": "ignored",
                                             "reason": "update needs no action"}
    time.sleep(0.2)
    assert len(_sent(hook)) == 1


def test_templates_are_relayed_only_when_configured(
        make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path) -> None:
    control = tmp_path / "control"
    settings = make_settings(baileys_sidecar_command=scripted_sidecar_command(control, "linked"),
                             chatwoot_relay_templates=True)
    with TestClient(create_app(settings)) as client:
        hook = Hook(client, redis_client, control)
        linked(hook)
        assert hook.post(_template()).json() == {"status": "queued"}
        wait_for(lambda: _sent(hook), message="template sent")
