"""Event-time helpers: parse RFC 3339 / epoch seconds, format as RFC 3339 UTC.

Pure; the engine never reads the clock, callers pass ``now``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: str | int | float | datetime) -> datetime:
    """Parse an RFC 3339 string or epoch seconds into an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch time {value!r} is out of range") from exc
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Alertmanager sends nanosecond precision; Python keeps microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[i:]}"
    try:
        dt = datetime.fromisoformat(text)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {value!r} is out of range") from exc
    if dt.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone (use Z or +00:00)")
    return dt.astimezone(UTC)


def epoch_of(value: str | int | float) -> float:
    """Epoch seconds of an RFC 3339 string or epoch number (the ingest hot path:
    a plain number costs no datetime at all)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")) or abs(f) > 253402300799.0:
            raise ValueError(f"epoch time {value!r} is out of range")
        return f
    return parse_time(value).timestamp()


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix; milliseconds only when present (isoformat, not
    strftime: every audit entry is stamped, and this is several times faster)."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    if dt.year < 1000:  # isoformat pads years; strftime's %Y did not
        return _format_slow(dt)
    if dt.microsecond:
        return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    return dt.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _format_slow(dt: datetime) -> str:
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def to_millis(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)
