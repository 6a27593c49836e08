"""Agent actions reaching WhatsApp, through real `ponte serve` + `ponte worker`, the fake
Chatwoot (sending signed webhooks as Chatwoot does) and the scripted sidecar."""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for, write_script
from tests.desk import Desk, open_desk
from tests.fakes.chatwoot import FakeChatwoot

CUSTOMER = "5511988887777@s.whatsapp.net"
READY = {"emit": {"type": "ready", "protocol": 1, "sidecar": "s", "baileys": "7", "pid": "$pid"}}
OPEN = {"emit": {"type": "connection", "state": "open",
                 "me": {"id": "5511999990000:3@s.whatsapp.net", "lid": None, "name": "Loja"}}}


def customer_message(wa_id: str, text: str) -> dict[str, Any]:
    key = {"remoteJid": CUSTOMER, "fromMe": False, "id": wa_id}
    return {"emit": {"type": "message", "upsert": "notify", "key": key,
                     "content_type": "conversation", "echo": False,
                     "message": {"key": key, "messageTimestamp": int(time.time()),
                                 "pushName": "Maria", "message": {"conversation": text}}}}


class Shop(Desk):
    control: Path

    def commands(self, kind: str | None = None) -> list[dict[str, Any]]:
        record = self.control / f"{self.instance}.commands.jsonl"
        if not record.exists():
            return []
        found = [json.loads(line) for line in record.read_text().splitlines()]
        return [c for c in found if kind is None or c["type"] == kind]

    def customer_conversation(self) -> int:
        messages = wait_for(lambda: [m for m in self.fake.messages()
                                     if m["source_id"] == "WA-HELLO"], timeout=20,
                            message="the customer's first message")
        return int(messages[0]["conversation_id"])


Script = Callable[..., Shop]


@pytest.fixture
def shop(fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory,
         tmp_path: Path) -> Iterator[Script]:
    """A linked number whose customer wrote once ("WA-HELLO"); extra directives follow."""
    stack: list[Any] = []

    def start(*directives: dict[str, Any], **settings: Any) -> Shop:
        control = tmp_path / "control"
        script = write_script(tmp_path / "wa.jsonl", [
            READY, OPEN, {"ticks": True}, customer_message("WA-HELLO", "Oi, preciso de ajuda"),
            *directives])
        context = open_desk(fake_chatwoot, make_settings, tmp_path,
                            baileys_sidecar_command=scripted_sidecar_command(control, script),
                            **settings)
        desk = context.__enter__()
        stack.append(context)
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        wait_for(lambda: shop.status().get("status") == "open", message="open")
        return shop

    yield start
    for context in stack:
        context.__exit__(None, None, None)


def wav_bytes(seconds: float = 0.4) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(n / 8)))
                                 for n in range(int(16000 * seconds))))
    return buffer.getvalue()


def test_text_with_attachments_goes_in_parts_caption_on_the_first_image(
        shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    photo, pdf = b"\xff\xd8\xff\xe0foto" * 500, b"%PDF-1.4 boleto" * 500
    desk.fake.agent_message(conversation, "Segue a **foto** e o boleto", attachments=[
        ("foto.jpg", photo, "image/jpeg"), ("boleto.pdf", pdf, "application/pdf")])
    first, second = wait_for(lambda: (lambda sent: sent if len(sent) == 2 else None)(
        desk.commands("send_media")), timeout=20, message="two media parts")
    assert desk.commands("send_text") == []  # the text rode on the photo
    assert (first["kind"], first["caption"], first["mimetype"]) == (
        "image", "Segue a *foto* e o boleto", "image/jpeg")
    assert first["file"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (second["kind"], second["file_name"], second.get("caption")) == (
        "document", "boleto.pdf", None)
    assert second["file"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    spool = desk.settings.spool_dir / desk.instance
    assert Path(first["path"]).parent == spool.resolve()
    wait_for(lambda: not any(spool.iterdir()), message="files removed after sending")


def test_a_crash_after_part_one_never_sends_part_one_twice(
        fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path) -> None:
    control = tmp_path / "control"
    first_run = write_script(tmp_path / "run1.jsonl", [
        READY, OPEN, customer_message("WA-HELLO", "Oi"),
        {"expect": "send_text", "reply": {"ok": True, "data": {
            "message_id": "$id", "jid": "$jid", "timestamp": "$now"}}},
        {"exit": 3},  # crashes before the attachment goes
    ])
    later_runs = write_script(tmp_path / "run2.jsonl", [READY, OPEN])
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=scripted_sidecar_command(control, first_run,
                                                                     later_runs)) as desk:
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        conversation = shop.customer_conversation()
        shop.fake.agent_message(conversation, "Veja o manual", attachments=[
            ("manual.pdf", b"%PDF manual", "application/pdf")])
        wait_for(lambda: shop.commands("send_media"), timeout=30, message="part 2 after restart")
        assert [c["text"] for c in shop.commands("send_text")] == ["Veja o manual"]
        assert len(shop.commands("send_media")) == 1


def test_a_reply_quotes_the_customer_message(shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    original = next(m for m in desk.fake.messages() if m["source_id"] == "WA-HELLO")
    desk.fake.agent_message(conversation, "Claro, em que posso ajudar?",
                            content_attributes={"in_reply_to": original["id"]})
    (sent,) = wait_for(lambda: desk.commands("send_text"), message="the reply")
    assert sent["quote"] == {"id": "WA-HELLO", "from_me": False}


def test_ticks_become_the_chatwoot_message_status(shop: Script) -> None:
    desk = shop()
    reply = desk.fake.agent_message(desk.customer_conversation(), "Já verifico.")
    wait_for(lambda: desk.fake.message(reply["id"])["status"] == "read", timeout=20,
             message="read in Chatwoot")


def test_an_agent_deleting_a_sent_message_revokes_it_on_whatsapp(shop: Script) -> None:
    desk = shop()
    conversation = desk.customer_conversation()
    reply = desk.fake.agent_message(conversation, "Mensagem errada")
    (sent,) = wait_for(lambda: desk.commands("send_text"), message="sent")
    wait_for(lambda: desk.fake.message(reply["id"])["status"] == "read", message="mapped")
    desk.fake.agent_delete_message(conversation, reply["id"])
    (revoke,) = wait_for(lambda: desk.commands("revoke"), message="revoke")
    assert revoke["jid"] == CUSTOMER
    assert revoke["message_id"].startswith("3EB0")


def test_a_number_without_whatsapp_fails_visibly(shop: Script) -> None:
    desk = shop({"expect": "send_text", "reply": {"ok": False, "error": {
        "code": "not_on_whatsapp", "message": "no account"}}})
    reply = desk.fake.agent_message(desk.customer_conversation(), "Olá?")
    failed = wait_for(lambda: desk.fake.message(reply["id"])["status"] == "failed" and
                      desk.fake.message(reply["id"]), timeout=20, message="failed")
    assert "não tem WhatsApp" in failed["content_attributes"]["external_error"]
    # The note and the status are separate jobs: either may land first.
    wait_for(lambda: any("não tem WhatsApp" in (m["content"] or "") for m in
                         desk.fake.messages(reply["conversation_id"]) if m["private"]),
             timeout=20, message="the note saying why")


def test_audio_goes_as_a_voice_note(shop: Script) -> None:
    desk = shop()
    desk.fake.agent_message(desk.customer_conversation(), None,
                            attachments=[("gravacao.wav", wav_bytes(), "audio/wav")])
    (sent,) = wait_for(lambda: desk.commands("send_media"), timeout=30, message="voice note")
    assert (sent["kind"], sent["ptt"], sent["mimetype"]) == (
        "audio", True, "audio/ogg; codecs=opus")
    assert bytes.fromhex(sent["file"]["head"]).startswith(b"OggS")


def test_agent_reply_marks_the_customer_messages_read_when_configured(shop: Script) -> None:
    desk = shop(chatwoot_mark_read_on_reply=True)
    desk.fake.agent_message(desk.customer_conversation(), "Respondendo")
    (read,) = wait_for(lambda: desk.commands("mark_read"), message="read receipts")
    assert (read["jid"], read["message_ids"]) == (CUSTOMER, ["WA-HELLO"])


def test_a_restart_between_the_answer_and_the_send_loses_nothing(
        fake_chatwoot: FakeChatwoot, make_settings: SettingsFactory, tmp_path: Path) -> None:
    from tests.conftest import settings_env
    from tests.processes import PonteProcess

    control = tmp_path / "control"
    online = write_script(tmp_path / "run1.jsonl", [
        READY, OPEN, customer_message("WA-HELLO", "Oi"), {"wait_file": "drop"},
        {"emit": {"type": "connection", "state": "close", "status_code": 428,
                  "reason": "connectionClosed", "message": "lost", "will_reconnect": False}},
        {"exit": 0}])
    stuck = write_script(tmp_path / "run2.jsonl", [
        READY, {"emit": {"type": "connection", "state": "connecting"}}, {"sleep": 60}])
    back = write_script(tmp_path / "run3.jsonl", [READY, OPEN])
    with open_desk(fake_chatwoot, make_settings, tmp_path,
                   baileys_sidecar_command=scripted_sidecar_command(control, online, stuck,
                                                                     back)) as desk:
        shop = Shop(**{f: getattr(desk, f) for f in desk.__dataclass_fields__})
        shop.control = control
        shop.command("erga")
        conversation = shop.customer_conversation()
        (control / f"{shop.instance}.drop").touch()  # WhatsApp drops; the sidecar reconnects
        wait_for(lambda: (control / f"{shop.instance}.runs").read_text() == "2",
                 message="reconnecting")
        shop.fake.agent_message(conversation, "Chega hoje")  # answered 200, waiting to go
        wait_for(lambda: shop.status().get("outboxDepth") == 1, message="queued")
        shop.serve.stop()  # Ponte restarts before the number is back
        shop.serve = PonteProcess("serve", settings_env(shop.settings), tmp_path / "serve2.log")
        desk.serve = shop.serve
        shop.serve.wait_http(f"{shop.base}/healthz")
        sent = wait_for(lambda: shop.commands("send_text"), timeout=20, message="sent")
        assert [c["text"] for c in sent] == ["Chega hoje"]
        wait_for(lambda: shop.status().get("outboxDepth") == 0, message="outbox empty")


# --- outbound senders never die ("Nothing lost, ever") ---------------------------------------
def scrape_metrics(desk: Desk) -> dict[str, Any]:
    from tests.test_metrics import scrape

    return scrape(desk.base, token=None)


def metric(desk: Desk, sample: str, **labels: str) -> float | None:
    from tests.test_metrics import value

    return value(scrape_metrics(desk), sample, **labels)


def texts_sent(desk: Shop, count: int, timeout: float = 30) -> list[str]:
    """The texts sent to WhatsApp once there are at least `count` (all of them, so a part sent
    twice shows)."""
    sent = wait_for(lambda: (lambda s: s if len(s) >= count else None)(
        desk.commands("send_text")), timeout=timeout, message=f"{count} texts sent")
    return [c["text"] for c in sent]


def test_a_reply_longer_than_whatsapp_takes_goes_in_parts_in_order(shop: Script) -> None:
    """65,537 characters (Chatwoot takes up to 150,000) raised `string_too_long` in the sender;
    its task died, and no later agent message of the number reached WhatsApp."""
    desk = shop()
    conversation = desk.customer_conversation()
    original = next(m for m in desk.fake.messages() if m["source_id"] == "WA-HELLO")
    first, second = "A" * 40_000, "B" * 25_535
    reply = desk.fake.agent_message(conversation, f"{first}\n\n{second}",
                                    content_attributes={"in_reply_to": original["id"]})
    assert len(reply["content"]) == 65_537
    desk.fake.agent_message(conversation, "Mais alguma dúvida?")
    assert texts_sent(desk, 3) == [first, second, "Mais alguma dúvida?"]
    parts = desk.commands("send_text")
    assert parts[0]["quote"] == {"id": "WA-HELLO", "from_me": False}
    assert "quote" not in parts[1]  # only the first part answers the customer's message
    wait_for(lambda: desk.fake.message(reply["id"])["status"] == "read", timeout=20,
             message="the long reply read in Chatwoot")
    assert len(desk.commands("send_text")) == 3
    notes = [m for m in desk.fake.messages(conversation) if m["private"]]
    assert notes == []
    assert desk.status()["outboundRestarts"] == 0


def test_an_entry_that_breaks_the_sender_fails_visibly_and_the_next_goes_out(
        shop: Script, redis_client: Any) -> None:
    """Any error handling one entry (here: one written by a newer Ponte, its text not a
    string) fails that message, and only that one."""
    from bridge.store import keys

    desk = shop()
    conversation = desk.customer_conversation()
    # The Chatwoot message the broken entry stands for (a private note: Ponte sends none).
    named = desk.fake.agent_message(conversation, "rascunho", private=True)
    redis_client.xadd(keys.outbox(desk.instance), {"entry": json.dumps({
        "account_id": 1, "conversation_id": conversation, "cw_message_id": named["id"],
        "jid": CUSTOMER, "at": time.time(), "text": {"blocks": ["Olá"]}})})
    desk.fake.agent_message(conversation, "Seguimos por aqui")
    assert texts_sent(desk, 1) == ["Seguimos por aqui"]
    failed = wait_for(lambda: desk.fake.message(named["id"])["status"] == "failed" and
                      desk.fake.message(named["id"]), timeout=20, message="marked failed")
    assert "erro interno do Ponte" in failed["content_attributes"]["external_error"]
    wait_for(lambda: [m for m in desk.fake.messages(conversation) if m["private"]
                      and "erro interno do Ponte" in (m["content"] or "")],
             timeout=20, message="the note saying why")
    wait_for(lambda: desk.status().get("outboxDepth") == 0, message="both acknowledged")
    wait_for(lambda: metric(desk, "ponte_failures_total", direction="cw_to_wa",
                            reason="unexpected_error") == 1, message="the failure counted")
    assert desk.status()["outboundRestarts"] == 0  # the loop went on; it did not die
    assert "Seguimos por aqui" not in desk.serve.output()  # no message text in the log
    assert "Agent message failed on an unexpected error" in desk.serve.output()


def test_a_consumer_loop_that_dies_is_restarted_and_counted(shop: Script,
                                                             redis_client: Any) -> None:
    """Redis lost the outbox stream and its group (restarted without persistence, or the key
    deleted): every read answers NOGROUP. The loop ends; the sender starts it again, which
    creates the group, and the number's messages flow again."""
    from bridge.store import keys

    desk = shop()
    conversation = desk.customer_conversation()
    desk.fake.agent_message(conversation, "Primeira")
    assert texts_sent(desk, 1) == ["Primeira"]
    wait_for(lambda: desk.status().get("outboxDepth") == 0, message="first acknowledged")
    redis_client.delete(keys.outbox(desk.instance))
    desk.fake.agent_message(conversation, "Segunda")
    assert texts_sent(desk, 2, timeout=20) == ["Primeira", "Segunda"]
    assert desk.status()["outboundRestarts"] == 1
    assert metric(desk, "ponte_outbound_restarts_total", instance=desk.instance) == 1
    assert "Outbox consumer restarted" in desk.serve.output()


def _entry(text: str, **fields: Any) -> Any:
    from bridge.store.outbox import OutboxEntry

    return OutboxEntry(account_id=1, conversation_id=5, cw_message_id=fields.pop("cw", 77),
                       jid=CUSTOMER, at=time.time(), text=text, **fields)


def test_a_caption_too_long_for_whatsapp_goes_as_text_before_the_media() -> None:
    from bridge.relay.outbound import CAPTION_MAX_CHARS, Part, plan
    from bridge.store.outbox import OutboxAttachment

    photo = OutboxAttachment(data_url="http://cw/foto.jpg", file_type="image")
    short, long = "x" * CAPTION_MAX_CHARS, "y" * (CAPTION_MAX_CHARS + 1)
    assert plan(_entry(short, attachments=(photo,))) == [Part(attachment=photo, caption=short)]
    assert plan(_entry(long, attachments=(photo,))) == [Part(text=long), Part(attachment=photo)]
    huge = ("Uma frase do relatório. " * 6250)  # 150,000 characters: Chatwoot's maximum
    parts = plan(_entry(huge, attachments=(photo,)))
    assert [p.attachment for p in parts] == [None, None, None, photo]
    assert all(p.caption is None for p in parts)


class DummyRunner:
    """The side of an InstanceRunner the sender uses: connected, answering every send."""

    def __init__(self, instance_id: str) -> None:
        import asyncio

        self.instance_id = instance_id
        self.finishing = False
        self.wakeup = asyncio.Event()
        self.commands: list[Any] = []

    async def wait_open(self, timeout_s: float) -> bool:
        return not self.finishing

    async def request(self, make: Callable[[str], Any]) -> Any:
        from bridge.sidecar.protocol import ResultEvent

        command = make(f"c{len(self.commands)}")
        self.commands.append(command)
        return ResultEvent(type="result", id=command.id, ok=True,
                           data={"message_id": f"3EB0{len(self.commands):04d}"})

    def finish(self) -> None:
        self.finishing = True
        self.wakeup.set()


async def run_sender(make_settings: SettingsFactory, redis_url: str, entry: Any,
                     until: Callable[[Any], Any]) -> tuple[DummyRunner, Any]:
    """An OutboundSender in this process on the test Redis, sending `entry` through a dummy
    runner until `until(sender)` holds and the outbox is empty."""
    import asyncio

    import httpx
    import redis as sync_redis

    from bridge.metrics import Recorder
    from bridge.relay.dispatch import Dispatcher
    from bridge.relay.outbound import OutboundSender
    from bridge.store.connection import async_client
    from bridge.store.outbox import Outbox

    ra, rs = async_client(redis_url), sync_redis.Redis.from_url(redis_url)
    recorder = Recorder(ra)
    runner = DummyRunner("1-7")
    async with httpx.AsyncClient() as http:
        sender = OutboundSender(make_settings(), ra, Dispatcher(ra, rs), recorder, http)
        outbox = Outbox(ra, runner.instance_id)
        await outbox.ensure_group()
        await outbox.append(entry)
        task = asyncio.create_task(sender.consume(runner))
        try:
            deadline = time.monotonic() + 15
            while not (until(sender) and await outbox.depth() == 0):
                assert not task.done(), "the consumer ended"
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.05)
        finally:
            runner.finish()
            await asyncio.wait_for(task, 10)
            await recorder.close()
            await ra.aclose()
            rs.close()
    return runner, sender


@pytest.mark.parametrize("text", ["Chega amanhã", "C" * 65_536 + "\n\n" + "D" * 10])
async def test_redis_failing_right_after_a_send_never_sends_that_part_twice(
        make_settings: SettingsFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch,
        text: str) -> None:
    """WhatsApp took the part, then the transaction recording it found Redis gone: the entry
    was read again as pending, and the part, never recorded, went to the customer again."""
    import redis as sync_redis
    from redis.asyncio.client import Pipeline

    from bridge.convert.split import split_text
    from bridge.store import keys

    parts_key = keys.sent_parts(1, 77)
    left = {"failures": 3}
    execute = Pipeline.execute

    async def flaky(self: Pipeline, raise_on_error: bool = True) -> Any:
        if left["failures"] and any(args[:2] == ("HSET", parts_key)
                                    for args, _ in self.command_stack):
            left["failures"] -= 1
            raise sync_redis.exceptions.ConnectionError("injected: Redis went away")
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", flaky)
    runner, _ = await run_sender(make_settings, redis_url, _entry(text),
                                 until=lambda _: left["failures"] == 0)
    expected = split_text(text, 65_536)
    assert [c.text for c in runner.commands] == expected  # each part once, in order
    client = sync_redis.Redis.from_url(redis_url)
    try:
        recorded = {int(k): v.decode() for k, v in client.hgetall(parts_key).items()}
    finally:
        client.close()
    assert recorded == {n: f"3EB0{n:04d}" for n in range(1, len(expected) + 1)}


async def test_the_consumer_loop_is_restarted_after_an_unexpected_error(
        make_settings: SettingsFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.store.outbox import Outbox

    read = Outbox.read
    crashes = {"left": 1}

    async def crashing(self: Outbox, consumer: str, *, pending: bool, count: int = 10) -> Any:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("a bug in the loop")
        return await read(self, consumer, pending=pending, count=count)

    monkeypatch.setattr(Outbox, "read", crashing)
    runner, sender = await run_sender(make_settings, redis_url, _entry("Depois do reinício"),
                                      until=lambda s: s.restarts("1-7") == 1)
    assert [c.text for c in runner.commands] == ["Depois do reinício"]
    assert sender.restarts("1-7") == 1
