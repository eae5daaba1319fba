"""Log lines with their structured fields: ``key=value`` for people, JSON for machines.

The consumer logs each settled attempt as ``job <outcome>`` with the fields ``queue``,
``topic``, ``job_id``, ``attempt``, ``outcome``, ``duration`` (seconds) and ``error``
passed through ``extra=``. These formatters print whatever a record carries beyond
the standard ``LogRecord`` attributes, so any caller's ``extra`` fields show up too;
fields whose value is None are left out.

text::

    2024-05-01 12:00:00,123 INFO quick.consumer job requeued queue=tenant-42
    topic=email:send job_id=01HX... attempt=1 outcome=requeued duration=0.0123
    error="ValueError: no such address"

(one line), and json: ``{"time": "2024-05-01T12:00:00.123+00:00", "level": "INFO",
"logger": "quick.consumer", "message": "job requeued", "queue": "tenant-42", ...}``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["KeyValueFormatter", "JsonFormatter", "FORMATS", "configure", "fields", "log_stopped"]

#: Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields (its ``extra``), without those set to None."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and value is not None
    }


def _plain(value: Any) -> Any:
    """Floats to at most microseconds; other non-JSON values to their str."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str | int | bool | list | dict):
        return value
    return str(value)


def _text(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """``<time> <level> <logger> <message> key=value ...``; values with spaces are quoted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{key}={_text(value)}" for key, value in fields(record).items())
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {extra}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    structured fields, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, _plain(value)) for key, value in fields(record).items())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


FORMATS: dict[str, type[logging.Formatter]] = {"text": KeyValueFormatter, "json": JsonFormatter}


def configure(style: str = "text", level: int | str = logging.INFO) -> logging.Handler:
    """Send the process's logs to stderr in ``style`` (``text`` or ``json``) from ``level``.

    Replaces the root logger's handlers; returns the new handler.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(FORMATS[style]())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def log_stopped(outcomes: dict[str, int]) -> None:
    """The worker's last line: ``stopped: {outcome: count}`` (logger ``quick.worker``)."""
    logging.getLogger("quick.worker").info("stopped: %s", outcomes)
