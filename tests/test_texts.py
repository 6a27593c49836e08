from __future__ import annotations

import string
from dataclasses import fields

from bridge.texts import EN, PT_BR, Texts


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_every_sentence_with_the_same_placeholders() -> None:
    for f in fields(Texts):
        pt, en = getattr(PT_BR, f.name), getattr(EN, f.name)
        assert pt and en and pt != en, f.name
        assert placeholders(pt) == placeholders(en), f.name
