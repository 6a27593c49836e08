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
    env = _run_env(port, data)
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


def _run_env(port: int, data: Path) -> dict[str, str]:
    """`ponte run` with the Chatwoot settings present (Chatwoot itself is never reached)."""
    return {**BASE_ENV, "CHATWOOT_BASE_URL": "http://127.0.0.1:9",
            "CHATWOOT_API_ACCESS_TOKEN": "tok", "WEBHOOK_TOKEN": "hook",
            "SERVER_PORT": str(port), "SERVER_DATA_DIR": str(data),
            "CHATWOOT_QUEUE_CONCURRENCY": "2"}


def _program_name(child: psutil.Process) -> str | None:
    """Which of Ponte's programs (redis, serve, worker) `child` is, by its command line."""
    try:
        cmdline = child.cmdline()
    except psutil.Error:  # exited meanwhile, or a zombie not yet reaped
        return None
    if cmdline[-1:] in (["serve"], ["worker"], ["redis"]):
        return cmdline[-1]
    return "redis" if "redis-server" in " ".join(cmdline) else None


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


def _programs(pid: int) -> set[str]:
    """Which of Ponte's programs run under supervisord `pid`."""
    return {name for child in _children(pid) if (name := _program_name(child))}


def test_supervisord_brings_back_a_killed_program_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = _run_env(port, data)
    status_url = f"http://127.0.0.1:{port}/global-status"
    proc = ponte("run", env=env, cwd=tmp_path)
    seen: list[psutil.Process] = []
    try:
        wait_for(lambda: _get(status_url), timeout=40, message="/global-status")
        serve = wait_for(lambda: _program(proc.pid, "serve"), timeout=20, message="serve")
        worker = wait_for(lambda: _program(proc.pid, "worker"), timeout=20, message="worker")
        pool = wait_for(lambda: len(worker.children()) >= 2 and worker.children(), timeout=20,
                        message="the worker pool's workers")
        seen += [worker, *pool]
        # The OOM killer's way: no signal handler runs, the pool's workers are orphaned.
        worker.send_signal(signal.SIGKILL)
        again = wait_for(lambda: (p := _program(proc.pid, "worker")) and p.pid != worker.pid
                         and p, timeout=20, message="a new worker program")
        seen += [again]
        # The orphans leave by themselves; the new pool registers its own workers.
        wait_for(lambda: not any(_alive(p) for p in pool), timeout=20,
                 message="the old pool's workers to stop")
        status = wait_for(lambda: (s := _get(status_url)) and s["workers"] == 2 and s,
                          timeout=20, message="two live workers")
        assert status["redis"] == {"ok": True}
        assert _program(proc.pid, "serve") == serve  # the others were left alone
        seen += [serve, *again.children()]
        # One worker killed on its own: RQ's scheduler, which it forked, must not live on as
        # an orphan holding the scheduler lock (the new pool's retries would wait on it).
        owner = wait_for(lambda: next((c for c in again.children() if c.children()), None),
                         timeout=20, message="the worker that runs RQ's scheduler")
        (scheduler,) = owner.children()
        seen += [scheduler]
        owner.send_signal(signal.SIGKILL)
        wait_for(lambda: not _alive(scheduler), timeout=20,
                 message="the killed worker's scheduler to stop")
        seen += again.children()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp_path / "ponte.log").read_text()[-3000:]
    assert [p.pid for p in seen if _alive(p)] == []  # nothing left behind
    log = (tmp_path / "ponte.log").read_text()
    assert "exited: worker (terminated by SIGKILL; not expected)" in log


def _program(pid: int, name: str) -> psutil.Process | None:
    """The process of supervisord's program `name` (serve or worker), if it runs."""
    return next((child for child in _children(pid) if _program_name(child) == name), None)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
