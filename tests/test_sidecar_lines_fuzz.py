"""Whatever a sidecar writes, a line is an event or a ProtocolError: logged, counted, skipped.

`decode_event` is fuzzed with arbitrary bytes and with mangled golden frames; the reader of a
real child process with lines no sidecar should write, on stdout and on stderr: it must keep
reading both (a dead stderr reader blocks the child once the pipe is full).
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from bridge.errors import ProtocolError
from bridge.ids import InstanceId
from bridge.sidecar.process import SidecarProcess
from bridge.sidecar.protocol import (
    EVENT_TYPES,
    MAX_FRAME_DEPTH,
    ResultEvent,
    SidecarEvent,
    decode_event,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = [json.loads(line) for line in
          (ROOT / "tests" / "golden" / "protocol" / "events.jsonl").read_text().splitlines()
          if line.strip()]
_RAW = "\x00raw\x00"  # swapped for raw text after json.dumps (which cannot write NaN or depth)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10) | st.sampled_from(sorted(EVENT_TYPES)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
RAW = st.one_of(
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: '{"a":' * n + "0" + "}" * n),
    st.sampled_from(["NaN", "-Infinity", "1e400", "9" * 5000, '"\\ud800"', '"oi \\ud83d"',
                     '"\\udfff\\ud800"', '{"\\udc00":1}']))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@st.composite
def mangled_frames(draw: st.DrawFn) -> bytes:
    """A golden event with values replaced, nulled, dropped, or made raw JSON oddities."""
    frame = copy.deepcopy(draw(st.sampled_from(GOLDEN)))
    raw: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = list(_paths(frame))
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = frame
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(["replace", "null", "drop", "raw"]))
        if how == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif how == "null":
            parent[path[-1]] = None
        elif how == "drop":
            del parent[path[-1]]
        else:
            raw.append(draw(RAW))
            parent[path[-1]] = f"{_RAW}{len(raw) - 1}"
    text = json.dumps(frame, separators=(",", ":"))
    for n, chunk in enumerate(raw):
        text = text.replace(json.dumps(f"{_RAW}{n}"), chunk, 1)
    return text.encode()


LINES = st.one_of(
    st.binary(max_size=200),
    mangled_frames(),
    st.dictionaries(st.sampled_from(["type", "id", "ok", "key", "message", "state", "qr"]),
                    JSON_VALUES, max_size=5).map(lambda d: json.dumps(d).encode()),
    mangled_frames().map(lambda b: b[: len(b) // 2]),  # cut off
    mangled_frames().map(lambda b: b.replace(b'"', b"\xff", 1)),  # not UTF-8
)


def _safe_downstream(event: SidecarEvent) -> None:
    """What the bridge does with an event next must not fail on the event's data: strict JSON,
    UTF-8 (the mailbox in Redis, httpx to Chatwoot, the log)."""
    json.dumps(event.model_dump(), allow_nan=False, ensure_ascii=False).encode("utf-8")


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(line=LINES)
def test_any_line_is_an_event_or_a_protocol_error(line: bytes) -> None:
    try:
        event = decode_event(line)
    except ProtocolError:
        return
    _safe_downstream(event)


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"type":"qr","qr":' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
    (b'{"type":"fatal","code":' + b"[" * (MAX_FRAME_DEPTH + 1) + b"]" * (MAX_FRAME_DEPTH + 1)
     + b',"message":"x"}', "nested deeper"),
    (b'{"type":"ready","protocol":' + b"9" * 5000 + b"}", "4300"),
    (b'{"type":"ready","protocol":NaN}', "NaN"),
    (b'{"type":"ready","protocol":1e400}', "out of range"),
    (b'{"type":"qr","qr":"\xed\xa0\x80"}', "not UTF-8"),  # a surrogate, encoded: not UTF-8
    ('{"type":"qr","qr":"x"}'.encode("utf-16"), "not UTF-8"),
])
def test_lines_no_sidecar_writes_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_event(line)


def test_half_an_emoji_in_a_message_keeps_the_message() -> None:
    """JSON.stringify writes an unpaired surrogate as an escape: the text is the customer's,
    so it is kept, the broken half shown as U+FFFD (a refusal would lose the message)."""
    frame = copy.deepcopy(next(f for f in GOLDEN if f["type"] == "message"))
    frame["message"]["message"] = {"conversation": "oi \ud83d", "x\udfff": ["\udc00!"]}
    event = decode_event(json.dumps(frame).encode())
    assert event.message["message"] == {"conversation": "oi \ufffd", "x\ufffd": ["\ufffd!"]}
    _safe_downstream(event)


# --- the reader of a real process ------------------------------------------------------------
_CHILD = """
import sys
out, err = open(sys.argv[1], "rb").read().split(b"\\n--stderr--\\n")
sys.stderr.buffer.write(err); sys.stderr.flush()
sys.stdout.buffer.write(out); sys.stdout.flush()
sys.stderr.buffer.write(b"pino says hi\\n" * 3); sys.stderr.flush()  # relogged if still read
sys.stdout.buffer.write(b'{"type":"qr","qr":"last"}\\n')
"""
_BAD_STDERR = [b'{"level":"x","msg":"a"}', b'{"level":null}', b'{"level":1e400,"msg":1}',
               b'{"level":[],"msg":{}}', b'{"level":50,"msg":' + b"[" * 990 + b"]" * 990 + b"}",
               b'{"level":50,"msg":"half \\ud800"}', b'{"level":NaN}', b"[" * 5000, b"\xff\xfe"]


async def _read(lines: list[bytes], tmp: Path) -> tuple[list[SidecarEvent], int, list[str]]:
    """Run a child that writes `lines` (and odd pino lines on stderr); what the reader made of
    them: the events, the protocol errors counted, the warnings logged. Asserts that stderr
    was read to its end: a dead stderr reader goes unnoticed until its buffer is full (32 MiB
    of logs later), and then the sidecar blocks on its next log line."""
    script = tmp / "lines.bin"
    script.write_bytes(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines)
                       + b"\n--stderr--\n" + b"\n".join(_BAD_STDERR) + b"\n")
    events: list[SidecarEvent] = []
    errors: list[ProtocolError] = []
    warnings: list[str] = []

    async def on_event(event: SidecarEvent) -> None:
        events.append(event)

    relogged: list[str] = []

    def sink(message: Any) -> None:
        record = message.record
        if record["level"].no >= 30:  # WARNING and up
            warnings.append(record["message"])
        if record["message"] == "sidecar: pino says hi":
            relogged.append(record["message"])

    sink_id = logger.add(sink, level="DEBUG")
    try:
        proc = await SidecarProcess.start(
            InstanceId("1-7"), [sys.executable, "-c", _CHILD, str(script)], env={}, cwd=tmp,
            on_event=on_event, on_protocol_error=errors.append, command_timeout_s=5)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        logger.remove(sink_id)
    assert len(relogged) == 3, "the stderr reader stopped"
    return events, len(errors), warnings


def test_the_reader_logs_counts_and_skips_bad_lines(tmp_path: Path) -> None:
    good = b'{"type":"qr","qr":"ok"}'
    bad = [b"[" * 5000, b'{"type":"ready","protocol":' + b"9" * 5000 + b"}", b"\xff{}",
           b'{"type":"qr","qr":NaN}', b"[1]", b'{"type":"teleport"}', b'{"type":"qr"}']
    events, errors, warnings = asyncio.run(_read([good, *bad, good], tmp_path))
    assert [getattr(e, "qr", None) for e in events] == ["ok", "ok", "last"]
    assert errors == len(bad)
    assert len([w for w in warnings if w.startswith("Sidecar sent")]) == len(bad)


def test_the_reader_survives_any_lines(tmp_path: Path) -> None:
    @settings(max_examples=10, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(lines=st.lists(LINES.filter(lambda b: b.strip()), min_size=1, max_size=8))
    def check(lines: list[bytes]) -> None:
        events, errors, _ = asyncio.run(_read(lines, tmp_path))
        assert events and getattr(events[-1], "qr", None) == "last"  # read to the end
        expected_events = expected_errors = 0
        for line in (line.replace(b"\n", b" ") for line in lines):
            if not line.strip():
                continue  # blank lines are skipped, not counted
            try:  # a result goes to its command, not to on_event
                expected_events += not isinstance(decode_event(line), ResultEvent)
            except ProtocolError:
                expected_errors += 1
        assert (len(events) - 1, errors) == (expected_events, expected_errors)

    check()
