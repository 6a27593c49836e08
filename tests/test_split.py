"""Cutting long agent replies into WhatsApp-sized messages (bridge/convert/split.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.convert.split import split_text
from bridge.sidecar.protocol import TEXT_MAX_CHARS, SendTextCommand


def assert_faithful(text: str, chunks: list[str], limit: int) -> None:
    """Every chunk fits, none is blank, and they are `text` in order with only whitespace
    (the boundaries') between them and around them."""
    assert all(0 < len(c) <= limit and c.strip() for c in chunks), [len(c) for c in chunks]
    at = 0
    for chunk in chunks:
        found = text.find(chunk, at)
        assert found >= 0, "a chunk that is not the text's next part"
        assert not text[at:found].strip(), "something other than whitespace was dropped"
        at = found + len(chunk)
    assert not text[at:].strip()


def test_a_text_that_fits_is_one_chunk_unchanged() -> None:
    text = "  Olá!\n\nTudo bem?  "
    assert split_text(text, 100) == [text]
    assert split_text("x" * TEXT_MAX_CHARS, TEXT_MAX_CHARS) == ["x" * TEXT_MAX_CHARS]


def test_blank_text_gives_no_chunks() -> None:
    assert split_text("", 10) == []
    assert split_text(" \n\n\t " * 10, 10) == []


def test_paragraphs_are_preferred_to_lines_sentences_and_words() -> None:
    text = "Primeiro parágrafo, que é longo.\n\nSegunda linha\nterceira. E mais palavras"
    # A line, a sentence and words end later in the window, but the paragraph wins.
    assert split_text(text, 60) == ["Primeiro parágrafo, que é longo.",
                                    "Segunda linha\nterceira. E mais palavras"]


def test_the_last_paragraph_that_fits_ends_the_chunk() -> None:
    paragraphs = [f"Parágrafo {n}: " + "texto " * 8 for n in range(6)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = split_text(text, 130)
    assert chunks == [f"{paragraphs[0].strip()}\n\n{paragraphs[1].strip()}",
                      f"{paragraphs[2].strip()}\n\n{paragraphs[3].strip()}",
                      f"{paragraphs[4].strip()}\n\n{paragraphs[5].strip()}"]


def test_a_short_opening_paragraph_does_not_cost_a_message_of_its_own() -> None:
    # Cut after "Oi." the rest would not fit one message: three messages instead of two.
    text = "Oi.\n\n" + "palavra " * 9
    assert split_text(text, 40) == ["Oi.\n\n" + ("palavra " * 4).strip(), "palavra " * 5]


def test_an_early_boundary_is_still_better_than_a_cut_word() -> None:
    assert split_text("Oi. " + "x" * 30, 20) == ["Oi.", "x" * 20, "x" * 10]


def test_then_lines_then_sentences_then_words() -> None:
    assert split_text("uma linha\noutra linha", 15) == ["uma linha", "outra linha"]
    assert split_text("Uma frase. Outra frase aqui", 20) == ["Uma frase.", "Outra frase aqui"]
    assert split_text("palavras sem ponto algum", 15) == ["palavras sem", "ponto algum"]


def test_boundary_whitespace_is_dropped_but_the_next_indent_is_kept() -> None:
    assert split_text("aaaa   \n \n\n    bbbb", 8) == ["aaaa", "    bbbb"]


def test_a_chunk_may_be_exactly_the_limit() -> None:
    assert split_text("abcd efgh", 4) == ["abcd", "efgh"]
    assert split_text("abcd\n\nefgh", 4) == ["abcd", "efgh"]


def test_text_without_any_boundary_is_cut_hard() -> None:
    text = "x" * 25
    assert split_text(text, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_hard_cut_keeps_emoji_and_accents_whole() -> None:
    thumbs = "👍🏽"  # thumbs up + skin tone: two code points, one emoji
    assert split_text("aaaa" + thumbs + "bb", 5) == ["aaaa", thumbs + "bb"]
    family = "👨\u200d👩\u200d👧"  # joined by ZWJ
    assert split_text("a" + family, 5) == ["a", family]
    flags = "🇧🇷🇵🇹🇦🇴"  # three flags, two regional indicators each
    assert split_text(flags, 3) == ["🇧🇷", "🇵🇹", "🇦🇴"]
    decomposed = "cafe\u0301s"  # e + combining acute
    assert split_text(decomposed, 4) == ["caf", "e\u0301s"]


def test_the_reply_of_the_issue_goes_in_two_messages_the_protocol_takes() -> None:
    """65,537 characters raised `string_too_long` in the sender and killed it."""
    text = "Segue o relatório completo.\n\n" + ("Linha do relatório com dados. " * 2300)
    assert len(text) > TEXT_MAX_CHARS
    chunks = split_text(text, TEXT_MAX_CHARS)
    assert len(chunks) == 2  # not the short first paragraph on its own, then two more
    assert chunks[0].startswith("Segue o relatório completo.\n\nLinha")
    assert chunks[0].endswith("dados.")  # cut after a sentence, where the limit nears
    assert len(chunks[0]) > TEXT_MAX_CHARS - len("Linha do relatório com dados. ")
    assert_faithful(text, chunks, TEXT_MAX_CHARS)
    for chunk in chunks:
        SendTextCommand(id="c1", jid="5511988887777@s.whatsapp.net", text=chunk)


def test_long_texts_are_cut_fast() -> None:
    import time

    started = time.perf_counter()
    for text in (" " * 150_000 + "x", "a \n" * 50_000, "." * 150_000, "\n \n" * 50_000):
        split_text(text, TEXT_MAX_CHARS)
    assert time.perf_counter() - started < 2.0  # no quadratic backtracking over whitespace


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 0)


_pieces = st.sampled_from([
    "a", "palavra", "Frase.", "Fim!", " ", "  ", "\n", "\n\n", " \n \n", "\t", "é",
    "e\u0301", "👍🏽", "👨\u200d👩\u200d👧", "🇧🇷", "日本語。", "\u00a0"])


@given(st.lists(_pieces, max_size=80).map("".join), st.integers(min_value=1, max_value=40))
def test_any_text_splits_faithfully(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert_faithful(text, chunks, limit)
    if len(text) <= limit and text.strip():
        assert chunks == [text]


@given(st.text(max_size=300), st.integers(min_value=1, max_value=50))
def test_any_unicode_splits_faithfully(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert_faithful(text, chunks, limit)
    # Only whitespace is ever dropped: the rest comes back whole, code point by code point.
    assert re.sub(r"\s", "", "".join(chunks)) == re.sub(r"\s", "", text)
