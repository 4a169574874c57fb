"""Parse and format Prometheus-style durations ("90s", "5m", "1h30m").

Used by the policy loader and settings; pure.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(ValueError):
    """A duration string that is not of the form ``1h30m``."""


def parse_duration(text: str | int | float) -> timedelta:
    """Return the duration ``text`` names; numbers are seconds."""
    if isinstance(text, bool):
        raise DurationError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise DurationError(f"duration must not be negative: {text!r}")
        return timedelta(seconds=float(text))
    s = text.strip()
    if s == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise DurationError(
            f"not a duration: {text!r} (use a number with a unit, e.g. 30s, 5m, 1h30m)"
        )
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """Render ``td`` compactly (``1h30m``), the inverse of :func:`parse_duration`."""
    secs = td.total_seconds()
    if secs == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        n, secs = divmod(secs, size)
        if n:
            out.append(f"{int(n)}{unit}")
    if secs:
        out.append(f"{secs:g}s")
    return "".join(out)
