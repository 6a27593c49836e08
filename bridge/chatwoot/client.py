"""Chatwoot Application API client: one method per endpoint Ponte calls (sync, for RQ jobs).

Shapes follow ../shared/chatwoot/README.md (Chatwoot v4.13 as its code behaves). Every HTTP
failure becomes a ChatwootError subclass through `errors.chatwoot_error_for_status`; transport
failures (refused, reset, timeout) are ChatwootUnavailable, which jobs retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from bridge import __version__
from bridge.errors import ChatwootNotFound, ChatwootUnavailable, chatwoot_error_for_status

_READ_RETRY_PAUSES = (0.1, 0.3)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) in seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to attach to a message: streamed from disk, never held whole in memory."""

    path: Path | None
    filename: str
    content_type: str
    data: bytes | None = None  # small generated files (a QR PNG) may be passed in memory


class ChatwootClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 15.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"api_access_token": token, "user-agent": f"ponte/{__version__}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ChatwootUnavailable(0, type(err).__name__, method=method, path=path) from err
        if response.status_code >= 400:
            raise chatwoot_error_for_status(
                response.status_code, response.text[:500], method=method, path=path,
                retry_after=retry_after_seconds(response.headers.get("retry-after")))
        return response

    def _read(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that changes nothing: retried at once a couple of times, so one flaky
        answer does not cost the whole job a backoff. Writes are never retried here."""
        for pause in _READ_RETRY_PAUSES:
            try:
                return self._request(method, path, **kwargs)
            except ChatwootUnavailable as err:
                if err.status == 429:
                    raise  # throttled: asking again at once is what it asked us not to do
                time.sleep(pause)
        return self._request(method, path, **kwargs)

    def _json(self, method: str, path: str, *, read: bool = False, **kwargs: Any) -> Any:
        response = (self._read if read else self._request)(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as err:
            raise ChatwootUnavailable(response.status_code, "answer is not JSON",
                                      method=method, path=path) from err

    @staticmethod
    def _account(account_id: int) -> str:
        return f"/api/v1/accounts/{account_id}"

    # --- inboxes --------------------------------------------------------------------------
    def get_inbox(self, account_id: int, inbox_id: int) -> dict[str, Any]:
        path = f"{self._account(account_id)}/inboxes/{inbox_id}"
        result: dict[str, Any] = self._json("GET", path, read=True)
        return result

    def create_api_inbox(self, account_id: int, name: str, webhook_url: str) -> dict[str, Any]:
        """An API-channel inbox whose webhook is `webhook_url`; an admin token gets its
        `secret` back (Chatwoot >= 4.13 signs that inbox's webhooks with it)."""
        result: dict[str, Any] = self._json(
            "POST", f"{self._account(account_id)}/inboxes",
            json={"name": name, "channel": {"type": "api", "webhook_url": webhook_url}})
        return result

    def invite_agent(self, account_id: int, *, email: str, name: str,
                     role: str = "agent") -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"{self._account(account_id)}/agents",
            json={"email": email, "name": name, "role": role})
        return result

    # --- contacts -------------------------------------------------------------------------
    def contact_by_source_id(self, account_id: int, inbox_id: int,
                             source_id: str) -> dict[str, Any] | None:
        """The contact owning `source_id` in this inbox (exact), or None."""
        try:
            result: dict[str, Any] | None = self._json(
                "POST", f"{self._account(account_id)}/contact_inboxes/filter", read=True,
                json={"inbox_id": inbox_id, "source_id": source_id})
        except ChatwootNotFound:  # Chatwoot's "no such contact_inbox": 404, empty body
            return None
        return result

    def search_contacts(
        self, account_id: int, query: str, *, max_pages: int = 5
    ) -> Iterator[dict[str, Any]]:
        """Substring search (15 a page); callers must filter for an exact match themselves."""
        for page in range(1, max_pages + 1):
            body = self._json("GET", f"{self._account(account_id)}/contacts/search", read=True,
                              params={"q": query, "page": page})
            yield from body.get("payload", [])
            if not body.get("meta", {}).get("has_more"):
                return

    def filter_contacts(self, account_id: int, attribute: str, value: str) -> list[dict[str, Any]]:
        """Contacts whose `attribute` equals `value` (phone numbers normalised by Chatwoot)."""
        body = self._json("POST", f"{self._account(account_id)}/contacts/filter", read=True, json={
            "payload": [{"attribute_key": attribute, "filter_operator": "equal_to",
                         "values": [value], "query_operator": None}]})
        result: list[dict[str, Any]] = body.get("payload", [])
        return result

    def create_contact(self, account_id: int, *, name: str, identifier: str,
                       phone_number: str | None, inbox_id: int, source_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "identifier": identifier, "inbox_id": inbox_id,
                                "source_id": source_id}
        if phone_number:
            body["phone_number"] = phone_number
        result = self._json("POST", f"{self._account(account_id)}/contacts", json=body)
        contact: dict[str, Any] = result["payload"]["contact"]
        return contact

    def update_contact(self, account_id: int, contact_id: int, **fields: Any) -> dict[str, Any]:
        """PUT /contacts/{id}: name, identifier, phone_number...; attribute maps are merged."""
        body = self._json("PUT", f"{self._account(account_id)}/contacts/{contact_id}",
                          json=fields)
        contact: dict[str, Any] = body["payload"]
        return contact

    def merge_contacts(self, account_id: int, *, base_contact_id: int,
                       mergee_contact_id: int) -> dict[str, Any]:
        """The base keeps everything and takes the mergee's conversations; the mergee is gone."""
        result: dict[str, Any] = self._json(
            "POST", f"{self._account(account_id)}/actions/contact_merge",
            json={"base_contact_id": base_contact_id, "mergee_contact_id": mergee_contact_id})
        return result

    def create_contact_inbox(self, account_id: int, contact_id: int, inbox_id: int,
                             source_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"{self._account(account_id)}/contacts/{contact_id}/contact_inboxes",
            json={"inbox_id": inbox_id, "source_id": source_id})
        return result

    def contact_conversations(self, account_id: int, contact_id: int) -> list[dict[str, Any]]:
        body = self._json("GET", f"{self._account(account_id)}/contacts/{contact_id}/conversations",
                          read=True)
        result: list[dict[str, Any]] = body.get("payload", [])
        return result

    # --- conversations and messages -------------------------------------------------------
    def create_conversation(self, account_id: int, *, inbox_id: int, contact_id: int,
                            source_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"{self._account(account_id)}/conversations",
            json={"inbox_id": inbox_id, "contact_id": contact_id, "source_id": source_id})
        return result

    def update_message_status(self, account_id: int, conversation_id: int, message_id: int,
                              status: str, external_error: str | None = None) -> None:
        """PATCH the status of a message in an API inbox (sent, delivered, read, failed)."""
        body: dict[str, Any] = {"status": status}
        if external_error:
            body["external_error"] = external_error
        self._json("PATCH", f"{self._account(account_id)}/conversations/{conversation_id}"
                            f"/messages/{message_id}", json=body)

    def find_message(self, account_id: int, conversation_id: int, *, source_id: str,
                     private: bool, pages: int = 3) -> dict[str, Any] | None:
        """A recent message of the conversation with this `source_id` (Chatwoot has no lookup
        by source_id; the messages index gives 20 at a time, newest last)."""
        path = f"{self._account(account_id)}/conversations/{conversation_id}/messages"
        params: dict[str, Any] = {}
        for _ in range(pages):
            batch: list[dict[str, Any]] = self._json("GET", path, read=True,
                                                     params=params).get("payload", [])
            for message in batch:
                if message.get("source_id") == source_id and bool(
                        message.get("private")) == private:
                    return message
            if len(batch) < 20:
                return None
            params = {"before": min(int(m["id"]) for m in batch)}
        return None

    def create_message(self, account_id: int, conversation_id: int, *, content: str | None,
                       message_type: str, private: bool = False, source_id: str | None = None,
                       content_attributes: dict[str, Any] | None = None,
                       uploads: Sequence[Upload] = ()) -> dict[str, Any]:
        path = f"{self._account(account_id)}/conversations/{conversation_id}/messages"
        fields: dict[str, Any] = {"message_type": message_type, "private": private}
        if content is not None:
            fields["content"] = content
        if source_id is not None:
            fields["source_id"] = source_id
        if content_attributes:
            fields["content_attributes"] = content_attributes
        if not uploads:
            result: dict[str, Any] = self._json("POST", path, json=fields)
            return result
        # Multipart: Chatwoot reads content_attributes as a JSON string and booleans as text.
        form = {k: (json.dumps(v) if isinstance(v, dict) else str(v).lower()
                    if isinstance(v, bool) else str(v)) for k, v in fields.items()}
        opened = []
        try:
            files = []
            for upload in uploads:
                if upload.data is not None:
                    body: Any = upload.data
                else:
                    assert upload.path is not None
                    body = upload.path.open("rb")
                    opened.append(body)
                files.append(("attachments[]", (upload.filename, body, upload.content_type)))
            result = self._json("POST", path, data=form, files=files)
            return result
        finally:
            for handle in opened:
                handle.close()
