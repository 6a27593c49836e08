"""Chatwoot's markdown -> WhatsApp's formatting.

Chatwoot's reply editor writes CommonMark (`**bold**`, `*italic*`, `~~strike~~`, `` `code` ``,
lists, `[text](url)`); WhatsApp reads `*bold*`, `_italic_`, `~strike~`, `` `code` ``/```` ``` ````,
`- ` / `1. ` lists and bare URLs. Code is protected first, so nothing inside it is rewritten.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```.*?```", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_BULLET = re.compile(r"^(\s*)[*+]\s+", re.M)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~>])")
_PLACEHOLDER = "\x00{}\x00"


def to_whatsapp(text: str) -> str:
    """Rewrite markdown into WhatsApp's formatting; plain text comes out unchanged."""
    kept: list[str] = []

    def keep(match: re.Match[str], group: int = 0) -> str:
        kept.append(match.group(group))
        return _PLACEHOLDER.format(len(kept) - 1)

    text = _FENCE.sub(keep, text)
    text = _INLINE_CODE.sub(keep, text)
    text = _ESCAPE.sub(lambda m: keep(m, 1), text)  # `\*` is a literal star, never markup
    text = _LINK.sub(_link, text)
    text = _HEADING.sub(lambda m: "\x01" + m.group(1) + "\x01", text)
    # Bold first, through a marker: WhatsApp's bold `*` would otherwise read as italic next.
    text = _BOLD_ITALIC.sub(lambda m: "\x01_" + m.group(1) + "_\x01", text)
    text = _BOLD.sub(lambda m: "\x01" + m.group(2) + "\x01", text)
    text = _ITALIC_STAR.sub(lambda m: "_" + m.group(1) + "_", text)
    text = _STRIKE.sub(lambda m: "~" + m.group(1) + "~", text)
    text = _BULLET.sub(lambda m: m.group(1) + "- ", text)
    text = text.replace("\x01", "*")
    for index, original in enumerate(kept):
        text = text.replace(_PLACEHOLDER.format(index), original)
    return text


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    return url if label.strip() in (url, url.removeprefix("mailto:")) else f"{label} ({url})"


def signed(text: str, agent_name: str | None, delimiter: str) -> str:
    """The agent's name in bold, then `delimiter`, then the message (WhatsApp shows no sender
    per message, so customers of a shared number otherwise cannot tell agents apart)."""
    if not agent_name:
        return text
    return f"*{agent_name.strip()}*{delimiter}{text}"
