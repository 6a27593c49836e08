"""Business kinds: button and list messages and the answers to them, shown as their visible text.

Answers (`buttonsResponseMessage`, `listResponseMessage`, `templateButtonReplyMessage`,
`interactiveResponseMessage`) show what the customer tapped; offers (`buttonsMessage`,
`listMessage`, `templateMessage`, `interactiveMessage`) show their text and the choices as a list.
"""

from __future__ import annotations

from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext
from bridge.sidecar.protocol import MessageEvent


def convert_interactive(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    kind = event.content_type or ""
    body = baileys.body_of(event.message, kind)
    lines = [line.strip() for line in _READERS[kind](body) if line and line.strip()]
    if not lines:
        raise baileys.Malformed(f"{kind} without visible text")
    return ChatwootDraft(content="\n".join(lines))


def _buttons_response(body: dict[str, Any]) -> list[str | None]:
    return [baileys.text(body, "selectedDisplayText") or baileys.text(body, "selectedButtonId")]


def _list_response(body: dict[str, Any]) -> list[str | None]:
    reply = baileys.obj(body.get("singleSelectReply"))
    title = baileys.text(body, "title") or baileys.text(reply, "selectedRowId")
    return [title, baileys.text(body, "description")]


def _template_reply(body: dict[str, Any]) -> list[str | None]:
    return [baileys.text(body, "selectedDisplayText") or baileys.text(body, "selectedId")]


def _interactive_response(body: dict[str, Any]) -> list[str | None]:
    return [baileys.text(baileys.obj(body.get("body")), "text")]


def _buttons(body: dict[str, Any]) -> list[str | None]:
    choices = [baileys.text(baileys.obj(baileys.obj(b).get("buttonText")), "displayText")
               for b in baileys.items(body, "buttons")]
    return [baileys.text(body, "text"), baileys.text(body, "contentText"),
            baileys.text(body, "footerText"), *_bullets(choices)]


def _list(body: dict[str, Any]) -> list[str | None]:
    lines = [baileys.text(body, "title"), baileys.text(body, "description")]
    for section in map(baileys.obj, baileys.items(body, "sections")):
        lines.append(baileys.text(section, "title"))
        rows = [baileys.obj(r) for r in baileys.items(section, "rows")]
        lines += _bullets([_joined(baileys.text(r, "title"), baileys.text(r, "description"))
                           for r in rows])
    lines += [baileys.text(body, "footerText")]
    return lines


def _template(body: dict[str, Any]) -> list[str | None]:
    hydrated = baileys.obj(body.get("hydratedTemplate")) \
        or baileys.obj(body.get("hydratedFourRowTemplate"))
    if not hydrated:
        return _interactive(baileys.obj(body.get("interactiveMessageTemplate")))
    choices: list[str | None] = []
    for button in map(baileys.obj, baileys.items(hydrated, "hydratedButtons")):
        quick = baileys.obj(button.get("quickReplyButton"))
        url, call = baileys.obj(button.get("urlButton")), baileys.obj(button.get("callButton"))
        choices.append(baileys.text(quick, "displayText")
                       or _joined(baileys.text(url, "displayText"), baileys.text(url, "url"))
                       or _joined(baileys.text(call, "displayText"),
                                  baileys.text(call, "phoneNumber")))
    return [baileys.text(hydrated, "hydratedTitleText"),
            baileys.text(hydrated, "hydratedContentText"),
            baileys.text(hydrated, "hydratedFooterText"), *_bullets(choices)]


def _interactive(body: dict[str, Any]) -> list[str | None]:
    header = baileys.obj(body.get("header"))
    return [baileys.text(header, "title"), baileys.text(header, "subtitle"),
            baileys.text(baileys.obj(body.get("body")), "text"),
            baileys.text(baileys.obj(body.get("footer")), "text")]


def _bullets(choices: list[str | None]) -> list[str | None]:
    return [f"• {c.strip()}" for c in choices if c and c.strip()]


def _joined(first: str | None, second: str | None) -> str | None:
    parts = [p.strip() for p in (first, second) if p and p.strip()]
    return " — ".join(parts) or None


_READERS = {
    "buttonsResponseMessage": _buttons_response,
    "listResponseMessage": _list_response,
    "templateButtonReplyMessage": _template_reply,
    "interactiveResponseMessage": _interactive_response,
    "buttonsMessage": _buttons,
    "listMessage": _list,
    "templateMessage": _template,
    "interactiveMessage": _interactive,
}
KINDS = frozenset(_READERS)
