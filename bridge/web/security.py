"""Who may call us: Chatwoot's webhook signature or URL token, and the admin bearer token.

Chatwoot v4.13 signs webhooks with `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret,
"<timestamp>.<raw body>")>` and `X-Chatwoot-Timestamp`; older versions sign nothing, so a secret
token in the webhook URL (`?token=...`) is accepted instead. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request

from bridge.config import Settings


class Unverified(Exception):
    """The request is not from Chatwoot (or not fresh); the text says why."""


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_webhook(settings: Settings, request: Request, body: bytes,
                   now: float | None = None, extra_secrets: tuple[str, ...] = ()) -> str:
    """Return how the request was verified (`signature` or `token`); raise Unverified.
    `extra_secrets`: those of inboxes Ponte created itself."""
    signature = request.headers.get("x-chatwoot-signature")
    secrets = [s.get_secret_value() for s in settings.webhook_secret] + list(extra_secrets)
    if signature and secrets:
        timestamp = request.headers.get("x-chatwoot-timestamp", "")
        try:
            age = abs((now or time.time()) - int(timestamp))
        except ValueError:
            raise Unverified("X-Chatwoot-Timestamp is missing or not a number") from None
        if age > settings.webhook_max_skew_seconds:
            raise Unverified("X-Chatwoot-Timestamp is too old or in the future")
        for secret in secrets:
            if _same(expected_signature(secret, timestamp, body), signature):
                return "signature"
        raise Unverified("X-Chatwoot-Signature does not match")
    if settings.webhook_token is not None:
        token = request.query_params.get("token", "")
        if token and _same(token, settings.webhook_token.get_secret_value()):
            return "token"
        raise Unverified("missing or wrong token in the webhook URL")
    raise Unverified("unsigned request, and no WEBHOOK_TOKEN is configured")


def admin_allowed(settings: Settings, request: Request) -> bool:
    """Admin endpoints: `Authorization: Bearer <SERVER_ADMIN_TOKEN>` when a token is set."""
    if settings.server_admin_token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and _same(
        token.strip(), settings.server_admin_token.get_secret_value())


def _same(given: str, expected: str) -> bool:
    """Constant-time, byte-wise: `hmac.compare_digest` refuses non-ASCII `str` with a TypeError,
    which made a token such as `é` an unauthenticated 500."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))
