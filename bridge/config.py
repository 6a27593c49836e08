"""Settings from the environment and `.env`, validated before anything starts.

The names of the original Node bridge (`SERVER_PORT`, `CHATWOOT_BASE_URL`,
`BAILEYS_MAX_QR_SEND_ATTEMPTS`, `WEBHOOK_COMMAND_KEYWORD`, `REDIS_URL`, ...) keep their meaning,
so an existing `.env` works. `Settings` is built once, in `cli.py`, and passed down: nothing else
reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.ids import normalize_phone

LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical"]
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "silent": "critical"}

# Values copied from the original README's example .env: a deployment still carrying them
# would talk to nowhere, so they are refused with a clear message rather than tried.
_PLACEHOLDERS = {
    "seu-token-de-api",
    "SEU_TOKEN_DE_ACESSO_DA_API_DO_CHATWOOT",
    "http://seu-chatwoot-url",
    "http://SEU_CHATWOOT_URL.com",
    "changeme",
    "change-me",
}

CommaList = Annotated[list[str], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting Ponte reads. Field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True,
        env_ignore_empty=True,  # an empty line in .env (as in .env.example) means "unset"
    )

    # --- server -----------------------------------------------------------------------------
    # Loopback unless told otherwise: the status page shows the live QR code, and whoever scans
    # it owns the number. A non-loopback bind needs SERVER_ADMIN_TOKEN (or, knowingly,
    # SERVER_PUBLIC_STATUS=true): check_required refuses it otherwise.
    server_host: str = "127.0.0.1"
    server_port: int = Field(3001, ge=1, le=65535)
    server_log_level: LogLevel = "info"
    server_log_format: Literal["text", "json"] = "text"
    server_admin_token: SecretStr | None = None
    # Listen beyond loopback with the status endpoints open (a proxy or firewall restricts
    # them). QR and pairing codes still stay off the page without SERVER_ADMIN_TOKEN.
    server_public_status: bool = False
    # Made absolute at load, against the working directory at start-up (the default `data`
    # too): paths travel to sidecars and workers, and send_media refuses a relative one.
    server_data_dir: Path = Field(Path("data"), validate_default=True)
    # Where Chatwoot reaches Ponte (https://ponte.example.com): the webhook URL of inboxes that
    # `erga caixa` creates.
    server_public_url: str | None = None
    # What serve receives while Redis does not answer waits in a local journal under
    # <SERVER_DATA_DIR>/journal (docs/journal.md); past this size new events wait for room.
    server_journal_max_mb: int = Field(1024, ge=1)
    # Redis out of reach this long: a note tells the operators (and another when it is back).
    server_redis_outage_note_seconds: float = Field(60.0, ge=1)

    # --- WhatsApp (Baileys sidecars) --------------------------------------------------------
    baileys_auth_sessions_parent_dir: Path | None = None
    baileys_browser_name: str = "Ponte"
    baileys_log_level_instance: LogLevel = "warning"
    baileys_reconnect_delay_ms: int = Field(2000, ge=100)
    baileys_reconnect_max_delay_ms: int = Field(300_000, ge=1000)
    baileys_max_qr_send_attempts: int = Field(4, ge=1, le=50)
    baileys_wa_websocket_url: str = "wss://web.whatsapp.com/ws/chat"
    baileys_wa_version: str = Field("2.3000.1043857760", pattern=r"^\d+\.\d+\.\d+$")
    # Two V8 settings for many mostly idle sidecars on one host (docs/benchmarks.md, "Sidecar
    # memory", `python -m bench --only memory --candidates`): 25-30 MiB less PSS each at 20 numbers.
    # --max-semi-space-size=1: a young generation of 1 MiB per semi-space instead of 16. An idle
    #   sidecar allocates too little to trigger a scavenge, so it kept up to ~20 MiB of dead young
    #   objects resident; old space, Buffers and streamed media are not affected.
    # --v8-pool-size=1: one V8 background thread instead of four. Each one kept a malloc arena of
    #   compiler and GC scratch memory (~8 MiB); one sidecar handles one number's traffic.
    baileys_sidecar_command: str = "node --max-semi-space-size=1 --v8-pool-size=1 sidecar/main.js"
    baileys_command_timeout_ms: int = Field(30_000, ge=100)
    baileys_connect_timeout_ms: int = Field(20_000, ge=100)
    baileys_keepalive_ms: int = Field(30_000, ge=1000)
    baileys_qr_timeout_ms: int | None = Field(None, ge=1000)
    baileys_media_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Chats not shown in Chatwoot: status updates, channels (newsletters), broadcast lists.
    baileys_ignore_chats: CommaList = ["status", "newsletter", "broadcast"]
    baileys_stop_wait_ms: int = Field(10_000, ge=100)
    baileys_start_secs: float = Field(10.0, ge=0)
    # A sidecar that crashes this many times within the window goes FATAL instead of looping.
    baileys_crash_loop_count: int = Field(5, ge=2)
    baileys_crash_loop_minutes: float = Field(10.0, gt=0)
    # Restart a sidecar above this RSS (MB) at a quiet moment, session kept; 0 turns it off.
    baileys_max_rss_mb: int = Field(600, ge=0)
    baileys_rss_check_seconds: float = Field(30.0, gt=0)
    # One live sidecar per identity across every `ponte serve` sharing this Redis.
    baileys_lease_ms: int = Field(30_000, ge=3000)
    baileys_send_wait_ms: int = Field(300_000, ge=1000)

    # --- Chatwoot ---------------------------------------------------------------------------
    chatwoot_base_url: str | None = None
    chatwoot_api_access_token: SecretStr | None = None
    chatwoot_api_timeout: int = Field(15_000, ge=100)  # milliseconds, as in the original
    chatwoot_queue_concurrency: int = Field(5, ge=1, le=64)
    chatwoot_queue_worker_log_level: LogLevel = "info"
    chatwoot_language: Literal["pt_BR", "en"] = "pt_BR"
    # A customer writing after their conversation was resolved: reopen it, or start a new one.
    chatwoot_conversation_policy: Literal["reopen", "new"] = "reopen"
    # A message older than this (a backlog after downtime) shows its original time; 0: never.
    chatwoot_old_message_minutes: int = Field(30, ge=0)
    # Agents' replies start with the agent's name in bold, then the delimiter ("\n": own line).
    chatwoot_sign_agent_messages: bool = False
    # Also send Chatwoot's own template messages (greeting, out-of-office, CSAT) to WhatsApp.
    chatwoot_relay_templates: bool = False
    # When an agent answers, mark the customer's messages read on WhatsApp (blue ticks).
    chatwoot_mark_read_on_reply: bool = False
    chatwoot_signature_delimiter: str = "\n"
    # Delivery attempts per message and the first backoff step (the original's BullMQ knobs).
    bullmq_job_attempts: int = Field(10, ge=1, le=100)
    bullmq_job_backoff_delay: int = Field(5000, ge=100)

    # --- Chatwoot webhook and agent commands ------------------------------------------------
    webhook_command_keyword: str = Field("erga", min_length=1, pattern=r"^\S+$")
    webhook_authorized_phone_numbers: CommaList = []
    webhook_authorized_agent_ids: Annotated[list[int], NoDecode] = []
    webhook_authorized_agent_emails: CommaList = []
    # Accepted for old .env files and ignored: anyone can rename themselves in Chatwoot.
    webhook_authorized_agent_names: CommaList = []
    webhook_secret: Annotated[list[SecretStr], NoDecode] = []
    webhook_token: SecretStr | None = None
    webhook_max_skew_seconds: int = Field(300, ge=1)
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)

    # --- Redis ------------------------------------------------------------------------------
    redis_url: str | None = None
    redis_user: str | None = None
    redis_password: SecretStr | None = None

    @field_validator("server_log_level", "baileys_log_level_instance",
                     "chatwoot_queue_worker_log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _LEVEL_ALIASES.get(value, value)
        return value

    @field_validator("webhook_authorized_phone_numbers", mode="before")
    @classmethod
    def _phones(cls, value: Any) -> Any:
        return [normalize_phone(p) for p in _split(value)]

    @field_validator("webhook_authorized_agent_emails", mode="before")
    @classmethod
    def _emails(cls, value: Any) -> Any:
        return [e.lower() for e in _split(value)]

    @field_validator("webhook_authorized_agent_ids", "webhook_secret",
                     "webhook_authorized_agent_names", "baileys_ignore_chats", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("webhook_command_keyword", mode="before")
    @classmethod
    def _keyword(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("chatwoot_signature_delimiter", mode="before")
    @classmethod
    def _unescape(cls, value: Any) -> Any:
        # .env files cannot hold a raw newline: "\n" written there means one.
        return value.replace("\\n", "\n") if isinstance(value, str) else value

    @field_validator("chatwoot_base_url", "redis_url", "server_public_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("server_data_dir", "baileys_auth_sessions_parent_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Normalised, not resolved: a symlinked data directory keeps the name it was given.
        return None if value is None else Path(os.path.abspath(value))

    @field_validator("baileys_ignore_chats")
    @classmethod
    def _ignore_chats(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"status", "newsletter", "broadcast", "group"}
        if unknown:
            raise ValueError(f"unknown chat kinds {sorted(unknown)}; use status, newsletter, "
                             "broadcast, group")
        return value

    @field_validator("baileys_sidecar_command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not shlex.split(value):
            raise ValueError("must name a program")
        return value

    # --- derived values ---------------------------------------------------------------------
    @property
    def sessions_dir(self) -> Path:
        return self.baileys_auth_sessions_parent_dir or self.server_data_dir / "sessions"

    @property
    def journal_dir(self) -> Path:
        """serve's write-ahead journal (relay/journal.py)."""
        return self.server_data_dir / "journal"

    @property
    def spool_dir(self) -> Path:
        """Media the sidecars downloaded, waiting to be attached in Chatwoot."""
        return self.server_data_dir / "spool"

    @property
    def sidecar_argv(self) -> list[str]:
        return shlex.split(self.baileys_sidecar_command)

    @property
    def loopback_only(self) -> bool:
        """SERVER_HOST reaches only this machine (`localhost`, 127.0.0.0/8, ::1)."""
        host = self.server_host.strip().strip("[]")
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # "", a host name: it may resolve to anything
            return False

    @property
    def chatwoot_url(self) -> str:
        assert self.chatwoot_base_url is not None, "check_required() runs first"
        return self.chatwoot_base_url.rstrip("/")

    @property
    def chatwoot_token(self) -> str:
        assert self.chatwoot_api_access_token is not None, "check_required() runs first"
        return self.chatwoot_api_access_token.get_secret_value()

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_redis_socket(self) -> Path:
        return (self.server_data_dir / "redis" / "redis.sock").resolve()

    def redis_connection_url(self) -> str:
        """REDIS_URL with REDIS_USER / REDIS_PASSWORD folded in (the original's separate knobs)."""
        if self.redis_url is None:
            return f"unix://{self.embedded_redis_socket}"
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got "
                              f"{parts.scheme or 'no scheme'}")
        if not (self.redis_user or self.redis_password) or parts.scheme == "unix" or (
            parts.username or parts.password
        ):
            return self.redis_url  # as given (urlunsplit would mangle unix:///path)
        user = quote(self.redis_user or "", safe="")
        password = self.redis_password.get_secret_value() if self.redis_password else ""
        netloc = f"{user}:{quote(password, safe='')}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def check_required(self) -> None:
        """Refuse to start without what every process needs; one message names every gap."""
        missing = []
        if not self.chatwoot_base_url:
            missing.append("CHATWOOT_BASE_URL")
        if not self.chatwoot_api_access_token or not self.chatwoot_token.strip():
            missing.append("CHATWOOT_API_ACCESS_TOKEN")
        if not self.webhook_secret and not self.webhook_token:
            missing.append("WEBHOOK_SECRET or WEBHOOK_TOKEN")
        if missing:
            raise ConfigError(
                "Missing settings: " + ", ".join(missing) + ". Copy .env.example to .env and "
                "fill them in (each is explained there), or set them in the environment."
            )
        placeholders = [
            name for name, value in (
                ("CHATWOOT_BASE_URL", self.chatwoot_base_url),
                ("CHATWOOT_API_ACCESS_TOKEN", self.chatwoot_token),
            ) if value in _PLACEHOLDERS
        ]
        if placeholders:
            raise ConfigError("Settings still hold the example placeholder: "
                              + ", ".join(placeholders) + ". Put your real values in .env.")
        parts = urlsplit(self.chatwoot_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"CHATWOOT_BASE_URL must be an http(s) URL, got {self.chatwoot_url!r}")
        self.redis_connection_url()
        self.check_exposure()

    def check_exposure(self) -> None:
        """Refuse to open the status endpoints (and the QR code) to the network by accident."""
        if self.server_admin_token is not None or self.server_public_status:
            return
        if self.loopback_only:
            return
        raise ConfigError(
            f"SERVER_HOST={self.server_host} listens beyond this machine, but SERVER_ADMIN_TOKEN "
            "is not set: the status page, /global-status, /metrics and /recent-failures would "
            "answer anyone who reaches the port. Set SERVER_ADMIN_TOKEN to a long random string "
            "(openssl rand -hex 32), or SERVER_HOST=127.0.0.1 behind a proxy on this host, or "
            "SERVER_PUBLIC_STATUS=true if a proxy or firewall already restricts them.")


# --- what the environment and .env hold -------------------------------------------------------
PREFIXES = ("SERVER_", "BAILEYS_", "CHATWOOT_", "WEBHOOK_", "REDIS_")
# The original bridge's names under Ponte's prefixes that mean nothing here: accepted and ignored,
# so its .env still loads (.env.example, "original bridge"). Its other leftovers (MAX_WORKERS,
# STATUS_REQUEST_TIMEOUT, DEFAULT_*, COMMAND_EXECUTOR_URL; BULLMQ_* are read) have no prefix of
# ours and are never looked at.
ORIGINAL_IGNORED = frozenset({"REDIS_MAP_KEY_PREFIX", "REDIS_MAP_TTL_SECONDS"})
# Kubernetes (like Docker links) puts <SERVICE>_SERVICE_HOST, <SERVICE>_PORT=tcp://... and
# <SERVICE>_PORT_6379_TCP_* into every pod: a Service named `redis` or `chatwoot` next to Ponte
# must not stop it. Only in the environment: nobody writes those into a .env.
_SERVICE_LINK = re.compile(r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)\w*)$")
_LINK_ADDRESS = re.compile(r"^(tcp|udp|sctp)://")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD")
MASK = "********"


def env_file_values(env_file: Any) -> dict[str, str]:
    """NAME -> value of the .env file(s) Settings reads (names upper-cased)."""
    files = env_file if isinstance(env_file, list | tuple) else [env_file]
    values: dict[str, str] = {}
    for path in files:
        if path is not None and Path(path).is_file():
            for name, value in dotenv_values(path, encoding="utf-8").items():
                values[name.upper()] = value or ""
    return values


def unknown_variables(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> list[str]:
    """Names with one of Ponte's prefixes that no setting reads: a typo, or a setting that does
    not exist. Each is described with where it was found and the closest real name."""
    known = {name.upper() for name in Settings.model_fields}
    found = []
    for where, names in (("the environment", environ), (".env", dotenv)):
        for name, value in names.items():
            name = name.upper()
            if not name.startswith(PREFIXES) or name in known or name in ORIGINAL_IGNORED:
                continue
            if where == "the environment" and (_SERVICE_LINK.search(name) or (
                    name.endswith("_PORT") and _LINK_ADDRESS.match(value))):
                continue
            close = get_close_matches(name, known, n=1)
            found.append(f"{name} (in {where}" + (f"; did you mean {close[0]}?)" if close
                                                  else ")"))
    return sorted(set(found))


def mask_url(url: str) -> str:
    """The URL with the password in it (redis://user:pass@host) replaced by the mask."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", rf"\g<1>{MASK}@", url)


def _printable(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr) or (name.endswith(_SECRET_WORDS) and value):
        return MASK
    if isinstance(value, list):
        return ",".join(_printable(name, v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return mask_url(str(value)).replace("\n", "\\n")  # a newline delimiter stays visible


def describe(settings: Settings, environ: Mapping[str, str],
             dotenv: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(NAME, value, source) for every setting, secrets masked; the source is `environment`,
    `.env`, `default`, or `given` (passed in code, as tests do)."""
    # An empty value means unset (env_ignore_empty).
    env = {k.upper() for k, v in environ.items() if v}
    in_file = {k for k, v in dotenv.items() if v}
    rows = []
    for field in Settings.model_fields:
        name = field.upper()
        source = ("environment" if name in env else ".env" if name in in_file
                  else "given" if field in settings.model_fields_set else "default")
        rows.append((name, _printable(name, getattr(settings, field)), source))
    return rows


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's errors into one ConfigError that names each variable.
    A variable with one of Ponte's prefixes that no setting reads is refused the same way."""
    unknown = unknown_variables(
        os.environ, env_file_values(overrides.get("_env_file", Settings.model_config["env_file"])))
    if unknown:
        raise ConfigError("Unknown settings: " + ", ".join(unknown) + ". Every setting is "
                          "listed in .env.example; remove or rename these.")
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            problems.append(f"{name}: {error['msg']}")
        raise ConfigError("Invalid settings: " + "; ".join(problems)) from err
