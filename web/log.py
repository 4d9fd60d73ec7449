"""Logging helpers configured in settings.LOGGING."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from datetime import UTC, datetime


class RepeatFilter(logging.Filter):
    """Let the same fault through once per ``window`` seconds, then say how often it repeated.

    A dead Redis makes every Huey worker and every poll link fail the same way several times a
    second; without this the log fills with identical tracebacks and the first line that matters
    scrolls away. Records count as the same when logger, level, formatted message and exception
    type match (a server error on another path is another record); the next one let through after
    the window carries "(N more like this in the last 60 s)".
    """

    def __init__(self, window: float = 60.0, name: str = ""):
        super().__init__(name)
        self.window = window
        self.clock = time.monotonic
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # key -> [first let through at, suppressed count]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.name, record.levelno, record.getMessage(), exc_type)
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return False
            suppressed = entry[1] if entry else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 1000:  # bounded: forget the oldest half
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this in the last {self.window:.0f} s)"
        return True


# The id of the request being served (set by web.middleware.RequestLogMiddleware); "" outside one.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("micboard_request_id", default="")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id and any ``extra`` fields.

    Selected with MICBOARD_LOG_FORMAT=json. Extra fields passed as ``extra={"micboard": {...}}`` are
    merged into the object (the request log puts method, path, status and duration there).
    """

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or request_id.get()
        if rid:
            body["request_id"] = rid
        extra = getattr(record, "micboard", None)
        if isinstance(extra, dict):
            body.update(extra)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)
