"""Configuration at start: unknown variables refused by name, the original bridge's leftovers
accepted, and `ponte config check` printing the effective settings with secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ORIGINAL_IGNORED, env_file_values, load_settings, unknown_variables
from bridge.errors import ConfigError
from tests.conftest import ROOT

REQUIRED = ("CHATWOOT_BASE_URL=https://cw.example.com\nCHATWOOT_API_ACCESS_TOKEN=cw-tok-91b2\n"
            "WEBHOOK_TOKEN=hook-tok-55aa\n")


def ponte(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), **env}, capture_output=True,
                          text=True, timeout=60)


def test_an_unknown_variable_in_the_environment_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_PROT", "3001")
    with pytest.raises(ConfigError, match=r"SERVER_PROT \(in the environment; did you mean "
                                          r"SERVER_PORT\?\)"):
        load_settings(_env_file=None)


def test_an_unknown_variable_in_the_env_file_is_refused_by_name(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(REQUIRED + "CHATWOOT_QUEUE_WORKERS=4\nWEBHOOK_TOKEN_OLD=\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=env)
    assert "CHATWOOT_QUEUE_WORKERS (in .env" in str(caught.value)
    assert "WEBHOOK_TOKEN_OLD (in .env" in str(caught.value)  # empty, still a mistake
    assert "cw-tok-91b2" not in str(caught.value)


def test_the_original_bridges_leftovers_are_accepted_and_ignored(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(REQUIRED + "REDIS_MAP_KEY_PREFIX=wa:map\nREDIS_MAP_TTL_SECONDS=86400\n"
                   "MAX_WORKERS=0\nSTATUS_REQUEST_TIMEOUT=5000\nDEFAULT_CHATWOOT_ACCOUNT_ID=1\n"
                   "DEFAULT_RELAY_CHATWOOT_INBOX_ID=0\nCOMMAND_EXECUTOR_URL=http://x\n"
                   "BULLMQ_JOB_ATTEMPTS=3\n")
    assert load_settings(_env_file=env).bullmq_job_attempts == 3
    assert ORIGINAL_IGNORED == {"REDIS_MAP_KEY_PREFIX", "REDIS_MAP_TTL_SECONDS"}


def test_every_name_in_env_example_is_known() -> None:
    assert unknown_variables({}, env_file_values(ROOT / ".env.example")) == []


def test_kubernetes_service_variables_do_not_stop_ponte() -> None:
    injected = {"REDIS_PORT": "tcp://10.0.0.5:6379", "REDIS_SERVICE_HOST": "10.0.0.5",
                "REDIS_SERVICE_PORT": "6379", "REDIS_PORT_6379_TCP": "tcp://10.0.0.5:6379",
                "REDIS_PORT_6379_TCP_ADDR": "10.0.0.5", "CHATWOOT_SERVICE_PORT_HTTP": "3000"}
    assert unknown_variables(injected, {}) == []
    # Typed by a person, the same names are mistakes.
    typed = unknown_variables({"REDIS_PORT": "6379"}, {"REDIS_SERVICE_HOST": "x"})
    assert [u.split(" (")[0] for u in typed] == ["REDIS_PORT", "REDIS_SERVICE_HOST"]
    assert "(in the environment" in typed[0] and "(in .env" in typed[1]


def test_config_check_prints_every_setting_masked_with_its_source(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        REQUIRED + "WEBHOOK_SECRET=sec-one-7f,sec-two-8e\nSERVER_ADMIN_TOKEN=adm-tok-3c\n"
        "REDIS_URL=redis://ponte:redis-pw-9d@redis.internal:6379/2\n"
        "CHATWOOT_SIGNATURE_DELIMITER=\\n\n")
    done = ponte("config", "check", cwd=tmp_path, SERVER_PORT="4010")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for secret in ("cw-tok-91b2", "hook-tok-55aa", "sec-one-7f", "sec-two-8e", "adm-tok-3c",
                   "redis-pw-9d"):
        assert secret not in out + done.stderr
    lines = {line.split("=", 1)[0]: line for line in out.splitlines() if "=" in line}
    assert lines["SERVER_PORT"].split() == ["SERVER_PORT=4010", "#", "environment"]
    assert lines["SERVER_HOST"].split() == ["SERVER_HOST=127.0.0.1", "#", "default"]
    assert lines["CHATWOOT_BASE_URL"].split() == ["CHATWOOT_BASE_URL=https://cw.example.com",
                                                  "#", ".env"]
    assert lines["CHATWOOT_API_ACCESS_TOKEN"].startswith("CHATWOOT_API_ACCESS_TOKEN=********")
    assert lines["WEBHOOK_SECRET"].startswith("WEBHOOK_SECRET=******** ")
    assert "REDIS_URL=redis://ponte:********@redis.internal:6379/2" in lines["REDIS_URL"]
    assert lines["CHATWOOT_SIGNATURE_DELIMITER"].startswith("CHATWOOT_SIGNATURE_DELIMITER=\\n ")
    assert lines["REDIS_PASSWORD"].split() == ["REDIS_PASSWORD=", "#", "default"]
    from bridge.config import Settings
    assert set(lines) >= {name.upper() for name in Settings.model_fields}


@pytest.mark.parametrize(("env", "needle", "commands"), [
    ({"SERVER_PROT": "1"}, "SERVER_PROT", (("config", "check"), ("serve",), ("worker",))),
    ({"SERVER_PORT": "http"}, "SERVER_PORT", (("config", "check"),)),
    ({"CHATWOOT_BASE_URL": "chatwoot.local"}, "CHATWOOT_BASE_URL", (("config", "check"),)),
])
def test_a_bad_configuration_is_refused_at_start_with_exit_11(
        tmp_path: Path, env: dict[str, str], needle: str,
        commands: tuple[tuple[str, ...], ...]) -> None:
    (tmp_path / ".env").write_text(REQUIRED)
    for command in commands:
        done = ponte(*command, cwd=tmp_path, **env)
        assert done.returncode == 11, (command, done.stdout, done.stderr)
        assert needle in done.stderr and done.stdout == ""
        assert "Traceback" not in done.stderr


def test_config_check_refuses_a_network_bind_without_a_token(tmp_path: Path) -> None:
    required = {"CHATWOOT_BASE_URL": "https://cw.example.com", "CHATWOOT_API_ACCESS_TOKEN": "t",
                "WEBHOOK_TOKEN": "h", "SERVER_HOST": "0.0.0.0"}
    done = ponte("config", "check", cwd=tmp_path, **required)
    assert done.returncode == 11
    assert "SERVER_HOST=0.0.0.0" in done.stderr and "SERVER_ADMIN_TOKEN" in done.stderr
    opened = ponte("config", "check", cwd=tmp_path, **required, SERVER_PUBLIC_STATUS="true")
    assert opened.returncode == 0, opened.stderr
