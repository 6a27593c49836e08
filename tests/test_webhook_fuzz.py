"""Signed but mangled Chatwoot webhooks through the real app: bad input is data, never a 5xx.

Each example takes a valid webhook (../shared/chatwoot/README.md), mutates it (a value replaced
by any JSON, a key dropped, deep nesting, a lone surrogate, a non-finite number, broken UTF-8)
and posts it signed, so it passes verification and reaches the parser and the handlers. The
answer must be a 4xx naming the problem or a 200, and afterwards the number still relays an
agent's message (nothing got stuck).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bridge.web.app import create_app
from bridge.web.payload import MAX_DEPTH
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for
from tests.test_webhook import Hook, _sent, agent, linked, payload, signed

ANSWERS = {200, 400, 413, 422}
# Webhook ids far from those the helpers use, fresh for every example: a relay is claimed
# once per Chatwoot message id, and a claim must not hide the paths after it.
_ids = itertools.count(100_000)
# Placeholders swapped for raw JSON text after json.dumps: Python's json cannot write 5,000
# levels of nesting or NaN into a body, but a sender can.
_RAW = "\x00raw\x00"

JSON_SCALARS = (st.none() | st.booleans() | st.integers()
                | st.integers(min_value=2**63 - 2, max_value=10**40)  # past Chatwoot's bigint
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(min_value=-5, max_value=10**6).map(str)  # ids as strings
                | st.text(max_size=12) | st.sampled_from(["", " ", "erga", "resolved", "user"]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
DEEP = st.integers(min_value=MAX_DEPTH + 1, max_value=6000).flatmap(
    lambda depth: st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth]))
ODD_NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999",
                               "9" * 5000])  # past int()'s 4,300 digits
SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udc00\ud800", "\ud83d"])  # unpaired


def bases() -> list[dict[str, Any]]:
    """One valid webhook per path through the handlers."""
    reply = payload("Com anexo e resposta", content_attributes={
        "in_reply_to": 4800, "in_reply_to_external_id": "WAID-1"}, attachments=[{
            "id": 9, "message_id": 4821, "file_type": "image", "account_id": 1,
            "extension": "jpg", "content_type": "image/jpeg", "file_size": 1234,
            "data_url": "http://127.0.0.1:9/rails/active_storage/blobs/x/foto.jpg"}])
    template = payload(message_type="template")
    template["sender"] = None
    conversation = payload()["conversation"]
    return [
        payload("Seu pedido saiu."),  # relayed
        reply,
        payload("Nota", private=True),
        payload("Cliente", message_type="incoming",
                sender={"id": 55, "name": "Maria", "phone_number": "+5511988887777"}),
        template,
        payload("erga status", private=True),  # an authorized agent's command
        payload("erga status 7", sender=agent(email="intern@example.com", agent_id=9)),
        payload("Perdida", event="message_updated",
                content_attributes={"external_error": "Timed out"}),
        payload("Apagada", event="message_updated", content_attributes={"deleted": True}),
        {**conversation, "event": "conversation_status_changed", "status": "resolved"},
        {"event": "conversation_created", "id": 42},
    ]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index below `value` (the root itself excluded)."""
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def _mutate_types(draw: st.DrawFn, data: dict[str, Any], done: list[str]) -> None:
    """A value replaced by any JSON, nulled, or its key dropped."""
    where = list(paths(data))
    if not where:
        return
    path = draw(st.sampled_from(where))
    parent, key = _parent(data, path), path[-1]
    how = draw(st.sampled_from(["replace", "replace", "null", "drop"]))
    done.append(f"{how} {'.'.join(map(str, path))}")
    if how == "replace":
        parent[key] = draw(JSON_VALUES)
    elif how == "null":
        parent[key] = None
    else:
        del parent[key]


def _base(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(st.sampled_from(bases())))
    if "id" in data and data["event"].startswith("message_"):
        data["id"] = next(_ids)
    return data


@st.composite
def wrong_types(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what was done, the body): valid JSON, but not the webhook Chatwoot sends."""
    data, done = _base(draw), []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        _mutate_types(draw, data, done)
    return "; ".join(done), json.dumps(data).encode()


@st.composite
def bad_bodies(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(what was done, what the answer must name, the body): maybe some wrong types, then one
    thing no JSON object Ponte accepts has: deep nesting, an odd number, a lone surrogate."""
    data, done = _base(draw), []
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        _mutate_types(draw, data, done)
    how = draw(st.sampled_from(["deep", "number", "surrogate", "surrogate_key"]))
    where = [p for p in paths(data)
             if how != "surrogate_key" or isinstance(_parent(data, p), dict)] or [()]
    path = draw(st.sampled_from(where))
    done.append(f"{how} {'.'.join(map(str, path))}")
    raw = None
    if path == ():  # everything was dropped: the body itself
        path, data = ("x",), {"x": data}
    parent, key = _parent(data, path), path[-1]
    if how in ("deep", "number"):
        raw = draw(DEEP if how == "deep" else ODD_NUMBERS)
        parent[key] = _RAW
    elif how == "surrogate":  # half of a UTF-16 pair, inside the text or as all of it
        text = parent[key] if isinstance(parent[key], str) else ""
        at = draw(st.integers(min_value=0, max_value=len(text)))
        parent[key] = text[:at] + draw(SURROGATES) + text[at:]
    else:  # a key that is not valid Unicode
        parent[f"{key}\ud800"] = parent.pop(key)
    body = json.dumps(data)  # ensure_ascii: a lone surrogate becomes the escape "\ud800"
    if raw is not None:
        body = body.replace(json.dumps(_RAW), raw, 1)
    named = {"deep": "nested deeper than 64", "number": "number", "surrogate": "surrogate",
             "surrogate_key": "surrogate"}[how]
    return "; ".join(done), named, body.encode()


BROKEN_UTF8 = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
               b"\xef\xbb\xbf"]


@st.composite
def broken_bytes(draw: st.DrawFn) -> bytes:
    """A valid body with bytes spliced in or cut off: not UTF-8, not JSON, or both."""
    body = bytearray(json.dumps(draw(st.sampled_from(bases()))).encode())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(body)))
        junk = draw(st.sampled_from(BROKEN_UTF8) | st.binary(min_size=1, max_size=6))
        if draw(st.booleans()):
            body[at:at] = junk
        else:
            del body[at:]
    return bytes(body)


@pytest.fixture
def fuzz(make_settings: SettingsFactory, redis_client: redis.Redis,
         tmp_path: Path) -> Iterator[Hook]:
    """The real app with a linked (scripted) number; the "new" conversation policy, so that
    conversation_status_changed reaches its handler too; room for deeply nested bodies."""
    control = tmp_path / "control"
    settings = make_settings(
        baileys_sidecar_command=scripted_sidecar_command(control, "linked"),
        chatwoot_conversation_policy="new", webhook_max_body_bytes=256 * 1024)
    with TestClient(create_app(settings)) as client:
        hook = Hook(client, redis_client, control)
        linked(hook)
        yield hook


def _post(hook: Hook, body: bytes) -> Any:
    return hook.client.post("/webhook/chatwoot", content=body, headers=signed(body))


def _judge(answer: Any, what: str) -> None:
    assert answer.status_code in ANSWERS, (answer.status_code, what, answer.text[:300])
    reply = answer.json()
    if answer.status_code >= 400:
        assert isinstance(reply.get("error"), str) and reply["error"], what
    else:
        assert reply.get("status") in {"queued", "ignored", "failed", "command", "forgotten",
                                       "journaled"}, (what, reply)


def _still_relays(hook: Hook) -> None:
    """Nothing got stuck: an agent's plain message still reaches WhatsApp."""
    answer = hook.post(payload("Ainda funciona", message_id=next(_ids)))
    assert answer.json() == {"status": "queued"}
    wait_for(lambda: any(c["text"] == "Ainda funciona" for c in _sent(hook)), timeout=15,
             message="the agent's message at the sidecar after the fuzzing")


_FAST = settings(max_examples=100, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_webhooks_with_wrong_types_get_a_4xx_or_are_ignored(fuzz: Hook) -> None:
    seen: Counter[str] = Counter()

    @settings(_FAST, max_examples=200)
    @given(case=wrong_types())
    def check(case: tuple[str, bytes]) -> None:
        what, body = case
        answer = _post(fuzz, body)
        _judge(answer, what)
        if answer.status_code == 400:  # valid JSON: only a missing or odd event is a 400
            assert "'event'" in answer.json()["error"], what
        seen[str(answer.json().get("status", answer.status_code))] += 1

    check()  # the fixture (a linked number) is set up once for all examples
    # The mutations reached the handlers, not just the validation.
    assert {"422", "ignored", "queued"} <= set(seen), seen
    _still_relays(fuzz)


def test_bodies_no_webhook_has_get_400_naming_the_problem(fuzz: Hook) -> None:
    @_FAST
    @given(case=bad_bodies())
    def check(case: tuple[str, str, bytes]) -> None:
        what, named, body = case
        answer = _post(fuzz, body)
        assert answer.status_code == 400, (what, answer.status_code, answer.text[:300])
        assert named in answer.json()["error"], (what, answer.json())

    check()
    _still_relays(fuzz)


def test_bodies_that_are_not_utf8_or_not_json_get_400(fuzz: Hook) -> None:
    @settings(_FAST, max_examples=60)
    @given(body=broken_bytes())
    def check(body: bytes) -> None:
        answer = _post(fuzz, body)
        _judge(answer, repr(body[:80]))
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]

    check()
    _still_relays(fuzz)
