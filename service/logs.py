"""Logging for the ``service`` loggers: level from settings, plain or JSON lines on stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from service.settings import Settings

# Attributes a caller may pass with ``extra=`` that the JSON formatter copies into the line.
EXTRA_FIELDS = ("request_id", "method", "path", "status", "duration_ms")
_PLAIN = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the known extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key in EXTRA_FIELDS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Set the ``service`` logger's level and, when nothing else handles it, its handler.

    JSON logs always get their own handler (and stop propagating, so a root handler does not
    print each line twice). Plain logs get one only when the root logger has none: under
    pytest or an application that configured logging, records go where it says.
    """
    logger = logging.getLogger("service")
    logger.setLevel(settings.log_level)
    for handler in [h for h in logger.handlers if getattr(h, "_surrogate", False)]:
        logger.removeHandler(handler)
    logger.propagate = not settings.json_logs
    if not settings.json_logs and logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.json_logs else logging.Formatter(_PLAIN))
    handler._surrogate = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
