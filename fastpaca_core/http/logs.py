"""Structured logs: every record as one JSON line.

Callers put their structured fields in ``extra={"fields": {...}}``; the
formatter adds time, level, logger and message, and a traceback if any.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ..jsonutil import dumps_str

__all__ = ["JsonFormatter", "configure_logging"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return dumps_str(line)


def configure_logging(level: int) -> None:
    """Send every log record to stderr as JSON lines, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").disabled = True
