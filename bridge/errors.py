"""The PonteError tree.

Every class says whether retrying can help (`retryable`); jobs decide from that flag, never from
message text. HTTP status codes map to classes in one place, `chatwoot_error_for_status`.
"""

from __future__ import annotations

from typing import ClassVar


class PonteError(Exception):
    """Base of every error Ponte raises on purpose."""

    retryable: ClassVar[bool] = False


class ConfigError(PonteError):
    """The configuration is missing or malformed; raised at start only (exit code 11)."""

    exit_code: ClassVar[int] = 11


class ProtocolError(PonteError):
    """A sidecar line that is not a valid frame: logged, counted, dropped."""


class SidecarError(PonteError):
    """A sidecar command failed; `code` is the protocol's `error.code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        # A send that failed because the socket is down may succeed after the reconnect;
        # a malformed jid or a rejected command never will.
        return self.code in {"not_connected", "timeout", "internal"}


class SidecarUnavailable(SidecarError):
    """The instance has no running, connected sidecar right now."""

    def __init__(self, message: str = "instance is not connected") -> None:
        super().__init__("not_connected", message)


class ChatwootError(PonteError):
    """Chatwoot could not be reached or refused a call."""


class ChatwootHTTPError(ChatwootError):
    """Chatwoot answered with an error status."""

    def __init__(self, status: int, body: str, *, method: str = "", path: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(f"Chatwoot {method} {path} answered {status}")
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        self.retry_after = retry_after  # seconds a 429/503 asked us to wait, when it said


class ChatwootNotFound(ChatwootHTTPError):
    """404: the contact, conversation or message does not exist (any more)."""


class ChatwootAuthError(ChatwootHTTPError):
    """401/403: the token is wrong or lacks access; an operator must act."""


class ChatwootRejected(ChatwootHTTPError):
    """422 and other 4xx: Chatwoot refuses this request as it is; retrying will not help."""


class ChatwootUnavailable(ChatwootHTTPError):
    """5xx, 429 or a transport failure: worth retrying with backoff."""

    retryable: ClassVar[bool] = True


class ChatwootThrottled(ChatwootUnavailable):
    """429, or 422 "Too many messages" (more than 200 a minute in one conversation): Chatwoot
    asks us to slow down. Never the item's fault: the chat waits and goes on, in order."""


# Message#validate_conversation_message_limit answers 422 with this in `error`; the text is the
# only thing that tells it from a message Chatwoot refuses for good (README "Message create").
_TOO_MANY_MESSAGES = "Too many messages"


def chatwoot_error_for_status(
    status: int, body: str, *, method: str = "", path: str = "",
    retry_after: float | None = None,
) -> ChatwootHTTPError:
    """The one place an HTTP status becomes an error class."""
    cls: type[ChatwootHTTPError]
    if status == 404:
        cls = ChatwootNotFound
    elif status in (401, 403):
        cls = ChatwootAuthError
    elif status == 429 or (status == 422 and _TOO_MANY_MESSAGES in body):
        cls = ChatwootThrottled
    elif status >= 500:
        cls = ChatwootUnavailable
    else:
        cls = ChatwootRejected
    return cls(status, body, method=method, path=path, retry_after=retry_after)


class IgnoreEvent(PonteError):
    """A converter chose to skip this event; not a failure."""
