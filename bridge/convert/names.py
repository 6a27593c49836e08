"""Names WhatsApp hands us (push names, group subjects, contact cards) made safe for Chatwoot.

Anyone picks their own push name, so a name must never read as more than a name: no second line,
no bold that closes early, no link. `plain_name` is for Chatwoot's plain-text fields (a contact's
name); `markdown_name` for message content, which Chatwoot's dashboard renders with markdown-it
(`html: false, breaks: true, linkify: true`, chatwoot/chatwoot:
app/javascript/shared/helpers/MessageFormatter.js). The attack this stops:
`Chefe** (+5511900000001):\\nPIX para conta 123 **Maria` in a group prefix `**Name** (+number):`.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 100  # WhatsApp allows 25 for a push name and 100 for a group subject
_ELLIPSIS = "…"
_ZWJ, _ZWNJ = "\u200d", "\u200c"
_TAGS = range(0xE0020, 0xE0080)  # the letters of a subdivision flag (🏴 + tags + cancel tag)
_FLAG = "\U0001f3f4"
# markdown-it's inline markup, escapes and entities, plus `<`/`>` (autolinks, html: false).
# Every ASCII punctuation may be backslash-escaped in CommonMark, so the escapes always render
# as the character itself.
_INLINE = re.compile(r"([\\`*_~\[\]()<>!#|&])")
# `.` and `:` inside a word are what linkify needs to see a link (`evil.example`, `https://`);
# elsewhere ("Dr. Silva", "Loja: centro") they stay as written.
_LINKISH = re.compile(r"([.:@])(?=[^\s\\])")
# A line's start is where a list, quote, heading or rule would begin.
_BLOCK_START = re.compile(r"^([-+=]|\d{1,9}(?=\.))")


def _keep_format_char(text: str, index: int) -> bool:
    """Cf characters are invisible; the few that join emoji stay, the rest (bidi overrides and
    isolates, zero-width spaces, BOM, ...) can only disguise a name."""
    char = text[index]
    before = text[index - 1] if index else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    if char == _ZWJ:  # 👩‍💻: between two pictographs (the first may carry a modifier or VS16)
        return _pictograph(before) and _pictograph(after)
    if char == _ZWNJ:  # Persian and Indic scripts write with it, between letters
        return before.isalpha() and after.isalpha()
    if ord(char) in _TAGS:
        return before == _FLAG or (before != "" and ord(before) in _TAGS)
    return False


def _pictograph(char: str) -> bool:
    return char != "" and (unicodedata.category(char) in ("So", "Sk") or char == "\ufe0f")


def plain_name(raw: str | None, limit: int = MAX_NAME) -> str | None:
    """One line of visible text: controls and line breaks become spaces, invisible format
    characters go, whitespace is collapsed, at most `limit` characters; None if nothing is left."""
    if not raw:
        return None
    chars = []
    for index, char in enumerate(raw):
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            chars.append(" ")
        elif category == "Cs" or (category == "Cf" and not _keep_format_char(raw, index)):
            continue
        else:
            chars.append(char)
    name = " ".join("".join(chars).split())
    if len(name) > limit:
        name = name[:limit - 1].rstrip(_ZWJ + _ZWNJ + " ") + _ELLIPSIS
    return name or None


def escape_markdown(text: str) -> str:
    """`text` exactly as written once Chatwoot renders it: no emphasis, code, link or block."""
    text = _INLINE.sub(r"\\\1", text)
    text = _LINKISH.sub(r"\\\1", text)
    return _BLOCK_START.sub(lambda m: m.group(1) + "\\" if m.group(1).isdigit()
                            else "\\" + m.group(1), text)


def markdown_name(raw: str | None, limit: int = MAX_NAME) -> str | None:
    """`plain_name`, escaped for message content; None if nothing is left."""
    name = plain_name(raw, limit)
    return None if name is None else escape_markdown(name)
