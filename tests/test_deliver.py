"""Drain jobs for real: RQ SimpleWorker in burst mode, a real Redis, the fake Chatwoot."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq import SimpleWorker

from bridge.ids import ChatKey, InstanceId, Jid
from bridge.jobs import runtime
from bridge.jobs.queues import ALL_QUEUES, schedule_drain
from bridge.sidecar.protocol import MessageEvent
from bridge.store import keys
from bridge.store.mailbox import ItemKind, MailboxItem
from tests.conftest import SettingsFactory
from tests.fakes.chatwoot import FakeChatwoot

CHAT = Jid("5511988887777@s.whatsapp.net")


class Desk:
    def __init__(self, fake: FakeChatwoot, redis: redis.Redis, instance: InstanceId) -> None:
        self.fake = fake
        self.redis = redis
        self.instance = instance
        self.mailbox = keys.chat_mailbox(ChatKey(instance, CHAT))

    def whatsapp(self, wa_id: str, text: str, *, from_me: bool = False) -> None:
        key = {"remoteJid": CHAT, "fromMe": from_me, "id": wa_id}
        event = MessageEvent.model_validate({
            "type": "message", "upsert": "notify", "key": key, "content_type": "conversation",
            "echo": False, "message": {"key": key, "messageTimestamp": 1764374400,
                                       "pushName": "Maria", "message": {"conversation": text}}})
        item = MailboxItem(id=wa_id, kind=ItemKind.WA_MESSAGE, payload={
            "instance_id": self.instance, "chat_jid": CHAT,
            "event": event.model_dump(mode="json")})
        self.redis.rpush(self.mailbox, item.dumps())
        self.redis.sadd(keys.MAILBOXES_PENDING, self.mailbox)

    def work(self, *, until_empty: bool = True, timeout: float = 20.0) -> None:
        """Run the worker (with its scheduler, for retries) until the mailbox is drained."""
        schedule_drain(self.redis, self.mailbox)
        deadline = time.monotonic() + timeout
        while True:
            SimpleWorker(list(ALL_QUEUES), connection=self.redis).work(
                burst=True, with_scheduler=True)
            if not until_empty or self.redis.llen(self.mailbox) == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail("mailbox not drained")
            time.sleep(0.1)

    def posted(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.messages() if m["source_id"] and
                m["source_id"].startswith("WA")]

    def failed(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.FAILED, 0, -1)]


@pytest.fixture
def desk(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
         redis_client: redis.Redis) -> Iterator[Desk]:
    inbox = fake_chatwoot.add_inbox("WhatsApp Loja")
    settings = make_settings(chatwoot_base_url=fake_chatwoot.url,
                             chatwoot_api_access_token=fake_chatwoot.token,
                             chatwoot_api_timeout=2000, bullmq_job_attempts=4,
                             bullmq_job_backoff_delay=100)
    context = runtime.WorkerContext(settings=settings, redis=redis_client)
    runtime.install(context)
    yield Desk(fake_chatwoot, redis_client, InstanceId(f"1-{inbox['id']}"))
    context.close()


def test_messages_of_a_chat_land_once_in_order_in_one_conversation(desk: Desk) -> None:
    for n in range(1, 6):
        desk.whatsapp(f"WA{n}", f"mensagem {n}")
    desk.work()
    posted = desk.posted()
    assert [m["content"] for m in posted] == [f"mensagem {n}" for n in range(1, 6)]
    assert len({m["conversation_id"] for m in posted}) == 1
    assert len([c for c in desk.fake.contacts if c["identifier"] == CHAT]) == 1
    assert desk.redis.sismember(keys.MAILBOXES_PENDING, desk.mailbox) == 0


def test_a_retried_item_is_not_posted_twice(desk: Desk) -> None:
    desk.whatsapp("WA1", "primeira")
    desk.work()
    desk.whatsapp("WA1", "primeira")  # the same WhatsApp message again (a replay, a crash)
    desk.work()
    assert [m["content"] for m in desk.posted()] == ["primeira"]


def test_transient_chatwoot_errors_are_retried_until_the_message_lands(desk: Desk) -> None:
    desk.fake.fail(r"/messages$", method="POST", status=500, times=1)
    desk.fake.fail(r"/messages$", method="POST", status=429, times=1)
    desk.whatsapp("WA1", "chegou?")
    desk.work()
    assert [m["content"] for m in desk.posted()] == ["chegou?"]
    assert desk.failed() == []


def test_a_message_chatwoot_refuses_goes_to_the_failed_list_with_a_note(desk: Desk) -> None:
    desk.whatsapp("WA1", "antes")
    desk.work()
    desk.fake.fail(r"/messages$", method="POST", status=422, times=1)
    desk.whatsapp("WA2", "recusada")
    desk.whatsapp("WA3", "depois")
    desk.work()
    assert [m["content"] for m in desk.posted()] == ["antes", "depois"]  # the chat goes on
    (failure,) = desk.failed()
    assert failure["item"]["id"] == "WA2" and failure["error"] == "ChatwootRejected"
    notes = [m for m in desk.fake.messages() if m["private"]]
    assert len(notes) == 1 and "WA2" in notes[0]["content"]


def test_a_message_that_keeps_failing_ends_visible_after_the_attempts(desk: Desk) -> None:
    desk.whatsapp("WA1", "antes")
    desk.work()
    desk.fake.fail(r"/messages$", method="POST", status=503, times=None)
    desk.whatsapp("WA2", "nunca")
    desk.work(timeout=30)
    desk.fake.clear_failures()
    (failure,) = desk.failed()
    assert failure["item"]["id"] == "WA2" and failure["error"] == "ChatwootUnavailable"
    assert desk.redis.llen(desk.mailbox) == 0


def test_a_deleted_conversation_is_recreated_on_the_next_message(desk: Desk) -> None:
    desk.whatsapp("WA1", "primeira")
    desk.work()
    first = desk.posted()[0]["conversation_id"]
    desk.fake.delete_conversation(first)
    desk.whatsapp("WA2", "segunda")
    desk.work()
    second = [m for m in desk.posted() if m["content"] == "segunda"]
    assert len(second) == 1 and second[0]["conversation_id"] != first


def test_an_existing_contact_with_the_same_phone_is_reused(desk: Desk) -> None:
    existing = desk.fake.add_contact("Maria Silva", phone_number="+5511988887777")
    desk.whatsapp("WA1", "oi")
    desk.work()
    assert [c["id"] for c in desk.fake.contacts] == [existing["id"]]
    assert desk.fake.contact(existing["id"])["name"] == "Maria Silva"


def test_a_message_typed_on_the_phone_is_outgoing(desk: Desk) -> None:
    desk.whatsapp("WA1", "pergunta")
    desk.whatsapp("WA2", "resposta do celular", from_me=True)
    desk.work()
    assert [m["message_type"] for m in desk.posted()] == [0, 1]
    assert desk.fake.contacts[0]["name"] == "Maria"  # not the phone owner's own name


def test_expired_qr_notes_are_not_posted(desk: Desk) -> None:
    conversation = desk.fake.create_conversation_for("+5585999990000", 1)
    mailbox = keys.note_mailbox(1, conversation["id"])
    stale = MailboxItem.note({"account_id": 1, "conversation_id": conversation["id"],
                              "content": "QR velho", "qr": "2@old", "expires_at": time.time() - 1})
    fresh = MailboxItem.note({"account_id": 1, "conversation_id": conversation["id"],
                              "content": "Conectado"})
    desk.redis.rpush(mailbox, stale.dumps(), fresh.dumps())
    schedule_drain(desk.redis, mailbox)
    SimpleWorker(list(ALL_QUEUES), connection=desk.redis).work(burst=True)
    notes = [m["content"] for m in desk.fake.messages(conversation["id"]) if m["private"]]
    assert notes == ["Conectado"]


def test_our_own_send_coming_back_from_whatsapp_is_not_posted(desk: Desk) -> None:
    from bridge.store.mapping import MappingStore, MessageMapping

    desk.whatsapp("WA1", "pergunta")
    desk.work()
    conversation = desk.posted()[0]["conversation_id"]
    # The outbox recorded what it sent; Baileys then reports the same message as ours.
    MappingStore(desk.redis).put(MessageMapping(
        instance_id=desk.instance, chat_jid=CHAT, wa_message_id="WA2", account_id=1,
        conversation_id=conversation, cw_message_id=999999))
    desk.whatsapp("WA2", "resposta do agente", from_me=True)
    desk.work()
    assert [m["content"] for m in desk.posted()] == ["pergunta"]


def test_a_long_backlog_is_handed_over_between_jobs(desk: Desk,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.jobs import deliver

    monkeypatch.setattr(deliver, "DRAIN_BUDGET_SECONDS", 0.0)  # every item over budget
    for n in range(1, 4):
        desk.whatsapp(f"WA{n}", f"m{n}")
    desk.work()
    assert [m["content"] for m in desk.posted()] == ["m1", "m2", "m3"]
