"""Logging setup with loguru: one stderr sink, JSON in production, stdlib logging routed in.

Modules just `from loguru import logger`. Log messages are constant sentences; the facts go in
bound fields (`instance`, `chat_jid`, `wa_message_id`, `conversation_id`, `cw_message_id`,
`job_id`). WhatsApp message text and secrets are never logged at info or above.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from loguru import logger

_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{name}</cyan> {message} <dim>{extra}</dim>"
)


class _InterceptHandler(logging.Handler):
    """Send stdlib records (rq, uvicorn) through loguru, keeping their level and origin."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).bind(origin=record.name).log(
            level, record.getMessage()
        )


def setup(level: str = "info", fmt: Literal["text", "json"] = "text") -> None:
    """Configure logging once per process (called from cli.py only)."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format=_TEXT_FORMAT if fmt == "text" else "{message}",
        serialize=fmt == "json",
        colorize=fmt == "text" and sys.stderr.isatty(),
        backtrace=False,
        diagnose=False,  # diagnose prints local variables: tokens and message text included
        enqueue=False,
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
