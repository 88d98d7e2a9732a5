"""Structured JSON logs for the server: one object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER = "modelfab.serve"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    """Send modelfab.serve and uvicorn logs to stderr as JSON. Called by the server at start,
    never at import."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log(event: str, level: int = logging.INFO, **fields: object) -> None:
    logging.getLogger(LOGGER).log(level, event, extra={"fields": fields})
