"""The bot's log output: one JSON object per line for log stores, the plain format for people, and
never a Slack token in either.

Owns the root logging set-up of `release-bot serve`:

- `JsonFormatter`: `time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`, every `extra=`
  field given to the log call, and `exception` (the traceback) when there is one;
- `RedactTokens`: a handler filter that replaces Slack tokens (`xoxb-`, `xoxp-`, `xapp-`, and the other
  `xox?-` kinds) in the message, its arguments, string extras and the traceback text, whichever
  library logged them (slack_sdk logs request details at DEBUG);
- `configure`: `LOG_FORMAT=json|text`; by default JSON unless stderr is a terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

TOKEN = re.compile(r"\b(xox[abeoprs]|xapp)-[A-Za-z0-9-]+")
REDACTED = r"\1-[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(
    {
        *vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)),
        "message",
        "asctime",
        "taskName",
    }
)


def redact(text: str) -> str:
    """`text` with every Slack token replaced by its kind: "xoxb-123-abc" -> "xoxb-[redacted]"."""
    return TOKEN.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call added with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactTokens(logging.Filter):
    """Removes Slack tokens from a record before any formatter sees it (attach to handlers, so records
    propagated from every library's loggers pass through it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep what we can show
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        for key, value in extras(record).items():
            setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the call's extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            line.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        # Tokens are [A-Za-z0-9-]: redacting the serialised line cannot break its JSON.
        return redact(json.dumps(line, default=str, ensure_ascii=False))


def choose_format(value: str | None, stream: TextIO) -> str:
    """ "json" or "text": `value` (LOG_FORMAT) when given, else text on a terminal and JSON otherwise."""
    if value:
        v = value.strip().lower()
        if v not in ("json", "text"):
            raise ValueError(f"LOG_FORMAT must be json or text, not {value!r}")
        return v
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def handler(fmt: str, stream: TextIO) -> logging.Handler:
    h = logging.StreamHandler(stream)
    h.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    h.addFilter(RedactTokens())
    return h


def configure(
    *, log_format: str | None = None, level: str | None = None, stream: TextIO | None = None
) -> str:
    """Set up the root logger for `release-bot serve` from LOG_FORMAT and LOG_LEVEL (or the arguments);
    returns the format chosen."""
    out = stream if stream is not None else sys.stderr
    fmt = choose_format(log_format if log_format is not None else os.environ.get("LOG_FORMAT"), out)
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL") or "INFO").upper(),
        handlers=[handler(fmt, out)],
        force=True,
    )
    return fmt
