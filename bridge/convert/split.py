"""Cutting an agent's reply that is longer than WhatsApp takes into messages that fit.

Chatwoot accepts replies of up to 150,000 characters; a WhatsApp text (the protocol's
`TEXT_MAX_CHARS`) holds fewer. Each chunk ends at the last boundary that still fits, preferring
a paragraph (a blank line), else a line, else a sentence, else a word, as long as the chunk keeps
at least half the limit; text without any of them is cut hard. The whitespace of a boundary is
dropped: it would only show as an empty line at the top or bottom of a WhatsApp message.
Lengths are counted in code points, as the protocol model counts them (a Python `str` has no
surrogate halves to split), and a hard cut steps back rather than separate what renders as one
character (an emoji and its modifiers, a letter and its accents, the two halves of a flag).
"""

from __future__ import annotations

import re
import unicodedata

# Boundaries, most preferred first; a match is the whitespace dropped at the cut. Paragraphs and
# lines also drop the spaces ending the line before them (`_HORIZONTAL`, added by `_cut`), not
# the indentation of the next one. No pattern starts with a repetition: a long run of spaces then
# costs one pass over it, not one pass per space.
_BOUNDARIES = (
    re.compile(r"\n(?:[ \t\r\f\v]*\n)+"),  # a paragraph: one or more blank lines
    re.compile(r"\n"),  # a line
    re.compile(r"(?<=[.!?…。！？])\s+"),  # a sentence: its final mark stays with it
    re.compile(r"\s+"),  # a word
)
_HORIZONTAL = " \t\r\f\v"
# How far a hard cut may step back to keep a character whole; past this, the text is not
# language (a run of combining marks) and is cut where the limit is.
_MAX_STEP_BACK = 32
_ZWJ = "\u200d"


def split_text(text: str, limit: int) -> list[str]:
    """`text` in chunks of at most `limit` code points, in order; one chunk when it fits.

    Joined with their boundaries' whitespace the chunks give `text` back; a chunk is never
    empty nor only whitespace (`[]` for a text that is).
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        start, end = _cut(rest, limit)
        chunks.append(rest[:start])
        rest = rest[end:]
    chunks.append(rest)
    return [c for c in chunks if c.strip()]


def _cut(text: str, limit: int) -> tuple[int, int]:
    """Where the first chunk of `text` (longer than `limit`) ends, and where the next begins."""
    fallback: tuple[int, int] | None = None
    for boundary in _BOUNDARIES:
        last = _last_boundary(boundary, text, limit)
        if last is None:
            continue
        # A coarser boundary wins only if it keeps at least half the limit: a short opening
        # paragraph must not cost a message of its own and push the rest over into a third.
        if last[0] >= limit // 2:
            return last
        fallback = fallback or last
    if fallback is not None:  # no boundary in the second half: better early than mid-word
        return fallback
    cut = _hard_cut(text, limit)
    return cut, cut


def _last_boundary(boundary: re.Pattern[str], text: str,
                   limit: int) -> tuple[int, int] | None:
    last = None
    for match in boundary.finditer(text):  # lazily: only up to the limit
        start = match.start()
        if match.group().startswith("\n"):
            while start > 0 and text[start - 1] in _HORIZONTAL:
                start -= 1
        # A boundary may start right at `limit`: the chunk before it then has exactly `limit`.
        # Its whitespace may run past the limit; all of it is dropped.
        if start > limit:
            break
        if start > 0:
            last = start, match.end()
    return last


def _hard_cut(text: str, limit: int) -> int:
    for cut in range(limit, max(limit - _MAX_STEP_BACK, 0), -1):
        if not _joined(text, cut):
            return cut
    return limit


def _joined(text: str, at: int) -> bool:
    """True when `text[at - 1]` and `text[at]` render as one character (cutting between them
    would leave a broken emoji or a stray accent)."""
    before, after = text[at - 1], text[at]
    if before == _ZWJ or after == _ZWJ:
        return True
    if unicodedata.category(after) in ("Mn", "Mc", "Me"):  # accents, vowel signs, keycaps
        return True
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True  # variation selectors, skin tones, the tags of subdivision flags
    if _regional(before) and _regional(after):
        # Flags are pairs of regional indicators: between two pairs is fine, inside one not.
        run = 0
        while at - 1 - run >= 0 and _regional(text[at - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
