"""Log output for ``healer run``: one JSON object per line, or readable text.

``HEALER_LOG_FORMAT=json|text`` chooses; unset means text when stdout is a
terminal and JSON otherwise (containers, files, log shippers). The worker
(``streams.worker``) hands :func:`dict_config` to Faust's logging setup, so
Faust's own records come out in the same format.

Correlation: ``log.info("...", extra={"action_id": ..., "event_id": ...})``
puts those keys on the JSON line. Secrets: values registered with
:func:`redact` (the worker registers its API and webhook tokens) are replaced
by ``***`` wherever they appear in a formatted line, as a second line of
defence behind ``SecretStr``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# ``extra`` keys copied onto JSON lines (others stay in the message).
CORRELATION_KEYS = ("action_id", "event_id", "kind", "policy", "use", "topic", "partition", "offset")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact(*values: str | None) -> None:
    """Never print these values (tokens); short values are ignored (too many false hits)."""
    with _secrets_lock:
        for v in values:
            if v and len(v) >= 6:
                _secrets.add(v)


def scrub(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


def choose_format(env: str | None = None, isatty: bool | None = None) -> LogFormat:
    value = (env if env is not None else os.environ.get("HEALER_LOG_FORMAT", "")).strip().lower()
    if value == "json":
        return "json"
    if value == "text":
        return "text"
    if value:
        raise ValueError(f"HEALER_LOG_FORMAT must be json or text, not {value!r}")
    tty = sys.stdout.isatty() if isatty is None else isatty
    return "text" if tty else "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (+ correlation keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CORRELATION_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return scrub(json.dumps(out, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def dict_config(level: str | int, fmt: LogFormat | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping: one stdout handler in the chosen format."""
    chosen = fmt or choose_format()
    formatter = JsonFormatter if chosen == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"healer": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "healer", "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(level: str | int, fmt: LogFormat | None = None) -> None:
    """Replace the root handlers with one in the chosen format."""
    import logging.config

    logging.config.dictConfig(dict_config(level, fmt))
