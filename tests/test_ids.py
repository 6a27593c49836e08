from __future__ import annotations

import pytest

from bridge.ids import (
    jid_from_phone,
    make_instance_id,
    normalize_jid,
    parse_instance_id,
    phone_from_jid,
)


@pytest.mark.parametrize(("raw", "normal"), [
    ("5511999990000:12@s.whatsapp.net", "5511999990000@s.whatsapp.net"),
    ("5511999990000@c.us", "5511999990000@s.whatsapp.net"),
    ("123456789012345:3@lid", "123456789012345@lid"),
    ("120363025246125486@g.us", "120363025246125486@g.us"),
])
def test_normalize_jid_strips_device_and_legacy_server(raw: str, normal: str) -> None:
    assert normalize_jid(raw) == normal


@pytest.mark.parametrize("bad", ["", "5511999990000", "a b@s.whatsapp.net", "@lid"])
def test_normalize_jid_refuses_non_jids(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_jid(bad)


def test_phone_round_trip() -> None:
    assert jid_from_phone("+55 (11) 99999-0000") == "5511999990000@s.whatsapp.net"
    assert phone_from_jid("5511999990000:4@s.whatsapp.net") == "+5511999990000"
    assert phone_from_jid("123@lid") is None
    assert phone_from_jid("120363@g.us") is None
    with pytest.raises(ValueError):
        jid_from_phone("123")


def test_instance_id_round_trip() -> None:
    assert parse_instance_id(make_instance_id(3, 17)) == (3, 17)
    for bad in ("3-0", "x-1", "1_2", "01-2"):
        with pytest.raises(ValueError):
            parse_instance_id(bad)
    with pytest.raises(ValueError):
        make_instance_id(0, 1)


def test_brazilian_mobiles_are_found_with_and_without_the_ninth_digit() -> None:
    from bridge.ids import phone_variants

    assert phone_variants("+5511988887777") == ["+5511988887777", "+551188887777"]
    assert phone_variants("+551188887777") == ["+551188887777", "+5511988887777"]
    assert phone_variants("+551133334444") == ["+551133334444"]  # a landline
    assert phone_variants("+14155550100") == ["+14155550100"]
