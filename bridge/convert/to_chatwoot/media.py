"""Media kinds: image, video (GIFs, video notes), audio (voice notes), document, sticker.

The sidecar downloads the file to the spool and names it in `event.media`; here it becomes one
attachment, the caption the content. No file (too large, download failed, no media info) gives a
visible text instead, so the agent knows something came and what.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from bridge.convert import baileys
from bridge.convert.draft import ChatwootDraft, ConvertContext, MediaFile
from bridge.convert.to_chatwoot.summary import kind_label
from bridge.sidecar.protocol import MessageEvent
from bridge.texts import Texts

# Extensions for names we make up; WhatsApp's own file names are kept as they are.
_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
    "image/heic": ".heic", "video/mp4": ".mp4", "video/3gpp": ".3gp", "video/quicktime": ".mov",
    "video/webm": ".webm", "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "audio/mp4": ".m4a",
    "audio/aac": ".aac", "audio/amr": ".amr", "audio/wav": ".wav", "application/pdf": ".pdf",
    "text/plain": ".txt", "text/csv": ".csv", "application/zip": ".zip",
    "application/msword": ".doc", "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")
_MAX_NAME = 200


def convert_media(event: MessageEvent, ctx: ConvertContext) -> ChatwootDraft:
    kind = event.content_type
    body = baileys.body_of(event.message, kind)
    if not body:
        raise baileys.Malformed(f"{kind} is not an object")
    texts = ctx.texts
    label = kind_label(kind, body, texts) or texts.kind_document
    caption = baileys.text(body, "caption")
    media = event.media
    mimetype = (media.mimetype if media else None) or baileys.text(body, "mimetype") \
        or "application/octet-stream"
    file_name = _file_name(event, kind, body, mimetype)
    size = media.size if media and media.size is not None else baileys.integer(body, "fileLength")

    if media is None:
        notice = texts.media_missing.format(kind=label)
    elif media.error == "too_large":
        notice = texts.media_too_large.format(kind=label, file_name=file_name,
                                              size=human_size(size, texts))
    elif media.error is not None or media.path is None:  # download_failed
        notice = texts.media_download_failed.format(kind=label, file_name=file_name,
                                                    size=human_size(size, texts))
    else:
        attachment = MediaFile(path=Path(media.path), filename=file_name, content_type=mimetype,
                               size=max(size or 0, 0))
        # A voice note has no caption; its mark tells the agent it was recorded, not a file.
        voice = kind == "audioMessage" and baileys.flag(body, "ptt")
        return ChatwootDraft(content=caption or (texts.kind_voice_note if voice else ""),
                             attachments=(attachment,))
    return ChatwootDraft(content=f"{notice}\n{caption}" if caption else notice)


def _file_name(event: MessageEvent, kind: str | None, body: dict[str, Any],
               mimetype: str) -> str:
    """WhatsApp's file name when it gives one, else `<kind>-<message id><extension>`."""
    given = (event.media.file_name if event.media else None) or baileys.text(body, "fileName")
    if given and (safe := _safe(given)):
        return safe
    slug = {"imageMessage": "image", "videoMessage": "video", "ptvMessage": "video-note",
            "audioMessage": "audio", "documentMessage": "document",
            "stickerMessage": "sticker"}.get(kind or "", "file")
    if slug == "video" and baileys.flag(body, "gifPlayback"):
        slug = "gif"
    elif slug == "audio" and baileys.flag(body, "ptt"):
        slug = "voice"
    message_id = _safe(event.key.id) or "message"
    return f"{slug}-{message_id}{_extension(mimetype, event)}"


def _extension(mimetype: str, event: MessageEvent) -> str:
    essence = mimetype.split(";", 1)[0].strip().lower()
    if essence in _EXTENSIONS:
        return _EXTENSIONS[essence]
    if event.media and event.media.path:  # the sidecar may know better
        suffix = PurePosixPath(event.media.path).suffix
        if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
            return suffix.lower()
    subtype = essence.rpartition("/")[2]
    return f".{subtype}" if re.fullmatch(r"[a-z0-9]{1,8}", subtype) else ".bin"


def _safe(name: str) -> str:
    """A file name without path separators or control characters, of a sane length."""
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: _MAX_NAME - len(keep) - 1] + ("." + keep if keep else "")
    return name


def human_size(size: int | None, texts: Texts) -> str:
    """`48213` -> `47 KB`, `2621440` -> `2,5 MB` (binary units, the language's decimal mark)."""
    if size is None or size < 0:
        return texts.size_unknown
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    shown = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    return f"{shown.replace('.', texts.decimal_separator)} {unit}"
