"""Logging: one line per record, with the release ID when a record is about one."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_RELEASE = re.compile(r"\bREL-(\d+)\b")


class JsonFormatter(logging.Formatter):
    """JSON lines that log shippers parse without configuration."""

    def format(self, record: logging.LogRecord) -> str:
        """One record as one JSON object."""
        message = record.getMessage()
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(), "logger": record.name, "message": message}
        release = getattr(record, "release", None) or _RELEASE.search(message)
        if release:
            line["release"] = release if isinstance(release, str) else f"REL-{release.group(1)}"
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
