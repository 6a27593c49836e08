"""Settings: the original bridge's names, clear refusals, derived values."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError

REQUIRED = {"chatwoot_base_url": "https://cw.example.com", "chatwoot_api_access_token": "tok",
            "webhook_token": "hook"}


def settings(**values: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, **values)


def test_missing_chatwoot_settings_are_named_in_one_message(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    for name in ("CHATWOOT_BASE_URL", "CHATWOOT_API_ACCESS_TOKEN", "WEBHOOK_SECRET",
                 "WEBHOOK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        settings().check_required()
    message = str(caught.value)
    for name in ("CHATWOOT_BASE_URL", "CHATWOOT_API_ACCESS_TOKEN",
                 "WEBHOOK_SECRET or WEBHOOK_TOKEN", ".env.example"):
        assert name in message


def test_original_bridge_env_file_is_understood(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "SERVER_PORT=3001\nSERVER_LOG_LEVEL=info\nMAX_WORKERS=0\n"
        "BAILEYS_AUTH_SESSIONS_PARENT_DIR=automation_auth_sessions\n"
        "BAILEYS_BROWSER_NAME=ChatwootDynamicBridge\nBAILEYS_LOG_LEVEL_INSTANCE=warn\n"
        "BAILEYS_RECONNECT_DELAY_MS=10000\nBAILEYS_MAX_QR_SEND_ATTEMPTS=4\n"
        "CHATWOOT_BASE_URL=https://cw.example.com\nCHATWOOT_API_ACCESS_TOKEN=abc123\n"
        "CHATWOOT_API_TIMEOUT=15000\nDEFAULT_CHATWOOT_ACCOUNT_ID=1\n"
        "DEFAULT_RELAY_CHATWOOT_INBOX_ID=0\nWEBHOOK_COMMAND_KEYWORD=Erga\n"
        "WEBHOOK_AUTHORIZED_PHONE_NUMBERS=+5585999999999, +55 (11) 98888-7777\n"
        "REDIS_URL=redis://localhost:6379\nREDIS_USER=ponte\nREDIS_PASSWORD=s3cr:t\n"
        "CHATWOOT_QUEUE_WORKER_LOG_LEVEL=info\nCHATWOOT_QUEUE_CONCURRENCY=5\n"
        "BULLMQ_JOB_ATTEMPTS=3\nBULLMQ_JOB_BACKOFF_DELAY=5000\nWEBHOOK_TOKEN=t\n")
    s = load_settings(_env_file=env)
    s.check_required()
    assert s.server_port == 3001
    assert s.sessions_dir == Path.cwd() / "automation_auth_sessions"
    assert s.baileys_log_level_instance == "warning"
    assert s.baileys_reconnect_delay_ms == 10000
    assert s.webhook_command_keyword == "erga"
    assert s.webhook_authorized_phone_numbers == ["+5585999999999", "+5511988887777"]
    assert s.redis_connection_url() == "redis://ponte:s3cr%3At@localhost:6379"
    assert s.bullmq_job_attempts == 3
    assert s.chatwoot_language == "pt_BR"


def test_malformed_value_is_refused_with_its_variable_named() -> None:
    with pytest.raises(ConfigError, match="SERVER_PORT"):
        settings(server_port="http")
    with pytest.raises(ConfigError, match="WEBHOOK_AUTHORIZED_PHONE_NUMBERS"):
        settings(webhook_authorized_phone_numbers="call-me-maybe")
    with pytest.raises(ConfigError, match="BAILEYS_WA_VERSION"):
        settings(baileys_wa_version="latest")
    with pytest.raises(ConfigError, match="CHATWOOT_LANGUAGE"):
        settings(chatwoot_language="fr")


def test_example_placeholders_are_refused() -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        settings(**{**REQUIRED, "chatwoot_api_access_token": "seu-token-de-api"}
                 ).check_required()
    with pytest.raises(ConfigError, match="http"):
        settings(**{**REQUIRED, "chatwoot_base_url": "chatwoot.local"}).check_required()


def test_unset_redis_means_embedded_on_a_private_socket(tmp_path: Path) -> None:
    s = settings(**REQUIRED, server_data_dir=tmp_path)
    assert s.embedded_redis
    assert s.redis_connection_url() == f"unix://{tmp_path.resolve()}/redis/redis.sock"
    assert not settings(**REQUIRED, redis_url="redis://r:6379/2").embedded_redis
    with pytest.raises(ConfigError, match="REDIS_URL"):
        settings(**REQUIRED, redis_url="http://r").redis_connection_url()


def test_data_spool_and_sessions_paths_are_absolute_from_the_start_up_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sidecar refuses a relative path for send_media (its cwd is not serve's): relative
    # settings, the default included, are fixed against the directory Ponte started in.
    monkeypatch.chdir(tmp_path)
    default = settings(**REQUIRED)
    assert default.server_data_dir == tmp_path / "data"
    assert default.spool_dir == tmp_path / "data" / "spool"
    assert default.sessions_dir == tmp_path / "data" / "sessions"
    assert default.journal_dir == tmp_path / "data" / "journal"
    given = settings(**REQUIRED, server_data_dir="var/../ponte",
                     baileys_auth_sessions_parent_dir="auth")
    assert given.server_data_dir == tmp_path / "ponte"
    assert given.sessions_dir == tmp_path / "auth"
    assert given.spool_dir.is_absolute()
    monkeypatch.chdir("/")  # later changes of directory do not move them
    assert default.spool_dir == tmp_path / "data" / "spool"
    assert settings(**REQUIRED, server_data_dir="/srv/ponte").sessions_dir == Path(
        "/srv/ponte/sessions")


def test_secrets_never_show_in_the_settings_repr() -> None:
    s = settings(**REQUIRED, webhook_secret="shh-1,shh-2", server_admin_token="adm")
    text = repr(s) + str(s)
    for secret in ("tok", "shh-1", "shh-2", "adm"):
        assert f"'{secret}'" not in text
    assert [x.get_secret_value() for x in s.webhook_secret] == ["shh-1", "shh-2"]


def test_env_example_as_copied_is_valid_and_asks_for_the_required_values(
        tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / ".env.example"
    s = load_settings(_env_file=example)
    assert s.sessions_dir == Path.cwd() / "data/sessions"  # empty means default, not "."
    assert s.server_admin_token is None and s.redis_url is None and s.webhook_token is None
    with pytest.raises(ConfigError, match="CHATWOOT_API_ACCESS_TOKEN, WEBHOOK_SECRET or"):
        s.check_required()


def test_every_setting_is_in_env_example() -> None:
    from bridge.config import Settings

    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    names = {line.split("=", 1)[0] for line in example.splitlines()
             if line and not line.startswith("#")}
    assert {name.upper() for name in Settings.model_fields} - names == set()


def test_serve_listens_on_loopback_by_default() -> None:
    s = settings(**REQUIRED)
    assert s.server_host == "127.0.0.1" and s.loopback_only and not s.server_public_status
    s.check_required()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_a_loopback_bind_needs_no_admin_token(host: str) -> None:
    settings(**REQUIRED, server_host=host).check_required()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "ponte.internal"])
def test_a_network_bind_without_an_admin_token_is_refused(host: str) -> None:
    # "Tenants kept apart", B: /, /global-status, /metrics and the live QR code answered anyone.
    with pytest.raises(ConfigError) as caught:
        settings(**REQUIRED, server_host=host).check_required()
    message = str(caught.value)
    for name in (f"SERVER_HOST={host} ", "SERVER_ADMIN_TOKEN", "SERVER_PUBLIC_STATUS=true",
                 "/metrics"):
        assert name in message


def test_a_network_bind_with_a_token_or_said_public_starts() -> None:
    settings(**REQUIRED, server_host="0.0.0.0", server_admin_token="adm").check_required()
    settings(**REQUIRED, server_host="0.0.0.0", server_public_status="true").check_required()
