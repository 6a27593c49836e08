"""The serve side of WhatsApp -> Chatwoot: what reaches a mailbox, and what is let go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from bridge.ids import InstanceId
from bridge.relay.dispatch import Dispatcher
from bridge.sidecar.protocol import MessageEvent

INSTANCE = InstanceId("1-7")


def image_event(chat: str, path: Path, *, echo: bool = False) -> MessageEvent:
    key: dict[str, Any] = {"remoteJid": chat, "fromMe": echo, "id": f"ID-{path.stem}"}
    return MessageEvent.model_validate({
        "type": "message", "upsert": "notify", "key": key, "content_type": "imageMessage",
        "echo": echo, "media": {"path": str(path), "mimetype": "image/jpeg", "size": 3,
                                "file_name": None},
        "message": {"key": key, "message": {"imageMessage": {"mimetype": "image/jpeg"}}}})


async def test_files_of_frames_nobody_shows_leave_the_spool(redis_url: str,
                                                            tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "1-7"
    spool.mkdir(parents=True)
    files = {name: spool / f"{name}.jpg" for name in ("status", "echo", "customer")}
    for path in files.values():
        path.write_bytes(b"img")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"img")
    ra, rs = aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    dispatcher = Dispatcher(ra, rs, spool=tmp_path / "spool")
    try:
        assert not await dispatcher.wa_message(INSTANCE, image_event("status@broadcast",
                                                                     files["status"]))
        assert not await dispatcher.wa_message(
            INSTANCE, image_event("5511988887777@s.whatsapp.net", files["echo"], echo=True))
        assert not await dispatcher.wa_message(INSTANCE, image_event("status@broadcast",
                                                                     outside))
        assert await dispatcher.wa_message(
            INSTANCE, image_event("5511988887777@s.whatsapp.net", files["customer"]))
    finally:
        await ra.aclose()
        rs.close()
    assert not files["status"].exists() and not files["echo"].exists()
    assert files["customer"].exists()  # queued: the drain job attaches, then deletes it
    assert outside.exists()  # never delete outside the spool, whatever a frame says
