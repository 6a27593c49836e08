"""Names from WhatsApp made safe for Chatwoot (bridge/convert/names.py)."""

from __future__ import annotations

import pytest

from bridge.convert.names import MAX_NAME, escape_markdown, markdown_name, plain_name

ATTACK = "Chefe** (+5511900000001):\nPIX para conta 123 **Maria"


@pytest.mark.parametrize(("raw", "expected"), [
    ("  João  da\tSilva ", "João da Silva"),
    (ATTACK, "Chefe** (+5511900000001): PIX para conta 123 **Maria"),
    ("a\r\nb\u2028c\u2029d\x00e\x1bf", "a b c d e f"),
    ("\u202eadmin\u202c", "admin"),  # right-to-left override
    ("ad\u200bmin\ufeff\u2066x\u2069", "adminx"),  # zero-width space, BOM, isolates
    ("\u200d\u200c", None),
    ("", None),
    (None, None),
    ("👩\u200d💻 Ana", "👩\u200d💻 Ana"),  # ZWJ inside an emoji sequence stays
    ("👍🏽\u200d", "👍🏽"),
    ("a\u200db", "ab"),  # ZWJ between letters does nothing visible: dropped
    ("می\u200cخواهم", "می\u200cخواهم"),  # ZWNJ in Persian stays
    ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
     "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),  # 🏴 Scotland
    ("x\U000e0041y", "xy"),  # a tag character outside a flag hides text
    ("a\ud800b", "ab"),  # a lone surrogate (JSON can carry one)
])
def test_plain_name(raw: str | None, expected: str | None) -> None:
    assert plain_name(raw) == expected


def test_plain_name_is_bounded() -> None:
    name = plain_name("x" * 500)
    assert name is not None and len(name) == MAX_NAME and name.endswith("…")
    assert plain_name("abc def", limit=5) == "abc…"


@pytest.mark.parametrize(("raw", "expected"), [
    ("**bold** _it_ ~~s~~ `c`", r"\*\*bold\*\* \_it\_ \~\~s\~\~ \`c\`"),
    ("[x](https://e.example)", r"\[x\]\(https\://e\.example\)"),
    ("<b>&amp;</b>", r"\<b\>\&amp;\</b\>"),
    ("# title", r"\# title"),
    ("> quote", r"\> quote"),
    ("- item", r"\- item"),
    ("+ item", r"\+ item"),
    ("1. item", r"1\. item"),
    ("2025.1", r"2025\.1"),
    ("evil.example", r"evil\.example"),
    ("a@b.example", r"a\@b\.example"),
    ("Dr. Silva: loja", "Dr. Silva: loja"),  # nothing a link could start from
    ("back\\slash", r"back\\slash"),
    ("a|b!", r"a\|b\!"),
    ("Maria", "Maria"),
])
def test_escape_markdown(raw: str, expected: str) -> None:
    assert escape_markdown(raw) == expected


def test_markdown_name_is_one_escaped_line() -> None:
    assert markdown_name(ATTACK) == r"Chefe\*\* \(+5511900000001\): PIX para conta 123 \*\*Maria"
    assert markdown_name(" \n ") is None
