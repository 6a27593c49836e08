"""The fake Chatwoot behaves like the contract (/work/shared/chatwoot/README.md) says v4.13 does.

Everything here goes over real loopback HTTP: httpx against the fake, the fake against a stdlib
webhook receiver. Signatures are recomputed here from the documented recipe, not by the fake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest

from .chatwoot import ROUTES, FakeChatwoot
from .conftest import Receiver

SPEC_DIR = Path("/work/shared/chatwoot")
JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
OGG = b"OggS\x00fake-opus"


# --- helpers ------------------------------------------------------------------------------------
def make_chat(api: httpx.Client, inbox_id: int, *, phone: str = "+5511999990000",
              source_id: str = "5511999990000") -> tuple[int, int]:
    """A contact with a contact_inbox and an open conversation, the way the bridge makes them."""
    created = api.post("/contacts", json={"name": "Maria", "phone_number": phone,
                                          "identifier": f"{phone[1:]}@s.whatsapp.net",
                                          "inbox_id": inbox_id, "source_id": source_id})
    assert created.status_code == 200, created.text
    contact_id = created.json()["payload"]["contact"]["id"]
    conv = api.post("/conversations", json={"inbox_id": inbox_id, "contact_id": contact_id,
                                            "source_id": source_id})
    assert conv.status_code == 200, conv.text
    return contact_id, conv.json()["id"]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                                hashlib.sha256).hexdigest()


# --- auth ---------------------------------------------------------------------------------------
def test_auth_errors(fake_chatwoot: FakeChatwoot, web: httpx.Client) -> None:
    base = f"{fake_chatwoot.url}/api/v1/accounts/1/inboxes"
    missing = web.get(base)
    assert (missing.status_code, missing.json()) == (
        401, {"error": "You need to sign in or sign up before continuing."})
    bad = web.get(base, headers={"api_access_token": "nope"})
    assert (bad.status_code, bad.json()) == (401, {"error": "Invalid Access Token"})
    other = fake_chatwoot.add_account("Other")
    foreign = web.get(f"{fake_chatwoot.url}/api/v1/accounts/{other['id']}/inboxes",
                        headers={"api_access_token": fake_chatwoot.token})
    assert (foreign.status_code, foreign.json()) == (
        401, {"error": "You are not authorized to access this account"})
    nowhere = web.get(f"{fake_chatwoot.url}/api/v1/accounts/999/inboxes",
                        headers={"api_access_token": fake_chatwoot.token})
    assert (nowhere.status_code, nowhere.json()) == (404, {"error": "Resource could not be found"})
    # Rack turns Api-Access-Token into HTTP_API_ACCESS_TOKEN too.
    assert web.get(base, headers={"Api-Access-Token": fake_chatwoot.token}).status_code == 200
    profile = web.get(f"{fake_chatwoot.url}/api/v1/profile",
                        headers={"api_access_token": fake_chatwoot.token}).json()
    assert profile["id"] == fake_chatwoot.admin["id"]
    assert profile["accounts"][0]["role"] == "administrator"


def test_agent_bot_token_only_on_allowed_calls(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                                               web: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    bot = fake_chatwoot.add_agent_bot("Helper")
    headers = {"api_access_token": bot["access_token"]}
    base = f"{fake_chatwoot.url}/api/v1/accounts/1"
    denied = web.get(f"{base}/contacts/search", params={"q": "a"}, headers=headers)
    assert (denied.status_code, denied.json()) == (
        401, {"error": "Access to this endpoint is not authorized for bots"})
    posted = web.post(f"{base}/conversations/{conv}/messages", json={"content": "beep"},
                        headers=headers)
    assert posted.status_code == 200
    assert posted.json()["sender"] == {"id": bot["id"], "name": "Helper", "avatar_url": "",
                                       "type": "agent_bot"}
    toggled = web.post(f"{base}/conversations/{conv}/toggle_status", json={"status": "pending"},
                         headers=headers)
    assert toggled.json()["payload"]["current_status"] == "pending"


def test_agents_see_only_member_inboxes(fake_chatwoot: FakeChatwoot, web: httpx.Client) -> None:
    first = fake_chatwoot.add_inbox("One")
    agent = fake_chatwoot.add_agent("Bob", "bob@acme.test", inbox_ids=[])
    second = fake_chatwoot.add_inbox("Two", members=[agent["id"]])
    base = f"{fake_chatwoot.url}/api/v1/accounts/1"
    headers = {"api_access_token": agent["access_token"]}
    listed = web.get(f"{base}/inboxes", headers=headers).json()["payload"]
    assert [i["id"] for i in listed] == [second["id"]]
    assert "secret" not in listed[0] and "hmac_token" not in listed[0]
    hidden = web.get(f"{base}/inboxes/{first['id']}", headers=headers)
    assert (hidden.status_code, hidden.json()) == (
        401, {"error": "You are not authorized to do this action"})
    invite = web.post(f"{base}/agents", json={"name": "X", "email": "x@y.z"}, headers=headers)
    assert invite.status_code == 401


# --- inboxes ------------------------------------------------------------------------------------
def test_inbox_create_update_reset_secret(api: httpx.Client) -> None:
    created = api.post("/inboxes", json={"name": "WhatsApp", "channel": {
        "type": "api", "webhook_url": "http://127.0.0.1:9/hook"}})
    assert created.status_code == 200
    inbox = created.json()
    assert inbox["channel_type"] == "Channel::Api"
    assert inbox["webhook_url"] == "http://127.0.0.1:9/hook"
    assert inbox["secret"] and inbox["hmac_token"] and inbox["inbox_identifier"]
    patched = api.patch(f"/inboxes/{inbox['id']}", json={
        "lock_to_single_conversation": True, "channel": {"webhook_url": "http://127.0.0.1:9/x"}})
    assert patched.json()["lock_to_single_conversation"] is True
    assert patched.json()["webhook_url"] == "http://127.0.0.1:9/x"
    reset = api.post(f"/inboxes/{inbox['id']}/reset_secret").json()
    assert reset["secret"] != inbox["secret"]
    assert api.get(f"/inboxes/{inbox['id']}").json()["secret"] == reset["secret"]
    assert [i["id"] for i in api.get("/inboxes").json()["payload"]] == [inbox["id"]]


# --- contacts -----------------------------------------------------------------------------------
def test_contact_create_and_validation_errors(fake_chatwoot: FakeChatwoot,
                                              api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    created = api.post("/contacts", json={
        "name": "Maria", "phone_number": "+5511999990000",
        "identifier": "5511999990000@s.whatsapp.net", "email": "Maria@X.io",
        "custom_attributes": {"tier": "gold"}, "inbox_id": inbox["id"],
        "source_id": "5511999990000"})
    assert created.status_code == 200
    payload = created.json()["payload"]
    assert payload["contact"]["email"] == "maria@x.io"
    assert payload["contact"]["custom_attributes"] == {"tier": "gold"}
    assert payload["contact_inbox"]["source_id"] == "5511999990000"
    assert payload["contact_inbox"]["inbox"]["id"] == inbox["id"]

    dup = api.post("/contacts", json={"name": "Other",
                                      "identifier": "5511999990000@s.whatsapp.net"})
    assert (dup.status_code, dup.json()) == (
        422, {"message": "Identifier has already been taken", "attributes": ["identifier"]})
    both = api.post("/contacts", json={"phone_number": "+5511999990000", "email": "maria@x.io"})
    assert both.status_code == 422
    assert both.json() == {"message": "Email has already been taken, "
                                      "Phone number has already been taken",
                           "attributes": ["email", "phone_number"]}
    bad_phone = api.post("/contacts", json={"name": "No plus", "phone_number": "5511988887777"})
    assert (bad_phone.status_code, bad_phone.json()) == (
        422, {"message": "Phone number should be in e164 format", "attributes": ["phone_number"]})

    generated = api.post("/contacts", json={"name": "Anon", "inbox_id": inbox["id"]}).json()
    assert re.fullmatch(r"[0-9a-f-]{36}", generated["payload"]["contact_inbox"]["source_id"])
    no_inbox = api.post("/contacts", json={"name": "Loose"}).json()
    assert no_inbox["payload"]["contact_inbox"] == {"inbox": None, "source_id": None}

    taken = api.post("/contacts", json={"name": "Clash", "inbox_id": inbox["id"],
                                        "source_id": "5511999990000"})
    assert taken.status_code == 500  # RecordNotUnique is not mapped
    assert not any(c["name"] == "Clash" for c in fake_chatwoot.contacts)  # rolled back


def test_contact_show_update_merge_delete(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    contact = fake_chatwoot.add_contact("Ana", phone_number="+5511911112222",
                                        custom_attributes={"a": 1},
                                        additional_attributes={"city": "SP"})
    updated = api.put(f"/contacts/{contact['id']}", json={
        "name": "Ana Maria", "custom_attributes": {"b": 2}, "additional_attributes": {"x": 1}})
    assert updated.status_code == 200
    body = updated.json()["payload"]
    assert body["name"] == "Ana Maria"
    assert body["custom_attributes"] == {"a": 1, "b": 2}
    assert body["additional_attributes"] == {"city": "SP", "x": 1}
    assert api.patch(f"/contacts/{contact['id']}", json={"phone_number": "123"}).status_code == 422
    shown = api.get(f"/contacts/{contact['id']}").json()["payload"]
    assert shown["phone_number"] == "+5511911112222" and shown["contact_inboxes"] == []
    assert api.delete(f"/contacts/{contact['id']}").status_code == 200
    gone = api.get(f"/contacts/{contact['id']}")
    assert (gone.status_code, gone.json()) == (404, {"error": "Resource could not be found"})


def test_contact_inboxes_filter_and_create(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    contact = fake_chatwoot.add_contact("Zé", phone_number="+5511933334444",
                                        inbox_id=inbox["id"], source_id="5511933334444")
    hit = api.post("/contact_inboxes/filter", json={"inbox_id": inbox["id"],
                                                    "source_id": "5511933334444"})
    assert hit.status_code == 200
    assert hit.json()["id"] == contact["id"]
    assert hit.json()["contact_inboxes"][0]["source_id"] == "5511933334444"
    miss = api.post("/contact_inboxes/filter", json={"inbox_id": inbox["id"], "source_id": "x"})
    assert (miss.status_code, miss.content) == (404, b"")

    again = api.post(f"/contacts/{contact['id']}/contact_inboxes",
                     json={"inbox_id": inbox["id"], "source_id": "5511933334444"})
    assert again.json() == {"source_id": "5511933334444", "inbox": {
        "id": inbox["id"], "avatar_url": "", "channel_id": inbox["channel_id"],
        "name": inbox["name"], "channel_type": "Channel::Api", "provider": None}}
    other = fake_chatwoot.add_contact("Other", phone_number="+5511900000000")
    clash = api.post(f"/contacts/{other['id']}/contact_inboxes",
                     json={"inbox_id": inbox["id"], "source_id": "5511933334444"})
    assert clash.status_code == 500


def test_search_pages_and_like_semantics(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    for n in range(17):
        fake_chatwoot.add_contact(f"Cliente {n:02d}", phone_number=f"+55119000000{n:02d}")
    fake_chatwoot.add_contact("Case", identifier="AbC-id")
    fake_chatwoot.add_contact("Literal", email="under_score@x.io")

    first = api.get("/contacts/search", params={"q": "cliente"}).json()
    assert first["meta"] == {"count": 15, "current_page": 1, "has_more": True}
    second = api.get("/contacts/search", params={"q": "cliente", "page": 2}).json()
    assert second["meta"] == {"count": 2, "current_page": "2", "has_more": False}
    assert {c["id"] for c in first["payload"]}.isdisjoint(c["id"] for c in second["payload"])

    # `+` must travel as %2B; the phone column is ILIKE'd.
    assert api.get("/contacts/search?q=%2B5511900000003").json()["meta"]["count"] == 1
    # identifier is LIKE (case-sensitive), name ILIKE.
    assert api.get("/contacts/search", params={"q": "AbC-"}).json()["meta"]["count"] == 1
    assert api.get("/contacts/search", params={"q": "abc-"}).json()["meta"]["count"] == 0
    assert api.get("/contacts/search", params={"q": "CASE"}).json()["meta"]["count"] == 1
    # q is not escaped: `_` and `%` are wildcards.
    wild = api.get("/contacts/search", params={"q": "r_s"}).json()["payload"]
    assert [c["name"] for c in wild] == ["Literal"]  # "undeR_Score" via the email
    assert api.get("/contacts/search", params={"q": "Cli%03"}).json()["meta"]["count"] == 1
    missing = api.get("/contacts/search")
    assert (missing.status_code, missing.json()) == (
        422, {"error": "Specify search string with parameter q"})


def test_contacts_filter_normalises_phone(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    contact = fake_chatwoot.add_contact("Maria", phone_number="+5511999990000",
                                        email="m@x.io", identifier="ID-1")
    fake_chatwoot.add_contact("Name only")

    def run(key: str, op: str, value: str) -> list[int]:
        body = {"payload": [{"attribute_key": key, "filter_operator": op, "values": [value],
                             "query_operator": None}]}
        answer = api.post("/contacts/filter", json=body)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["payload"]]

    assert run("phone_number", "equal_to", "5511999990000") == [contact["id"]]
    assert run("phone_number", "equal_to", "+5511999990000") == [contact["id"]]
    assert run("email", "equal_to", "M@X.IO") == [contact["id"]]
    assert run("identifier", "equal_to", "id-1") == [contact["id"]]
    assert run("name", "contains", "ari") == [contact["id"]]
    assert run("name", "equal_to", "Name only") == []  # no email/phone/identifier: unresolved
    bad = api.post("/contacts/filter", json={"payload": [
        {"attribute_key": "shoe_size", "filter_operator": "equal_to", "values": ["1"]}]})
    assert bad.status_code == 422 and "shoe_size" in bad.json()["error"]


# --- conversations ------------------------------------------------------------------------------
def test_conversation_create_source_id_rules_and_lock(fake_chatwoot: FakeChatwoot,
                                                      api: httpx.Client,
                                                      receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    contact_id, conv_id = make_chat(api, inbox["id"])
    conv = api.get(f"/conversations/{conv_id}").json()
    assert conv["status"] == "open" and conv["inbox_id"] == inbox["id"]
    assert conv["meta"]["sender"]["id"] == contact_id
    receiver.wait("conversation_created")

    other = fake_chatwoot.add_contact("Other", phone_number="+5511900000001")
    clash = api.post("/conversations", json={"inbox_id": inbox["id"], "contact_id": other["id"],
                                             "source_id": "5511999990000"})
    assert (clash.status_code, clash.json()) == (422, {"error": "source_id should be unique"})

    # Without lock a second conversation is created; by source_id alone too.
    second = api.post("/conversations", json={"source_id": "5511999990000"}).json()
    assert second["id"] != conv_id
    unknown = api.post("/conversations", json={"source_id": "nobody"})
    assert unknown.status_code == 404

    locked = fake_chatwoot.add_inbox("Locked", lock_to_single_conversation=True)
    c = fake_chatwoot.add_contact("L", phone_number="+5511900000002")
    body = {"inbox_id": locked["id"], "contact_id": c["id"], "source_id": "L1"}
    one = api.post("/conversations", json=body).json()
    api.post(f"/conversations/{one['id']}/toggle_status", json={"status": "resolved"})
    again = api.post("/conversations", json=body).json()
    assert again["id"] == one["id"] and again["status"] == "resolved"
    # Without source_id every call makes a fresh contact_inbox, so the lock does not apply.
    fresh = api.post("/conversations", json={"inbox_id": locked["id"], "contact_id": c["id"]})
    assert fresh.json()["id"] != one["id"]


def test_conversation_index_filters_and_contact_conversations(fake_chatwoot: FakeChatwoot,
                                                              api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    contact_id, conv_id = make_chat(api, inbox["id"])
    _, other_id = make_chat(api, inbox["id"], phone="+5511900000009", source_id="other")
    api.post(f"/conversations/{other_id}/toggle_status", json={"status": "resolved"})
    listed = api.get("/conversations", params={"inbox_id": inbox["id"]}).json()["data"]
    assert [c["id"] for c in listed["payload"]] == [conv_id]  # status defaults to open
    assert listed["meta"] == {"mine_count": 0, "assigned_count": 0, "unassigned_count": 1,
                              "all_count": 1}
    everything = api.get("/conversations", params={"status": "all"}).json()["data"]
    assert {c["id"] for c in everything["payload"]} == {conv_id, other_id}
    by_source = api.get("/conversations", params={"status": "all", "source_id": "other",
                                                  "inbox_id": inbox["id"]}).json()["data"]
    assert [c["id"] for c in by_source["payload"]] == [other_id]
    of_contact = api.get(f"/contacts/{contact_id}/conversations").json()["payload"]
    assert [c["id"] for c in of_contact] == [conv_id]


def test_toggle_status_payload_and_activity(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                                            receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    toggled = api.post(f"/conversations/{conv}/toggle_status").json()
    assert toggled == {"meta": {}, "payload": {"success": True, "conversation_id": conv,
                                               "current_status": "resolved",
                                               "snoozed_until": None}}
    snoozed = api.post(f"/conversations/{conv}/toggle_status",
                       json={"status": "snoozed", "snoozed_until": 1893456000}).json()
    assert snoozed["payload"]["current_status"] == "snoozed"
    assert snoozed["payload"]["snoozed_until"] == "2030-01-01T00:00:00.000Z"
    changed = receiver.wait("conversation_status_changed", 2)
    assert changed[0].json["status"] == "resolved"
    assert changed[0].json["changed_attributes"] is None
    updated = receiver.wait("conversation_updated")[0].json
    assert {"status": {"previous_value": "open", "current_value": "resolved"}} in \
        updated["changed_attributes"]
    listed = api.get(f"/conversations/{conv}/messages").json()["payload"]
    assert [m["message_type"] for m in listed] == [2, 2]  # activity messages, no webhooks
    assert listed[0]["content"] == "Conversation was marked resolved by Ponte Admin"
    assert fake_chatwoot.messages(conv) == []  # the helper hides activity unless asked


# --- messages -----------------------------------------------------------------------------------
def test_message_create_json_defaults_and_echo(fake_chatwoot: FakeChatwoot,
                                               api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    answer = api.post(f"/conversations/{conv}/messages", json={
        "content": "from the phone", "source_id": "WAID-1", "echo_id": "e-1",
        "external_created_at": 1776680000})
    assert answer.status_code == 200
    msg = answer.json()
    assert msg["message_type"] == 1  # outgoing is the default, an int in REST
    assert msg["echo_id"] == "e-1" and msg["source_id"] == "WAID-1"
    assert msg["content_attributes"] == {"external_created_at": 1776680000}
    assert msg["sender"]["type"] == "user" and msg["sender"]["id"] == fake_chatwoot.admin["id"]
    assert msg["conversation_id"] == conv and msg["status"] == "sent"
    # source_id is not unique: the same one again is simply a second message.
    dup = api.post(f"/conversations/{conv}/messages", json={"content": "again",
                                                            "source_id": "WAID-1"}).json()
    assert dup["id"] != msg["id"]
    assert "echo_id" not in api.get(f"/conversations/{conv}/messages").json()["payload"][0]


def test_message_multipart_attachments_and_recording(fake_chatwoot: FakeChatwoot,
                                                     api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    answer = api.post(
        f"/conversations/{conv}/messages",
        data={"content": "two files", "message_type": "incoming", "private": "false",
              "source_id": "WAID-9", "content_attributes": json.dumps({"k": "v"})},
        files=[("attachments[]", ("photo.jpg", JPEG, "image/jpeg")),
               ("attachments[]", ("voice.ogg", OGG, "audio/ogg; codecs=opus"))])
    assert answer.status_code == 200, answer.text
    msg = answer.json()
    assert msg["message_type"] == 0 and msg["private"] is False
    assert msg["content_attributes"] == {"k": "v"}
    kinds = [(a["file_type"], a["content_type"], a["extension"], a["file_size"])
             for a in msg["attachments"]]
    assert kinds == [("image", "image/jpeg", "jpg", len(JPEG)),
                     ("audio", "audio/ogg", "ogg", len(OGG))]
    call = fake_chatwoot.calls_to("POST", r"/messages$")[-1]
    assert call.form is not None and call.form["content"] == "two files"
    assert [(f.name, f.filename, f.content_type, f.size) for f in call.files] == [
        ("attachments[]", "photo.jpg", "image/jpeg", len(JPEG)),
        ("attachments[]", "voice.ogg", "audio/ogg; codecs=opus", len(OGG))]
    assert call.status == 200 and call.response["id"] == msg["id"]

    others = api.post(f"/conversations/{conv}/messages", data={"content": "more"}, files=[
        ("attachments[]", ("a.png", b"png", "image/png")),
        ("attachments[]", ("b.mp4", b"mp4", "video/mp4")),
        ("attachments[]", ("c.pdf", b"pdf", "application/pdf")),
        ("attachments[]", ("d.svg", b"svg", "image/svg+xml"))]).json()
    assert [a["file_type"] for a in others["attachments"]] == ["image", "video", "file", "file"]
    too_many = api.post(f"/conversations/{conv}/messages", files=[
        ("attachments[]", (f"{i}.txt", b"x", "text/plain")) for i in range(16)])
    assert too_many.status_code == 422


def test_attachment_data_url_redirects_then_serves_bytes(fake_chatwoot: FakeChatwoot,
                                                         api: httpx.Client,
                                                         web: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    msg = fake_chatwoot.agent_message(conv, None, attachments=[("photo.jpg", JPEG, "image/jpeg")])
    data_url = msg["attachments"][0]["data_url"]
    assert data_url.startswith(fake_chatwoot.url + "/rails/active_storage/blobs/redirect/")
    first = web.get(data_url)
    assert first.status_code == 302
    assert "/rails/active_storage/disk/" in first.headers["location"]
    followed = web.get(data_url, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.content == JPEG
    assert followed.headers["content-type"] == "image/jpeg"


def test_in_reply_to_rewriting(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    original = api.post(f"/conversations/{conv}/messages", json={
        "content": "hi", "message_type": "incoming", "source_id": "WAID-1"}).json()

    def reply(attrs: dict[str, Any]) -> dict[str, Any]:
        answer = api.post(f"/conversations/{conv}/messages",
                          json={"content": "re", "content_attributes": attrs})
        return dict(answer.json()["content_attributes"])

    expected = {"in_reply_to": original["id"], "in_reply_to_external_id": "WAID-1"}
    assert reply({"in_reply_to": original["id"]}) == expected
    assert reply({"in_reply_to": str(original["id"])}) == expected
    assert reply({"in_reply_to_external_id": "WAID-1"}) == expected
    assert reply({"in_reply_to_external_id": "WAID-404"}) == {
        "in_reply_to": None, "in_reply_to_external_id": None}
    # A message of another conversation is not found either.
    _, other = make_chat(api, inbox["id"], phone="+5511900000005", source_id="o")
    foreign = api.post(f"/conversations/{other}/messages", json={
        "content": "x", "content_attributes": {"in_reply_to": original["id"]}}).json()
    assert foreign["content_attributes"] == {"in_reply_to": None, "in_reply_to_external_id": None}


def test_incoming_reopens_resolved_and_incoming_needs_api_inbox(fake_chatwoot: FakeChatwoot,
                                                                api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    api.post(f"/conversations/{conv}/toggle_status", json={"status": "resolved"})
    api.post(f"/conversations/{conv}/messages", json={"content": "x", "message_type": "outgoing"})
    assert api.get(f"/conversations/{conv}").json()["status"] == "resolved"
    api.post(f"/conversations/{conv}/messages",
             json={"content": "back", "message_type": "incoming"})
    assert api.get(f"/conversations/{conv}").json()["status"] == "open"

    widget = fake_chatwoot.add_inbox("Site", channel_type="Channel::WebWidget")
    web_conv = fake_chatwoot.create_conversation_for("+5511977776666", widget)
    refused = api.post(f"/conversations/{web_conv['id']}/messages",
                       json={"content": "x", "message_type": "incoming"})
    assert (refused.status_code, refused.json()) == (
        422, {"error": "Incoming messages are only allowed in Api inboxes"})
    bad_type = api.post(f"/conversations/{conv}/messages", json={"content": "x",
                                                                "message_type": "sideways"})
    assert bad_type.status_code == 422


def test_message_validation_errors(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    too_long = api.post(f"/conversations/{conv}/messages", json={"content": "x" * 150_001})
    assert (too_long.status_code, too_long.json()) == (
        422, {"error": "Validation failed: Content is too long (maximum is 150000 characters)"})
    assert api.post(f"/conversations/{conv}/messages",
                    json={"content": "x" * 150_000}).status_code == 200

    fake_chatwoot.message_rate_limit = 3  # 200 in Chatwoot; the rule is the same
    for _ in range(2):
        assert api.post(f"/conversations/{conv}/messages", json={"content": "m"}).status_code == 200
    flood = api.post(f"/conversations/{conv}/messages", json={"content": "m"})
    assert (flood.status_code, flood.json()) == (
        422, {"error": "Validation failed: Too many messages"})
    # The window is one minute of the fake's clock.
    later = time.time() + 61
    fake_chatwoot.clock = lambda: later
    assert api.post(f"/conversations/{conv}/messages", json={"content": "m"}).status_code == 200


def test_message_status_patch(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                              receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    msg = fake_chatwoot.agent_message(conv, "hello")
    path = f"/conversations/{conv}/messages/{msg['id']}"
    assert api.patch(path, json={"status": "read"}).json()["status"] == "read"
    assert api.patch(path, json={"status": "delivered"}).json()["status"] == "read"  # ignored
    failed = api.patch(path, json={"status": "failed", "external_error": "WA said no"}).json()
    assert failed["status"] == "failed"
    assert failed["content_attributes"]["external_error"] == "WA said no"
    updates = receiver.wait("message_updated", 2)  # read, failed (delivered changed nothing)
    assert "status" not in updates[0].json and "changed_attributes" not in updates[0].json
    fake_chatwoot.flush_webhooks()
    assert len(receiver.of("message_updated")) == 2

    widget = fake_chatwoot.add_inbox("Site", channel_type="Channel::WebWidget")
    web_conv = fake_chatwoot.create_conversation_for("+5511977776666", widget, message="hi")
    web_msg = fake_chatwoot.messages(web_conv["id"])[0]
    refused = api.patch(f"/conversations/{web_conv['id']}/messages/{web_msg['id']}",
                        json={"status": "read"})
    assert refused.status_code == 403


def test_soft_delete(fake_chatwoot: FakeChatwoot, api: httpx.Client, receiver: Receiver,
                     web: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    msg = fake_chatwoot.agent_message(conv, "oops", attachments=[("a.jpg", JPEG, "image/jpeg")])
    deleted = api.delete(f"/conversations/{conv}/messages/{msg['id']}").json()
    assert deleted["content"] == "This message was deleted"
    assert deleted["content_attributes"] == {"deleted": True}
    assert "attachments" not in deleted
    assert web.get(msg["attachments"][0]["data_url"]).status_code == 404
    update = receiver.wait("message_updated")[0].json
    assert update["content_attributes"] == {"deleted": True} and "attachments" not in update


def test_messages_index_windows(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    ids = [fake_chatwoot.contact_message(conv, f"m{i}")["id"] for i in range(25)]
    page = api.get(f"/conversations/{conv}/messages").json()
    assert [m["id"] for m in page["payload"]] == ids[-20:]
    assert page["meta"]["contact"]["phone_number"] == "+5511999990000"
    before = api.get(f"/conversations/{conv}/messages", params={"before": ids[5]}).json()
    assert [m["id"] for m in before["payload"]] == ids[:5]
    after = api.get(f"/conversations/{conv}/messages", params={"after": ids[19]}).json()
    assert [m["id"] for m in after["payload"]] == ids[20:]


# --- webhooks -----------------------------------------------------------------------------------
def test_message_created_webhook_signature_headers_and_escaping(
        fake_chatwoot: FakeChatwoot, api: httpx.Client, receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    msg = fake_chatwoot.agent_message(conv, "<b>Tom & Jerry</b> ok")
    got = receiver.wait("message_created")[0]

    names = {k for k, _ in got.headers}
    assert {"Content-Type", "Accept", "X-Chatwoot-Delivery", "X-Chatwoot-Timestamp",
            "X-Chatwoot-Signature"} <= names
    assert got.header("Content-Type") == "application/json"
    assert got.header("Accept") == "application/json"
    assert re.fullmatch(r"[0-9a-f-]{36}", got.header("X-Chatwoot-Delivery") or "")
    timestamp = got.header("X-Chatwoot-Timestamp") or ""
    assert abs(int(timestamp) - time.time()) < 30
    assert got.header("X-Chatwoot-Signature") == signature(inbox["secret"], timestamp, got.body)

    assert b"\\u003cb\\u003eTom \\u0026 Jerry\\u003c/b\\u003e" in got.body
    assert b"<" not in got.body and b", " not in got.body  # compact separators
    data = got.json
    assert data["content"] == "<b>Tom & Jerry</b> ok"
    assert data["id"] == msg["id"] and data["message_type"] == "outgoing"
    assert data["content_type"] == "text" and data["private"] is False
    assert data["sender"] == {"id": fake_chatwoot.default_agent["id"], "name": "Alice Agent",
                              "email": "alice@acme.test", "type": "user"}
    assert data["inbox"] == {"id": inbox["id"], "name": inbox["name"]}
    assert data["account"] == {"id": 1, "name": "Acme"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])
    assert "attachments" not in data and "echo_id" not in data

    conversation = data["conversation"]
    assert conversation["id"] == conv and conversation["channel"] == "Channel::Api"
    assert conversation["contact_inbox"]["source_id"] == "5511999990000"
    assert conversation["meta"]["sender"]["type"] == "contact"
    assert conversation["meta"]["sender"]["phone_number"] == "+5511999990000"
    last = conversation["messages"]
    assert len(last) == 1 and last[0]["id"] == msg["id"]
    assert last[0]["message_type"] == 1 and isinstance(last[0]["created_at"], int)
    assert isinstance(conversation["updated_at"], float)

    delivery = fake_chatwoot.wait_for_delivery("message_created")
    assert delivery.status == 200 and delivery.ok and delivery.kind == "api_inbox"


def test_webhook_sender_shapes(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                               receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    fake_chatwoot.contact_message(conv, "from contact",
                                  attachments=[("v.ogg", OGG, "audio/ogg")])
    fake_chatwoot.template_message(conv, "We are away")
    fake_chatwoot.agent_message(conv, "note", private=True)
    created = receiver.wait("message_created", 3)
    contact, template, note = (r.json for r in created)
    assert contact["message_type"] == "incoming"
    assert "type" not in contact["sender"]
    assert set(contact["sender"]) == {"account", "additional_attributes", "avatar",
                                      "custom_attributes", "email", "id", "identifier", "name",
                                      "phone_number", "thumbnail", "blocked"}
    audio = contact["attachments"][0]
    assert audio["file_type"] == "audio" and audio["content_type"] == "audio/ogg"
    assert audio["data_url"].startswith(fake_chatwoot.url)
    assert "transcribed_text" in audio
    assert template["message_type"] == "template" and template["sender"] is None
    assert note["private"] is True
    # The conversation's `messages` holds only the last non-private one.
    assert note["conversation"]["messages"][0]["id"] == template["id"]


def test_failing_receiver_marks_message_failed(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                                               receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    receiver.status = 500
    msg = fake_chatwoot.agent_message(conv, "will fail")
    update = receiver.wait("message_updated")[0].json
    assert update["id"] == msg["id"]
    assert update["content_attributes"]["external_error"] == "500 Internal Server Error"
    stored = fake_chatwoot.message(msg["id"])
    assert stored["status"] == "failed"
    fake_chatwoot.flush_webhooks()
    # The failed message_updated fails too, but changes nothing, so the chain stops.
    assert len(receiver.of("message_updated")) == 1

    receiver.status, receiver.location = 302, "http://127.0.0.1:9/elsewhere"
    redirected = fake_chatwoot.agent_message(conv, "redirect")
    fake_chatwoot.wait_for(lambda: fake_chatwoot.message(redirected["id"])["status"] == "failed")
    assert fake_chatwoot.message(redirected["id"])["content_attributes"]["external_error"] == \
        "302 Found"

    receiver.status, receiver.location, receiver.delay = 200, None, 0.5
    fake_chatwoot.webhook_timeout = 0.1
    slow = fake_chatwoot.agent_message(conv, "slow")
    fake_chatwoot.wait_for(lambda: fake_chatwoot.message(slow["id"])["status"] == "failed")
    assert fake_chatwoot.message(slow["id"])["content_attributes"]["external_error"] == \
        "Timed out reading data from server"


def test_account_webhook_and_signing_switch(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                                            receiver: Receiver) -> None:
    created = api.post("/webhooks", json={"url": receiver.url,
                                          "subscriptions": ["message_created"]})
    hook = created.json()["payload"]["webhook"]
    inbox = fake_chatwoot.add_inbox()  # no inbox webhook: only the account webhook fires
    _, conv = make_chat(api, inbox["id"])
    fake_chatwoot.agent_message(conv, "one")
    got = receiver.wait("message_created")[0]
    timestamp = got.header("X-Chatwoot-Timestamp") or ""
    assert got.header("X-Chatwoot-Signature") == signature(hook["secret"], timestamp, got.body)
    assert receiver.events() == ["message_created"]  # conversation_created not subscribed

    fake_chatwoot.signing = False  # <= v4.11
    fake_chatwoot.agent_message(conv, "two")
    old = receiver.wait("message_created", 2)[1]
    assert old.header("X-Chatwoot-Signature") is None
    assert old.header("X-Chatwoot-Delivery") is None
    assert old.header("X-Chatwoot-Timestamp") is None

    # v4.12 signs account webhooks only: the API-inbox delivery comes unsigned.
    fake_chatwoot.signing = "account_only"
    fake_chatwoot.update_inbox(inbox["id"], webhook_url=receiver.url)
    fake_chatwoot.agent_message(conv, "three")
    third = receiver.wait("message_created", 4)[2:]
    signed = [r.header("X-Chatwoot-Signature") is not None for r in third]
    assert sorted(signed) == [False, True]
    assert all(r.header("X-Chatwoot-Delivery") for r in third)


def test_webhooks_do_not_block_the_api(fake_chatwoot: FakeChatwoot, api: httpx.Client,
                                       receiver: Receiver) -> None:
    inbox = fake_chatwoot.add_inbox(webhook_url=receiver.url)
    _, conv = make_chat(api, inbox["id"])
    fake_chatwoot.flush_webhooks()  # conversation_created is out of the way
    receiver.gate = threading.Event()  # the receiver will not answer until we say so
    answer = api.post(f"/conversations/{conv}/messages", json={"content": "quick"})
    assert answer.status_code == 200
    receiver.wait("message_created")  # it has arrived, and is still unanswered
    assert fake_chatwoot.deliveries_for("message_created") == []
    receiver.gate.set()
    assert fake_chatwoot.wait_for_delivery("message_created").status == 200


# --- failure injection --------------------------------------------------------------------------
def test_failure_injection(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    _, conv = make_chat(api, inbox["id"])
    path = f"/conversations/{conv}/messages"
    fake_chatwoot.fail(r"/messages$", method="POST", status=500, times=1)
    first = api.post(path, json={"content": "a"})
    assert (first.status_code, first.json()) == (500, {"status": 500,
                                                       "error": "Internal Server Error"})
    assert api.post(path, json={"content": "a"}).status_code == 200

    fake_chatwoot.fail(r"/messages$", status=429, times=1)
    throttled = api.post(path, json={"content": "b"})
    assert throttled.status_code == 429
    assert throttled.text == "Retry later\n"
    assert throttled.headers["content-type"].startswith("text/plain")
    assert "retry-after" not in throttled.headers

    fake_chatwoot.timeout_hold = 2.0
    fake_chatwoot.fail(r"/messages$", status="timeout", times=1, apply=True)
    with pytest.raises(httpx.ReadTimeout):
        api.post(path, json={"content": "lost reply"}, timeout=0.2)
    # apply=True: Chatwoot committed although the client never saw the answer.
    assert fake_chatwoot.messages(conv)[-1]["content"] == "lost reply"
    held = fake_chatwoot.calls_to("POST", r"/messages$")[-1]
    assert held.injected == "timeout"

    fake_chatwoot.fail_ratio(0.5, statuses=(503,), seed=7)
    statuses = [api.get("/inboxes").status_code for _ in range(20)]
    assert set(statuses) == {200, 503}
    fake_chatwoot.fail_ratio(0)
    assert api.get("/inboxes").status_code == 200


def test_reset_and_helpers(fake_chatwoot: FakeChatwoot, api: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    conv = fake_chatwoot.create_conversation_for("+5511922223333", inbox, message="Olá")
    assert re.fullmatch(r"[0-9a-f-]{36}", conv["messages"][0]["conversation"]["contact_inbox"]
                        ["source_id"])
    assert fake_chatwoot.conversation(conv["id"])["meta"]["sender"]["phone_number"] == \
        "+5511922223333"
    fake_chatwoot.delete_conversation(conv["id"])
    assert api.get(f"/conversations/{conv['id']}").status_code == 404
    token = fake_chatwoot.token
    fake_chatwoot.reset()
    assert fake_chatwoot.contacts == [] and fake_chatwoot.calls == []
    assert fake_chatwoot.token == token and api.get("/inboxes").json() == {"payload": []}
    unknown = api.get("/canned_responses")
    assert unknown.status_code == 501


# --- the OpenAPI spec ---------------------------------------------------------------------------
# Routes the contract lists as existing in the code but missing from swagger.json.
CONTRACT_MISSING_FROM_SPEC = {
    ("PATCH", "/api/v1/accounts/{}/conversations/{}/messages/{}"),
    ("POST", "/api/v1/accounts/{}/contact_inboxes/filter"),
    ("POST", "/api/v1/accounts/{}/inboxes/{}/reset_secret"),
    ("DELETE", "/api/v1/accounts/{}/contacts/{}/avatar"),
}
# Served on purpose although the spec lacks them: Rails `resources :contacts` routes PATCH to
# update as well as the documented PUT; conversation deletion exists in v4.13 (admins) and the
# brief wants tests to simulate a deleted conversation.
FAKE_EXTRAS_NOT_IN_SPEC = {
    ("PATCH", "/api/v1/accounts/{}/contacts/{}"),
    ("DELETE", "/api/v1/accounts/{}/conversations/{}"),
}


def _norm(path: str) -> str:
    if path.startswith("/accounts/"):  # the one malformed path in swagger.json
        path = "/api/v1" + path
    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return dict(json.loads((SPEC_DIR / "swagger.json").read_text()))


def test_every_fake_route_is_in_the_spec(spec: dict[str, Any]) -> None:
    documented = {(method.upper(), _norm(path)) for path, ops in spec["paths"].items()
                  for method in ops if method != "parameters"}
    served = {(r.method, _norm(r.path)) for r in ROUTES if r.api}
    assert not CONTRACT_MISSING_FROM_SPEC & documented  # the contract's claim holds
    assert served - documented == CONTRACT_MISSING_FROM_SPEC | FAKE_EXTRAS_NOT_IN_SPEC


def _resolved(schema: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """Inline every local $ref (the component schemas have no cycles)."""
    assert depth < 30, "unexpected $ref cycle"
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return _resolved(components[name], components, depth + 1)
        return {k: _resolved(v, components, depth) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolved(v, components, depth) for v in schema]
    return schema


def _validate(spec: dict[str, Any], path: str, method: str, instance: Any) -> None:
    operation = spec["paths"]["/api/v1/accounts/{account_id}" + path][method]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(_resolved(schema, spec["components"]["schemas"])).validate(
        instance)


def test_responses_match_the_spec_where_it_is_right(fake_chatwoot: FakeChatwoot,
                                                    api: httpx.Client,
                                                    spec: dict[str, Any],
                                                    web: httpx.Client) -> None:
    inbox = fake_chatwoot.add_inbox()
    contact_id, conv = make_chat(api, inbox["id"])
    api.post(f"/conversations/{conv}/messages", json={"content": "in", "message_type": "incoming"})
    fake_chatwoot.agent_message(conv, "assigned reply")
    api.post(f"/conversations/{conv}/toggle_status", json={"status": "pending"})

    # Contacts: show, search and filter share contact_list_item.
    _validate(spec, "/contacts/{id}", "get", api.get(f"/contacts/{contact_id}").json())
    _validate(spec, "/contacts/search", "get",
              api.get("/contacts/search", params={"q": "Maria"}).json())
    _validate(spec, "/contacts/filter", "post", api.post("/contacts/filter", json={"payload": [
        {"attribute_key": "name", "filter_operator": "contains", "values": ["mar"]}]}).json())
    # Conversations (not snoozed: the spec has no "snoozed" status and types snoozed_until as a
    # number, while the code renders an ISO time).
    _validate(spec, "/conversations/{conversation_id}", "get",
              api.get(f"/conversations/{conv}").json())
    _validate(spec, "/conversations", "get", api.get("/conversations",
                                                     params={"status": "all"}).json())
    _validate(spec, "/contacts/{id}/conversations", "get",
              api.get(f"/contacts/{contact_id}/conversations").json())
    _validate(spec, "/conversations", "post", api.post("/conversations", json={
        "inbox_id": inbox["id"], "contact_id": contact_id}).json())
    _validate(spec, "/conversations/{conversation_id}/toggle_status", "post",
              api.post(f"/conversations/{conv}/toggle_status", json={"status": "open"}).json())
    # Messages: create, and the index payload (its meta.contact is the documented disagreement).
    created = api.post(f"/conversations/{conv}/messages", json={"content": "hello"}).json()
    _validate(spec, "/conversations/{conversation_id}/messages", "post", created)
    listed = api.get(f"/conversations/{conv}/messages").json()
    _validate(spec, "/conversations/{conversation_id}/messages", "get",
              {"payload": listed["payload"]})
    # Agents, and the profile (outside the account prefix).
    for agent in api.get("/agents").json():
        _validate(spec, "/agents", "post", agent)
    profile_schema = spec["paths"]["/api/v1/profile"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    jsonschema.Draft202012Validator(_resolved(profile_schema, spec["components"]["schemas"])) \
        .validate(web.get(f"{fake_chatwoot.url}/api/v1/profile",
                            headers={"api_access_token": fake_chatwoot.token}).json())
