"""Drain jobs for real: our RQ worker class in burst mode, a real Redis, the fake Chatwoot."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.ids import ChatKey, InstanceId, Jid
from bridge.jobs import runtime
from bridge.jobs.queues import ALL_QUEUES, schedule_drain
from bridge.jobs.worker import PoolWorker
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
        self.push(wa_id, {"conversation": text}, from_me=from_me)

    def push(self, wa_id: str, content: dict[str, Any], *, from_me: bool = False,
             chat: str = CHAT, push_name: str | None = "Maria", **frame: Any) -> None:
        """A sidecar `message` frame for `chat` into that chat's mailbox."""
        key = {"remoteJid": chat, "fromMe": from_me, "id": wa_id, **frame.pop("key", {})}
        message: dict[str, Any] = {"key": key, "messageTimestamp": int(time.time()),
                                   "message": content}
        if push_name:
            message["pushName"] = push_name
        self.enqueue(MessageEvent.model_validate({
            "type": "message", "upsert": "notify", "key": key,
            "content_type": next(iter(content)), "echo": False, "message": message, **frame}))

    def enqueue(self, event: MessageEvent) -> None:
        chat = event.key.remoteJid
        item = MailboxItem(id=event.key.id, kind=ItemKind.WA_MESSAGE, payload={
            "instance_id": self.instance, "chat_jid": chat,
            "event": event.model_dump(mode="json")})
        mailbox = keys.chat_mailbox(ChatKey(self.instance, Jid(chat)))
        self.redis.rpush(mailbox, item.dumps())
        self.redis.sadd(keys.MAILBOXES_PENDING, mailbox)
        self.mailbox = mailbox

    def work(self, *, until_empty: bool = True, timeout: float = 20.0) -> None:
        """Run the worker (with its scheduler, for retries) until every mailbox is drained."""
        for mailbox in self.redis.smembers(keys.MAILBOXES_PENDING):
            schedule_drain(self.redis, mailbox.decode())
        deadline = time.monotonic() + timeout
        while True:
            worker = PoolWorker(list(ALL_QUEUES), connection=self.redis)
            worker.work(burst=True, with_scheduler=True)
            if worker.scheduler is not None:
                # RQ's scheduler opens a client (and pool) of its own and never closes it.
                worker.scheduler.connection.connection_pool.disconnect()
            if not until_empty or self.redis.scard(keys.MAILBOXES_PENDING) == 0:
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
    PoolWorker(list(ALL_QUEUES), connection=desk.redis).work(burst=True)
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


# --- issue 4: what needs state besides the converters ------------------------------------
def test_media_is_streamed_from_the_spool_then_deleted(desk: Desk) -> None:
    spool = runtime.current().settings.spool_dir / desk.instance
    spool.mkdir(parents=True)
    photo = spool / "3EB0IMG1.jpg"
    photo.write_bytes(b"\xff\xd8jpeg-bytes" * 1000)
    outside = spool.parent.parent / "not-in-spool.jpg"
    outside.write_bytes(b"keep me")
    desk.push("WA1", {"imageMessage": {"mimetype": "image/jpeg", "caption": "chegou assim"}},
              media={"path": str(photo), "mimetype": "image/jpeg", "size": 13000,
                     "file_name": None})
    desk.push("WA2", {"imageMessage": {"mimetype": "image/jpeg"}},
              media={"path": str(outside), "mimetype": "image/jpeg", "size": 7,
                     "file_name": None})
    desk.work()
    first, second = desk.posted()
    assert first["content"] == "chegou assim"
    (attachment,) = first["attachments"]
    assert attachment["file_type"] == "image"
    assert desk.fake.attachment_bytes(attachment["id"]) == b"\xff\xd8jpeg-bytes" * 1000
    assert not photo.exists()  # attached, so gone from the spool
    assert outside.exists()  # a path outside the spool is never deleted


def test_a_reply_links_to_the_quoted_message_or_quotes_it(desk: Desk) -> None:
    desk.whatsapp("WA1", "qual o prazo?")
    desk.push("WA2", {"extendedTextMessage": {"text": "e o frete?", "contextInfo": {
        "stanzaId": "WA1", "participant": CHAT,
        "quotedMessage": {"conversation": "qual o prazo?"}}}})
    desk.push("WA3", {"extendedTextMessage": {"text": "sobre aquilo", "contextInfo": {
        "stanzaId": "WA-UNKNOWN", "participant": CHAT,
        "quotedMessage": {"conversation": "uma mensagem antiga"}}}})
    desk.work()
    original, reply, orphan = desk.posted()
    assert reply["content_attributes"]["in_reply_to"] == original["id"]
    assert "in_reply_to" not in (orphan["content_attributes"] or {}) or \
        orphan["content_attributes"]["in_reply_to"] is None
    assert orphan["content"].startswith("> uma mensagem antiga")


def test_a_lid_contact_becomes_the_person_once_the_number_is_known(desk: Desk) -> None:
    from bridge.chatwoot.identity import Identity

    lid = "207365884047522@lid"
    desk.push("WA1", {"conversation": "oi (por LID)"}, chat=lid)
    desk.work()
    (lid_contact,) = desk.fake.contacts
    assert lid_contact["identifier"] == lid and lid_contact["phone_number"] is None
    Identity(runtime.current().chatwoot, desk.redis).merge_lid(desk.instance, lid, CHAT)
    desk.whatsapp("WA2", "agora pelo número")
    desk.work()
    (person,) = desk.fake.contacts
    assert person["id"] == lid_contact["id"]
    assert (person["identifier"], person["phone_number"]) == (CHAT, "+5511988887777")
    first, second = desk.posted()
    assert first["conversation_id"] == second["conversation_id"]


def test_a_lid_contact_merges_into_an_existing_person_by_number(desk: Desk) -> None:
    from bridge.chatwoot.identity import Identity

    desk.whatsapp("WA1", "pelo número primeiro")
    lid = "207365884047522@lid"
    desk.push("WA2", {"conversation": "depois por LID, sem saber quem é"}, chat=lid)
    desk.work()
    assert len(desk.fake.contacts) == 2
    Identity(runtime.current().chatwoot, desk.redis).merge_lid(desk.instance, lid, CHAT)
    (person,) = desk.fake.contacts
    assert person["identifier"] == CHAT
    desk.push("WA3", {"conversation": "de novo por LID"}, chat=lid)
    desk.work()
    by_id = {m["source_id"]: m for m in desk.posted()}
    # From now on the LID writes into the person's conversation by number.
    assert by_id["WA3"]["conversation_id"] == by_id["WA1"]["conversation_id"]


def test_a_group_is_one_contact_named_after_the_group_and_renamed_with_it(desk: Desk) -> None:
    group = "120363025246125486@g.us"
    member = {"participant": "5511977776666@s.whatsapp.net"}
    desk.push("WA1", {"conversation": "bom dia"}, chat=group, chat_name="Vendas SP",
              push_name="João", key=member)
    desk.push("WA2", {"conversation": "oi"}, chat=group, chat_name="Vendas SP",
              push_name="Ana", key={"participant": "5511966665555@s.whatsapp.net"})
    desk.work()
    (contact,) = desk.fake.contacts
    assert (contact["name"], contact["identifier"]) == ("Vendas SP", group)
    assert len({m["conversation_id"] for m in desk.posted()}) == 1
    desk.push("WA3", {"conversation": "mudamos o nome"}, chat=group,
              chat_name="Vendas SP e RJ", push_name="João", key=member)
    desk.work()
    assert desk.fake.contacts[0]["name"] == "Vendas SP e RJ"


def test_names_from_whatsapp_reach_chatwoot_as_one_line(desk: Desk) -> None:
    # "Tenants kept apart", A: the contact name is plain text (no escaping), the sender's name in
    # the message is escaped markdown; neither keeps a line break or a bidi override.
    group = "120363025246125486@g.us"
    desk.push("WA1", {"conversation": "PIX"}, chat=group, chat_name="Vendas\n\u202eSP*",
              push_name="Chefe** (+5511900000001):\nPIX **Maria",
              key={"participant": "5511977776666@s.whatsapp.net"})
    desk.work()
    assert desk.fake.contacts[0]["name"] == "Vendas SP*"
    (message,) = desk.posted()
    assert message["content"] == (r"**Chefe\*\* \(+5511900000001\): PIX \*\*Maria** "
                                  "(+5511977776666):\nPIX")

def test_names_follow_whatsapp_but_a_name_given_in_chatwoot_stays(desk: Desk) -> None:
    desk.whatsapp("WA1", "oi")
    desk.work()
    assert desk.fake.contacts[0]["name"] == "Maria"
    desk.push("WA2", {"conversation": "mudei meu nome"}, push_name="Maria Souza")
    desk.work()
    assert desk.fake.contacts[0]["name"] == "Maria Souza"
    renames = len(desk.fake.calls_to("PUT", r"/contacts/\d+$"))
    desk.push("WA3", {"conversation": "de novo"}, push_name="Maria Souza")
    desk.work()
    assert len(desk.fake.calls_to("PUT", r"/contacts/\d+$")) == renames  # no change, no call


def test_a_known_contact_named_by_an_agent_keeps_its_name(desk: Desk) -> None:
    desk.fake.add_contact("Dona Maria (cliente VIP)", phone_number="+5511988887777")
    desk.whatsapp("WA1", "oi")
    desk.work()
    assert desk.fake.contacts[0]["name"] == "Dona Maria (cliente VIP)"


def test_the_new_conversation_policy_starts_fresh_after_resolve(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.chatwoot.identity import Identity

    context = runtime.current()
    monkeypatch.setattr(context, "settings",
                        context.settings.model_copy(update={"chatwoot_conversation_policy": "new"}))
    desk.whatsapp("WA1", "primeiro atendimento")
    desk.work()
    first = desk.posted()[0]["conversation_id"]
    desk.fake.set_status(first, "resolved")
    Identity(context.chatwoot, desk.redis).forget(desk.instance, CHAT)  # the webhook does this
    desk.whatsapp("WA2", "novo assunto")
    desk.work()
    assert desk.posted()[1]["conversation_id"] != first


def test_poll_votes_are_decrypted_and_the_tally_kept(desk: Desk) -> None:
    vector = json.loads((Path(__file__).parent / "golden" / "polls" / "vote.json").read_text())
    desk.redis.hset(keys.instance(desk.instance), mapping={"wa_jid": vector["poll_creator_jid"]})
    desk.push(vector["poll_msg_id"], {"pollCreationMessageV3": {
        "name": "Melhor horário?", "selectableOptionsCount": 1,
        "options": [{"optionName": o} for o in vector["options"]]},
        "messageContextInfo": {"messageSecret": {"type": "Buffer", "data": vector["secret_b64"]}}},
        from_me=True)
    desk.push("WA-VOTE-1", {"pollUpdateMessage": {
        "pollCreationMessageKey": {"remoteJid": CHAT, "fromMe": True,
                                   "id": vector["poll_msg_id"]},
        "vote": {"encPayload": {"type": "Buffer", "data": vector["enc_payload_b64"]},
                 "encIv": {"type": "Buffer", "data": vector["enc_iv_b64"]}}}})
    desk.work()
    poll, tally = [m for m in desk.fake.messages() if m["source_id"] in
                   (vector["poll_msg_id"], "WA-VOTE-1")]
    assert "Melhor horário?" in poll["content"]
    assert tally["content"] == "📊 Melhor horário?\n• Manhã: 0\n• Tarde: 1\n• Noite: 0"
    assert tally["content_attributes"]["in_reply_to"] == poll["id"]


def test_an_undecryptable_message_is_a_note_and_a_count(desk: Desk) -> None:
    key = {"remoteJid": CHAT, "fromMe": False, "id": "WA-BAD"}
    desk.enqueue(MessageEvent.model_validate({
        "type": "message", "upsert": "notify", "key": key, "content_type": None, "echo": False,
        "message": {"key": key, "messageTimestamp": int(time.time()), "messageStubType": 2,
                    "messageStubParameters": ["Bad MAC"]}}))
    desk.work()
    (note,) = [m for m in desk.fake.messages() if m["source_id"] == "WA-BAD"]
    assert note["private"]
    assert desk.redis.hget(keys.stats("undecryptable"), desk.instance) == b"1"
    # WhatsApp's retry delivers the real message under the same id: it must still land.
    desk.push("WA-BAD", {"conversation": "agora decifrada"})
    desk.work()
    assert [m["content"] for m in desk.fake.messages() if m["source_id"] == "WA-BAD"][-1] == \
        "agora decifrada"


def test_a_429_waits_what_retry_after_asks_and_the_chat_keeps_its_order(desk: Desk) -> None:
    desk.fake.retry_after = "2"  # a proxy in front of Chatwoot says how long to wait
    desk.fake.fail(r"/messages$", method="POST", status=429, times=1)
    for n in range(1, 4):
        desk.whatsapp(f"WA{n}", f"mensagem {n}")
    desk.work()
    posts = [c for c in desk.fake.calls if c.method == "POST" and c.path.endswith("/messages")]
    throttled, retried = posts[0], posts[1]
    assert throttled.injected == "429"
    # The backoff alone would have retried after ~0.1 s (bullmq_job_backoff_delay=100).
    assert retried.at - throttled.at >= 1.9
    assert [m["content"] for m in desk.posted()] == ["mensagem 1", "mensagem 2", "mensagem 3"]
    assert desk.failed() == []


def test_a_read_throttled_by_chatwoot_is_not_asked_again_at_once(desk: Desk) -> None:
    desk.fake.retry_after = "1"
    desk.fake.fail(r"/contact_inboxes/filter$", method="POST", status=429, times=1)
    desk.whatsapp("WA1", "oi")
    desk.work()
    lookups = [c for c in desk.fake.calls if c.path.endswith("/contact_inboxes/filter")]
    assert lookups[0].injected == "429" and lookups[1].at - lookups[0].at >= 0.9
    assert [m["content"] for m in desk.posted()] == ["oi"]


# --- issue "Tenants kept apart", item 5: a flood is paced, not lost ---------------------------
@pytest.fixture
def flood_limit(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """Chatwoot's 200 messages a minute per conversation, scaled down to 5 a second, and Ponte's
    pauses scaled with it."""
    from bridge.jobs import deliver

    desk.fake.message_rate_limit = 5
    desk.fake.message_rate_window = 1.0
    monkeypatch.setattr(deliver, "THROTTLE_FIRST_SECONDS", 0.5)
    monkeypatch.setattr(deliver, "THROTTLE_MAX_SECONDS", 1.0)
    return desk


def test_a_flood_in_one_conversation_is_paced_not_lost(flood_limit: Desk) -> None:
    desk = flood_limit
    other = "5511922223333@s.whatsapp.net"
    start = time.time()
    for n in range(1, 21):
        desk.whatsapp(f"WA{n:02}", f"mensagem {n}")
    desk.push("WA-OTHER", {"conversation": "outro cliente"}, chat=other)
    desk.work(timeout=60)
    flood = [m for m in desk.posted() if m["source_id"] != "WA-OTHER"]
    assert [m["content"] for m in flood] == [f"mensagem {n}" for n in range(1, 21)]
    assert desk.failed() == []
    assert not [m for m in desk.fake.messages() if m["private"]]  # no failure notes either
    refused = [c for c in desk.fake.calls_to("POST", r"/messages$") if c.status == 422]
    assert refused and all("Too many messages" in str(c.response) for c in refused)
    # Paced: 20 messages at 5 a second need some seconds...
    assert flood[-1]["created_at"] - start >= 2.0
    # ...which the other chat, with its own mailbox, does not wait for.
    (theirs,) = [m for m in desk.posted() if m["source_id"] == "WA-OTHER"]
    assert theirs["created_at"] - start < 3.0


def test_a_throttled_item_spends_no_attempts(flood_limit: Desk) -> None:
    desk = flood_limit
    # bullmq_job_attempts=4: six 422s "Too many messages" in a row would have failed it.
    desk.fake.message_rate_limit = 0
    desk.whatsapp("WA1", "espera a vez")
    desk.work(until_empty=False)
    deadline = time.monotonic() + 8
    while len(desk.fake.calls_to("POST", r"/messages$")) < 6 and time.monotonic() < deadline:
        desk.work(until_empty=False)
        time.sleep(0.1)
    assert desk.failed() == [] and desk.redis.llen(desk.mailbox) == 1
    desk.fake.message_rate_limit = 5
    desk.work(timeout=20)
    assert [m["content"] for m in desk.posted()] == ["espera a vez"]
    assert desk.failed() == []


def test_the_failed_list_is_capped_and_its_counts_stay_true(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge import metrics

    monkeypatch.setattr(keys, "FAILED_MAX_ENTRIES", 3)
    desk.fake.fail(r"/messages$", method="POST", status=422, times=None)
    for n in range(1, 6):
        desk.whatsapp(f"WA{n}", f"recusada {n}")
    desk.work()
    desk.fake.clear_failures()
    assert [f["item"]["id"] for f in desk.failed()] == ["WA5", "WA4", "WA3"]  # newest kept
    # /global-status counts what is on the list, not what ever was.
    assert desk.redis.hget(keys.stats(metrics.FAILED_ITEMS), desk.instance) == b"3"


def test_a_failed_entry_keeps_its_item_but_only_an_excerpt_of_the_error(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.jobs import wa_messages

    def explode(ctx: runtime.WorkerContext, item: MailboxItem) -> None:
        raise ValueError("texto da mensagem " * 100)  # a stranger's error may quote the text

    monkeypatch.setattr(wa_messages, "deliver", explode)
    text = "longa " * 2000
    desk.whatsapp("WA1", text)
    desk.work()
    (failure,) = desk.failed()
    assert len(failure["reason"]) <= 200
    # The whole item stays: `ponte jobs retry` puts it back, and it is the only copy.
    assert failure["item"]["payload"]["event"]["message"]["message"]["conversation"] == text


def test_failure_notes_are_coalesced_per_chat(desk: Desk,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.jobs import notes

    monkeypatch.setattr(notes, "FAILURE_NOTE_WINDOW_SECONDS", 1.0)
    desk.whatsapp("WA1", "antes")
    desk.work()
    too_long = "x" * 150_001  # Chatwoot refuses it for good (422), and only it: not the notes
    for n in range(2, 6):
        desk.whatsapp(f"WA{n}", too_long)
    desk.work()

    def failure_notes() -> list[str]:
        return [m["content"] for m in desk.fake.messages() if m["private"]]

    assert len(desk.failed()) == 4
    (first,) = failure_notes()  # told at once; the three after it wait for the window
    assert "WA2" in first
    deadline = time.monotonic() + 10
    while len(failure_notes()) < 2 and time.monotonic() < deadline:
        desk.work(until_empty=False)  # runs the scheduled note when it is due
        time.sleep(0.2)
    first, second = failure_notes()
    assert "3" in second and "WA5" in second
