"""``[log] format = json``: one JSON object per log line, for log shippers (Loki, Elasticsearch,
journald's JSON parsers).

    {"time": "2026-12-05T20:22:01.123Z", "level": "WARNING", "logger": "haven.auth",
     "message": "authentication failed for 'x' from 192.0.2.7"}

``time`` is ISO 8601 in UTC with milliseconds; ``level`` the stdlib level name; fields a caller
passed with ``extra=`` are added under their own names (values JSON cannot hold as their
``str()``); a logged exception is ``exception``, its traceback as text.  One line each:
newlines inside values are escaped, so every line parses on its own.
"""

from __future__ import annotations

import json
import logging
import time

#: what every LogRecord has: not "extra" fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
               + f".{int((record.created - seconds) * 1000):03d}Z",
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)
