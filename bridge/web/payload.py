"""A webhook body as data: bytes -> a JSON object, or `BadBody` saying what is wrong with it.

Everything past this point encodes the body's text again (Redis, httpx, the journal, the log), and
recurses into it (pydantic, json.dumps). So what would only blow up there is refused here, once:
bytes that are not UTF-8, nesting no webhook has, text that is not Unicode (a JSON escape such as
`\\ud800` decodes to half a UTF-16 pair, which Python keeps and no encoder accepts), and numbers
JSON has no room for (`NaN`, `Infinity`, `1e400`). Chatwoot sends none of these; a body that has
one gets a 400 naming it, so whoever sent it can see why.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

MAX_DEPTH = 64
"""Objects and arrays inside each other. Chatwoot's webhooks nest about 6 deep
(message.conversation.meta.sender.additional_attributes...); json.loads itself gives up past
about 1,000, by raising RecursionError."""

# A JSON escape of a surrogate (\uD800-\uDFFF). Only such an escape can put one in the decoded
# text, since the bytes were decoded as strict UTF-8: without a match there is nothing to look
# for. (A match may be a valid pair, or follow an escaped backslash: then the walk decides.)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SHOWN_PATH = 120  # characters of the offending path quoted in the reason


class BadBody(Exception):
    """The body is not a JSON object Ponte can work with; `reason` says why, for the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_body(body: bytes) -> dict[str, Any]:
    """The webhook's JSON object; raises BadBody."""
    try:
        # Strictly UTF-8: json.loads(bytes) would also take UTF-16/32 and let encoded
        # surrogates through ("surrogatepass").
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadBody(f"body is not UTF-8: byte 0x{body[err.start]:02x} at offset {err.start}"
                      ) from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadBody(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise BadBody(f"body is not valid JSON: {err}") from None
    except ValueError:  # int() refuses that many digits (CVE-2020-10735: parsing is quadratic)
        raise BadBody(f"body holds a number of more than {sys.get_int_max_str_digits()} "
                      "digits") from None
    if not isinstance(data, dict):
        raise BadBody(f"body must be a JSON object, not {_json_type(data)}")
    _check_tree(data, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    return data


def _refuse_constant(name: str) -> Any:
    # json.loads accepts these JavaScript constants, JSON does not (and httpx refuses to send them).
    raise BadBody(f"body holds {name}, which is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 parses to inf: Infinity under another name
        raise BadBody(f"body holds the number {literal[:40]}, too large for a float")
    return value


def _check_tree(root: dict[str, Any], *, surrogates: bool) -> None:
    """Depth and, when the text may hold one, lone surrogates in keys and strings. Iterative:
    the point is not to recurse into what the sender chose to nest."""
    # (value, depth, path so far): the path is kept as a tuple only to quote it in the reason.
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(root, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            if surrogates and isinstance(value, str) and not _is_unicode(value):
                raise BadBody(f"body holds a lone UTF-16 surrogate (text that is not Unicode) "
                              f"at {_where(path)}")
            continue
        if depth > MAX_DEPTH:
            raise BadBody(f"body is nested deeper than {MAX_DEPTH} levels at {_where(path)}")
        for key, child in items:
            if surrogates and isinstance(key, str) and not _is_unicode(key):
                raise BadBody(f"body holds a lone UTF-16 surrogate (text that is not Unicode) "
                              f"in a key at {_where((*path, key))}")
            if isinstance(child, dict | list) or (surrogates and isinstance(child, str)):
                stack.append((child, depth + 1, (*path, key)))


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(path: tuple[str | int, ...]) -> str:
    """The path, printable: a key holding a surrogate is quoted with escapes, as the reason
    itself must encode (it goes back in the answer and into the log)."""
    shown = ".".join(str(p) for p in path) or "the top level"
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= _SHOWN_PATH else shown[:_SHOWN_PATH] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"
