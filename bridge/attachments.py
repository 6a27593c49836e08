"""Agents' attachments, fetched from Chatwoot into the spool for the sidecar to send.

A webhook names each attachment by `data_url`. Ponte downloads only URLs on the configured
Chatwoot host (the redirects Chatwoot answers with, to its own storage, are followed), streams
them to a file under a size cap and a time limit, and never lets a name from the webhook choose
the path: a crafted webhook cannot make Ponte fetch an internal address or write elsewhere.
"""

from __future__ import annotations

import mimetypes
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from bridge.errors import PonteError

_MAX_REDIRECTS = 5
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")


class AttachmentError(PonteError):
    """The attachment cannot be sent; `reason` is a stable code for the agents' note."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # foreign_host | too_large | download_failed | timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    path: Path
    content_type: str
    filename: str
    size: int


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.hostname, a.port or _default_port(a.scheme)) == (
        b.scheme, b.hostname, b.port or _default_port(b.scheme))


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


def safe_filename(name: str | None, content_type: str, fallback: str) -> str:
    """A display name for WhatsApp: no directories, no control characters, an extension."""
    base = _UNSAFE_NAME.sub("_", (name or "").rsplit("/", 1)[-1]).strip(" ._")[:120]
    if not base:
        base = fallback
    if "." not in base:
        base += mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
    return base


async def fetch(client: httpx.AsyncClient, url: str, *, chatwoot_url: str, spool: Path,
                max_bytes: int, timeout_s: float, filename: str | None = None,
                content_type: str | None = None) -> Fetched:
    """Download `url` (on Chatwoot's host) into `spool`; raises AttachmentError."""
    if not same_origin(url, chatwoot_url):
        raise AttachmentError("foreign_host", urlsplit(url).hostname or "?")
    deadline = time.monotonic() + timeout_s
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = spool / f"out-{uuid.uuid4().hex}"
    staged = final.with_suffix(".part")
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            # identity: httpx inflates a compressed body chunk by chunk, and one small gzip
            # chunk can inflate to hundreds of MB in memory before the size cap sees it.
            async with client.stream("GET", url, follow_redirects=False,
                                     headers={"accept-encoding": "identity"},
                                     timeout=max(0.1, deadline - time.monotonic())) as response:
                if response.is_redirect:
                    # Chatwoot's data_url answers with a redirect to its storage (disk, S3...).
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise AttachmentError("download_failed", f"HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):  # asked for none: refuse what we cannot cap
                    raise AttachmentError("download_failed", f"compressed ({encoding[:20]})")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise AttachmentError("too_large", declared)
                size = 0
                with staged.open("wb") as out:
                    os.chmod(staged, 0o600)
                    async for chunk in response.aiter_bytes(64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            raise AttachmentError("too_large", f">{max_bytes}")
                        if time.monotonic() > deadline:
                            raise AttachmentError("timeout")
                        out.write(chunk)
                kind = content_type or response.headers.get("content-type",
                                                            "application/octet-stream")
                staged.rename(final)
                return Fetched(path=final, content_type=kind.split(";")[0].strip(),
                               filename=safe_filename(filename, kind, final.name), size=size)
        raise AttachmentError("download_failed", "too many redirects")
    except httpx.TimeoutException as err:
        raise AttachmentError("timeout") from err
    except httpx.HTTPError as err:
        raise AttachmentError("download_failed", type(err).__name__) from err
    finally:
        staged.unlink(missing_ok=True)
