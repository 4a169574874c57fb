"""JSON log lines (healer.logs): fields, correlation ids, secret scrubbing, format choice."""

from __future__ import annotations

import json
import logging

import pytest

from healer import logs


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("healer.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_fields_and_correlation_ids() -> None:
    line = logs.JsonFormatter().format(record("action %s failed", "a-1", action_id="a-1", event_id="e-9"))
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "healer.test"
    assert out["message"] == "action a-1 failed"
    assert out["action_id"] == "a-1" and out["event_id"] == "e-9"
    assert out["time"].endswith("Z")
    assert "\n" not in line


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc"]


def test_registered_secrets_never_printed() -> None:
    logs.redact("s3cret-token-value", None, "short")
    text = logs.JsonFormatter().format(record("header was Bearer %s", "s3cret-token-value"))
    assert "s3cret-token-value" not in text and "***" in text
    plain = logs.TextFormatter().format(record("token=%s", "s3cret-token-value"))
    assert "s3cret-token-value" not in plain
    assert "short" in logs.JsonFormatter().format(record("short"))  # too short to register


@pytest.mark.parametrize(("env", "tty", "want"), [
    ("json", True, "json"), ("text", False, "text"), ("", True, "text"), ("", False, "json"),
    (" JSON ", True, "json"),
])
def test_format_choice(env: str, tty: bool, want: str) -> None:
    assert logs.choose_format(env, tty) == want


def test_bad_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="HEALER_LOG_FORMAT"):
        logs.choose_format("yaml", False)
