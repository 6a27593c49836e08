"""Agent commands (`erga ...`) through the real app, the scripted sidecar and the fake Chatwoot."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from starlette.testclient import TestClient

from bridge.store import keys
from bridge.web.app import create_app
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for
from tests.fakes.chatwoot import FakeChatwoot
from tests.test_webhook import INSTANCE, Hook, linked, payload, signed


class Desk(Hook):
    def say(self, text: str, n: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.post(payload(text, private=True, message_id=n)).json()
        return answer

    def runs(self) -> int:
        counter = self.control / f"{INSTANCE}.runs"
        return int(counter.read_text()) if counter.exists() else 0

    def sidecar_commands(self) -> list[str]:
        record = self.control / f"{INSTANCE}.commands.jsonl"
        if not record.exists():
            return []
        return [json.loads(line)["type"] for line in record.read_text().splitlines()]

    def last_note(self, count: int) -> str:
        wait_for(lambda: len(self.notes()) >= count, message=f"{count} notes")
        return self.notes()[count - 1]


@pytest.fixture
def desk(make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path,
         fake_chatwoot: FakeChatwoot) -> Iterator[Desk]:
    control = tmp_path / "control"
    settings = make_settings(
        baileys_sidecar_command=scripted_sidecar_command(control, "linked"),
        chatwoot_base_url=fake_chatwoot.url, chatwoot_api_access_token=fake_chatwoot.token,
        server_public_url="https://ponte.example.com")
    with TestClient(create_app(settings)) as client:
        yield Desk(client, redis_client, control)


def test_erga_on_a_healthy_number_asks_before_replacing_it(desk: Desk) -> None:
    linked(desk)  # note 1: starting; note 2: linked
    assert desk.say("erga", 10) == {"status": "command", "outcome": "already_linked"}
    assert "erga confirmar" in desk.last_note(3)
    assert desk.runs() == 1 and "logout" not in desk.sidecar_commands()
    assert desk.say("erga confirmar", 11)["outcome"] == "relinking"
    wait_for(lambda: "logout" in desk.sidecar_commands(), message="the old number unlinked")
    wait_for(lambda: desk.runs() == 2, message="a new pairing")
    assert desk.say("erga confirmar", 12)["outcome"] == "nothing_to_confirm"


def test_confirming_a_pair_question_relinks_by_pairing_code(desk: Desk) -> None:
    linked(desk)
    assert desk.say("erga pair +55 11 988887777", 10)["outcome"] == "already_linked"
    assert desk.redis.hget(keys.instance(INSTANCE), "pairing_phone") in (None, b"")
    assert desk.say("erga confirmar", 11)["outcome"] == "relinking"
    # The phone given with `pair` is kept: the new link is by pairing code, not by QR.
    assert desk.redis.hget(keys.instance(INSTANCE), "pairing_phone") == b"5511988887777"
    wait_for(lambda: desk.runs() == 2, message="a new pairing")


def test_a_bare_confirmar_confirms_the_inbox_the_question_was_about(desk: Desk) -> None:
    linked(desk)
    # Asked from another conversation (of inbox 2) about inbox 7 by id: a bare `confirmar`
    # there means inbox 7, not the conversation's own inbox.
    other = {"inbox_id": 2, "conversation_id": 77}
    answer = desk.post(payload("erga 7", private=True, message_id=10, **other)).json()
    assert answer["outcome"] == "already_linked"
    answer = desk.post(payload("erga confirmar", private=True, message_id=11, **other)).json()
    assert answer["outcome"] == "relinking"
    wait_for(lambda: "logout" in desk.sidecar_commands(), message="inbox 7's number unlinked")


def test_status_and_list_describe_the_numbers(desk: Desk) -> None:
    linked(desk)
    desk.say("erga status", 10)
    status = desk.last_note(3)
    assert "conectado" in status and "+5511999990000" in status and "fila: 0" in status
    desk.say("erga list", 11)
    listing = desk.last_note(4)
    assert "WhatsApp Loja" in listing and "+5511999990000" in listing
    desk.say("erga status 99", 12)
    assert "não tem WhatsApp" in desk.last_note(5)


def test_stop_and_start_keep_the_session(desk: Desk) -> None:
    linked(desk)
    assert desk.say("erga stop", 10)["outcome"] == "stop"
    assert "pausada" in desk.last_note(3)
    wait_for(lambda: "shutdown" in desk.sidecar_commands(), message="stopped")
    record = desk.redis.hgetall(keys.instance(INSTANCE))
    assert record[b"desired"] == b"stopped" and record[b"linked"] == b"1"
    assert desk.say("erga start", 11)["outcome"] == "start"
    wait_for(lambda: desk.runs() == 2, message="started again")
    assert desk.redis.hget(keys.instance(INSTANCE), "desired") == b"running"


def test_restart_restarts_and_logout_unlinks_and_wipes(desk: Desk) -> None:
    linked(desk)
    session = desk.services().settings.sessions_dir / INSTANCE
    (session / "creds.json").write_text("{}")
    desk.say("erga restart", 10)
    wait_for(lambda: desk.runs() == 2, message="restarted")
    runner = desk.services().supervisor.runner(INSTANCE)
    wait_for(lambda: runner.connection.value == "open", message="open again")
    desk.say("erga logout", 11)
    wait_for(lambda: "logout" in desk.sidecar_commands(), message="logout sent")
    note = wait_for(lambda: next((n for n in desk.notes() if "foi desligado" in n), None),
                    message="the logout note")
    assert "+5511999990000" in note
    wait_for(lambda: not session.exists(), message="session wiped")
    assert desk.redis.hget(keys.instance(INSTANCE), "linked") == b"0"
    assert not any("pelo celular" in n for n in desk.notes())  # asked for, not a surprise


def test_help_and_unknown_subcommands(desk: Desk) -> None:
    desk.say("erga ajuda", 10)
    assert "erga caixa <nome>" in desk.last_note(1)
    assert desk.say("erga voar", 11)["outcome"] == "help"


def test_caixa_creates_an_api_inbox_wired_to_ponte_and_links_it(
        desk: Desk, fake_chatwoot: FakeChatwoot) -> None:
    assert desk.say("erga caixa Suporte SP", 10)["outcome"] == "creating_inbox"
    inbox = wait_for(lambda: next((i for i in fake_chatwoot.inboxes
                                   if i["name"] == "Suporte SP"), None), message="the inbox")
    assert inbox["webhook_url"] == "https://ponte.example.com/webhook/chatwoot?token=hook-token"
    # Stored right after Chatwoot answers the inbox's creation (the fake lists it as soon as it
    # made it, before Ponte has the answer).
    wait_for(lambda: desk.redis.hget(keys.INBOX_SECRETS, str(inbox["id"]))
             == inbox["secret"].encode(), message="the inbox's secret stored")
    note = wait_for(lambda: next((n for n in desk.notes() if "Suporte SP" in n), None),
                    message="the note")
    assert f"id {inbox['id']}" in note
    wait_for(lambda: desk.redis.hget(keys.instance(f"1-{inbox['id']}"), "desired") == b"running",
             message="linking the new inbox")
    # Chatwoot signs that inbox's webhooks with its own secret: Ponte accepts them.
    body = json.dumps({"event": "conversation_created", "id": 1}).encode()
    answer = desk.client.post("/webhook/chatwoot", content=body,
                              headers=signed(body, secret=inbox["secret"]))
    assert answer.status_code == 200


def test_agente_invites_an_agent(desk: Desk, fake_chatwoot: FakeChatwoot) -> None:
    assert desk.say("erga agente ana@acme.test Ana Souza", 10)["outcome"] == "inviting_agent"
    assert "ana@acme.test" in desk.last_note(1)
    agents = fake_chatwoot.calls_to("POST", r"/agents$")
    assert agents and agents[0].json == {"email": "ana@acme.test", "name": "Ana Souza",
                                         "role": "agent"}


def test_commands_need_an_authorized_sender(desk: Desk) -> None:
    stranger = {"id": 9, "name": "Intern", "email": "intern@acme.test", "type": "user"}
    for n, text in enumerate(["erga stop", "erga logout", "erga caixa X", "erga agente a@b.c A"]):
        answer = desk.post(payload(text, sender=stranger, message_id=100 + n)).json()
        assert answer["outcome"] == "unauthorized"
    assert desk.redis.scard(keys.INSTANCES) == 0


def test_concurrent_erga_starts_exactly_one_sidecar(desk: Desk) -> None:
    together = threading.Barrier(4)
    answers: list[Any] = []

    def send(n: int) -> None:
        body = json.dumps(payload("erga", private=True, message_id=200 + n)).encode()
        together.wait()
        answers.append(desk.client.post("/webhook/chatwoot", content=body,
                                        headers=signed(body)).json())

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4
    # Each erga replaces the runner (stop, then start); the last one's sidecar stays.
    wait_for(lambda: (runner := desk.services().supervisor.runner(INSTANCE)) is not None
             and runner.status().pid, message="a sidecar")
    time.sleep(1.0)  # give a second sidecar, if any, the time to appear
    assert len(_sidecar_pids(desk)) == 1


def _sidecar_pids(desk: Desk) -> set[int]:
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "fakes/sidecar.py" in cmdline and str(desk.control) in cmdline:
            found.add(process.pid)
    return found
