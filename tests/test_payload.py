"""`parse_body`: a webhook body becomes a JSON object, or BadBody naming what is wrong."""

from __future__ import annotations

import json

import pytest

from bridge.web.payload import MAX_DEPTH, BadBody, parse_body


def nested(depth: int) -> bytes:
    """An object whose `a` holds arrays `depth - 1` deep: `depth` levels in all."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_a_webhook_body_is_parsed() -> None:
    body = '{"event":"message_created","content":"Ol\\u00e1 \\u003cb\\u003e 😀","id":1}'
    assert parse_body(body.encode()) == {"event": "message_created", "content": "Olá <b> 😀",
                                         "id": 1}


def test_valid_pairs_and_escaped_backslashes_are_not_surrogates() -> None:
    assert parse_body(b'{"a":"\\ud83d\\ude00","b":"\\\\ud800"}') == {"a": "😀", "b": "\\ud800"}


def test_nesting_up_to_the_bound_is_accepted() -> None:
    assert parse_body(nested(MAX_DEPTH))["a"] is not None


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"content":"caf\xe9"}', "body is not UTF-8: byte 0xe9 at offset 15"),  # Latin-1
    (b'{"content":"\xed\xa0\x80"}', "body is not UTF-8: byte 0xed"),  # a surrogate, encoded
    ('{"event":"x"}'.encode("utf-16"), "body is not UTF-8"),  # json.loads(bytes) takes it
    (b"event=message_created", "body is not valid JSON: Expecting value"),
    (b'{"event":"x"', "body is not valid JSON"),
    (b"\xef\xbb\xbf{}", "body is not valid JSON: Unexpected UTF-8 BOM"),
    (b"[1, 2]", "body must be a JSON object, not an array"),
    (b'"event"', "body must be a JSON object, not a string"),
    (b"null", "body must be a JSON object, not null"),
    (b"7", "body must be a JSON object, not a number"),
    (nested(MAX_DEPTH + 1), f"body is nested deeper than {MAX_DEPTH} levels at a.0.0"),
    (nested(5000), f"body is nested deeper than {MAX_DEPTH} levels"),  # json.loads gives up
    (b'{"a":{"b":[' + b'{"c":' * 70 + b"1" + b"}" * 70 + b"]}}",
     f"nested deeper than {MAX_DEPTH} levels at a.b.0.c.c"),
    (b'{"content":"oi \\ud83d"}', "lone UTF-16 surrogate (text that is not Unicode) at content"),
    (b'{"a":[1,{"b":"\\udfff"}]}', "lone UTF-16 surrogate (text that is not Unicode) at a.1.b"),
    (b'{"a":{"k\\udc00":1}}', "surrogate (text that is not Unicode) in a key at a.k\\udc00"),
    (b'{"id":NaN}', "body holds NaN, which is not a JSON number"),
    (b'{"id":-Infinity}', "body holds -Infinity, which is not a JSON number"),
    (b'{"id":1e400}', "body holds the number 1e400, too large for a float"),
    (b'{"id":' + b"9" * 5000 + b"}", "body holds a number of more than 4300 digits"),
])
def test_each_problem_is_named(body: bytes, reason: str) -> None:
    with pytest.raises(BadBody) as caught:
        parse_body(body)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    caught.value.reason.encode("utf-8")  # it goes back in the answer: it must encode


def test_the_path_in_a_reason_is_cut_short() -> None:
    key = "k" * 500
    with pytest.raises(BadBody) as caught:
        parse_body(json.dumps({key: "\ud800"}).encode())
    assert len(caught.value.reason) < 250 and caught.value.reason.endswith("...")
