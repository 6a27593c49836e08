"""Voice notes: WhatsApp plays a voice note (PTT) only as Ogg/Opus.

Audio an agent records in Chatwoot's browser is often WebM/Opus or MP3; it is converted with
ffmpeg, the system's when there is one on PATH, else the binary the `imageio-ffmpeg` wheel
ships (so a fresh install needs nothing more). Audio already in Ogg/Opus goes as it is.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from loguru import logger

OPUS_MIMETYPE = "audio/ogg; codecs=opus"
_TIMEOUT_SECONDS = 120


def ffmpeg_binary() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


def is_opus(content_type: str | None, path: Path) -> bool:
    """Ogg/Opus already? By the declared type when it says so, else by the file's header."""
    declared = (content_type or "").lower()
    if "ogg" in declared and "opus" in declared:
        return True
    with path.open("rb") as handle:
        head = handle.read(64)
    return head.startswith(b"OggS") and b"OpusHead" in head


async def to_voice_note(source: Path) -> Path | None:
    """An Ogg/Opus copy of `source` next to it, or None when it cannot be made."""
    binary = ffmpeg_binary()
    if binary is None:
        logger.warning("No ffmpeg: an agent's audio goes as a file, not as a voice note")
        return None
    target = source.with_name(source.name + ".opus.ogg")
    process = await asyncio.create_subprocess_exec(
        binary, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-vn",
        "-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-ar", "48000",
        "-application", "voip", str(target),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), _TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        target.unlink(missing_ok=True)
        return None
    if process.returncode != 0:
        logger.bind(error=stderr.decode(errors="replace")[-300:]).warning(
            "ffmpeg could not make a voice note")
        target.unlink(missing_ok=True)
        return None
    return target
