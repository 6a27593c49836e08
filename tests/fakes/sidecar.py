#!/usr/bin/env python3
"""A scripted sidecar: a real process that speaks protocol v1 by replaying a `.jsonl` script.

Chosen through `BAILEYS_SIDECAR_COMMAND`, e.g.
`python tests/fakes/sidecar.py --control DIR run1.jsonl run2.jsonl`: the Nth start of an
instance plays the Nth script (the last one repeats). Each script line is one directive:

    {"emit": {...frame...}}        write one frame to stdout (`"$pid"` becomes the real pid)
    {"raw": "text"}                write a raw line (to test garbage handling)
    {"stderr": "text"}             write a line to stderr
    {"sleep": 0.2}                 wait
    {"wait_file": "name"}          wait until DIR/<instance>.<name> exists (a test's trigger)
    {"expect": "send_text", "reply": {"ok": true, "data": {...}}}
                                   wait for that command and answer it (`"$id"` in data is
                                   replaced by a fresh message id, `"$jid"` by the command's jid)
    {"exit": 3}                    end the process now with that status
    {"ticks": true}                from now on, each send answered by default is followed by
                                   `message_status` delivered and read for its message id

Always, concurrently with the script: `shutdown` is answered ok and ends the process (status
0); `logout` is answered, followed by a close 401, and ends it; after the script, `send_text` is
answered ok (send_media, revoke, mark_read and profile_picture too). Every command received
is appended to DIR/<instance>.commands.jsonl (for send_media with the file's size and sha256
as found on arrival, since the bridge deletes it afterwards); every start is counted in
DIR/<instance>.runs and timed in DIR/<instance>.starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_out_lock = threading.Lock()
_SENT = {"message_id": "$id", "jid": "$jid", "timestamp": "$now"}
DEFAULT_DATA: dict[Any, dict[str, Any]] = {
    "send_text": _SENT, "send_media": _SENT, "revoke": {"message_id": "$message_id"},
    "profile_picture": {"url": "https://pps.whatsapp.net/v/t61.24694-24/ponte-test.jpg"}}


def describe_file(path: Any) -> dict[str, Any]:
    try:
        data = Path(str(path)).read_bytes()
    except OSError:
        return {"exists": False}
    return {"exists": True, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "head": data[:8].hex()}


def write(frame: dict[str, Any] | str) -> None:
    line = frame if isinstance(frame, str) else json.dumps(frame, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def substitute(value: Any, mapping: dict[str, Any]) -> Any:
    if isinstance(value, str) and value in mapping:
        return mapping[value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    return value


class Sidecar:
    def __init__(self, control: Path, instance: str) -> None:
        self.control = control
        self.instance = instance
        self.ticks = False
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.record = control / f"{instance}.commands.jsonl"

    def reader(self) -> None:
        for line in sys.stdin:
            try:
                command = json.loads(line)
            except ValueError:
                continue
            if command.get("type") == "send_media":
                command["file"] = describe_file(command.get("path"))
            with self.record.open("a") as handle:
                handle.write(json.dumps(command) + "\n")
            kind = command.get("type")
            if kind == "shutdown":
                write({"type": "result", "id": command["id"], "ok": True, "data": {}})
                os._exit(0)
            if kind == "logout":
                write({"type": "result", "id": command["id"], "ok": True, "data": {}})
                write({"type": "connection", "state": "close", "status_code": 401,
                       "reason": "loggedOut", "message": "Intentional Logout",
                       "will_reconnect": False})
                os._exit(0)
            self.commands.put(command)
        os._exit(0)  # stdin closed: the bridge went away

    def answer(self, command: dict[str, Any], reply: dict[str, Any]) -> None:
        mapping = {"$id": "3EB0" + uuid.uuid4().hex[:16].upper(), "$jid": command.get("jid"),
                   "$now": int(time.time()), "$message_id": command.get("message_id")}
        frame = {"type": "result", "id": command["id"], "ok": reply.get("ok", True)}
        if frame["ok"]:
            frame["data"] = substitute(reply.get("data", {}), mapping)
        else:
            frame["error"] = reply["error"]
        write(frame)
        sent = frame.get("data", {}).get("message_id") if frame["ok"] else None
        if self.ticks and sent and command.get("type") in ("send_text", "send_media"):
            key = {"remoteJid": command["jid"], "fromMe": True, "id": sent}
            for status in ("delivered", "read"):
                write({"type": "message_status", "key": key, "status": status})

    def run(self, directives: list[dict[str, Any]]) -> None:
        for directive in directives:
            if "emit" in directive:
                write(substitute(directive["emit"], {"$pid": os.getpid()}))
            elif "raw" in directive:
                write(str(directive["raw"]))
            elif "stderr" in directive:
                sys.stderr.write(str(directive["stderr"]) + "\n")
                sys.stderr.flush()
            elif "sleep" in directive:
                time.sleep(float(directive["sleep"]))
            elif "wait_file" in directive:
                trigger = self.control / f"{self.instance}.{directive['wait_file']}"
                while not trigger.exists():
                    time.sleep(0.02)
            elif "expect" in directive:
                while True:
                    command = self.commands.get()
                    if command.get("type") == directive["expect"]:
                        self.answer(command, directive.get("reply", {"ok": True}))
                        break
                    self.answer(command, {"ok": True})
            elif "ticks" in directive:
                self.ticks = bool(directive["ticks"])
            elif "exit" in directive:
                sys.stdout.flush()
                os._exit(int(directive["exit"]))
        while True:  # script done: keep answering like a healthy sidecar
            command = self.commands.get()
            self.answer(command, {"ok": True, "data": DEFAULT_DATA.get(command.get("type"), {})})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("scripts", nargs="+", type=Path)
    args = parser.parse_args()
    instance = os.environ.get("PONTE_INSTANCE_ID", "unknown")
    args.control.mkdir(parents=True, exist_ok=True)
    counter = args.control / f"{instance}.runs"
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    staged = counter.with_suffix(".tmp")
    staged.write_text(str(runs))
    staged.replace(counter)  # atomic: a test may read the counter at any moment
    with (args.control / f"{instance}.starts").open("a") as starts:
        starts.write(f"{time.time()}\n")
    script = args.scripts[min(runs, len(args.scripts)) - 1]
    directives = [json.loads(line) for line in script.read_text().splitlines() if line.strip()]
    sidecar = Sidecar(args.control, instance)
    threading.Thread(target=sidecar.reader, daemon=True).start()
    sidecar.run(directives)


if __name__ == "__main__":
    main()
