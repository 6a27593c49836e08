"""`ponte run`: the whole service under real supervisord with the repository's config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.conftest import ROOT, free_port, wait_for

BASE_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}


def ponte(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    # Output to a file: supervisord blocks (and with it every program) on a full pipe.
    with (cwd / "ponte.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "bridge.cli", *args], cwd=cwd,
                                env={**env, "PYTHONPATH": str(ROOT)}, stdout=log,
                                stderr=subprocess.STDOUT)


def test_missing_chatwoot_settings_stop_run_at_once_naming_each(tmp_path: Path) -> None:
    proc = ponte("run", env=BASE_ENV, cwd=tmp_path)  # no .env in tmp_path
    proc.wait(timeout=30)
    assert proc.returncode == 11
    text = (tmp_path / "ponte.log").read_text()
    for name in ("CHATWOOT_BASE_URL", "CHATWOOT_API_ACCESS_TOKEN", "WEBHOOK_TOKEN",
                 ".env.example"):
        assert name in text
    assert text.count("\n") <= 2  # one message, not a traceback


def test_run_brings_up_redis_serve_and_worker_under_supervisord(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {**BASE_ENV, "CHATWOOT_BASE_URL": "http://127.0.0.1:9",
           "CHATWOOT_API_ACCESS_TOKEN": "tok", "WEBHOOK_TOKEN": "hook",
           "SERVER_PORT": str(port), "SERVER_DATA_DIR": str(data),
           "CHATWOOT_QUEUE_CONCURRENCY": "2"}
    proc = ponte("run", env=env, cwd=tmp_path)
    try:
        status = wait_for(lambda: _get(f"http://127.0.0.1:{port}/global-status"), timeout=40,
                          message="/global-status")
        assert status["instancesGlobal"] == [] and status["queues"] == {"ponte-chatwoot": 0}
        socket = data / "redis" / "redis.sock"
        assert socket.exists() and (data / "redis" / "appendonly.aof").exists()
        assert oct(data.stat().st_mode & 0o777) == "0o700"
        names = wait_for(lambda: _programs(proc.pid) >= {"redis", "serve", "worker"} and
                         _programs(proc.pid), timeout=20, message="three programs")
        assert {"redis", "serve", "worker"} <= names
        # rq info sees the queue on the embedded Redis, as the README says.
        info = subprocess.run([str(Path(sys.executable).parent / "rq"), "info", "--url",
                               f"unix://{socket}", "--only-queues"],
                              capture_output=True, text=True, timeout=30)
        assert "ponte-chatwoot" in info.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / "ponte.log").read_text()[-3000:]
    children = [p for p in psutil.process_iter(["cmdline"])
                if str(data) in " ".join(p.info["cmdline"] or [])]
    assert children == []  # nothing left behind


def _get(url: str) -> dict[str, object] | None:
    try:
        answer = httpx.get(url, timeout=1)
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _programs(pid: int) -> set[str]:
    """Which of Ponte's programs run under supervisord `pid` (by their command line)."""
    found = set()
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return found
    for child in children:
        cmdline = " ".join(child.cmdline())
        for name in ("redis", "serve", "worker"):
            if cmdline.endswith(f"ponte {name}") or (name == "redis" and "redis-server" in
                                                      cmdline):
                found.add(name)
    return found
