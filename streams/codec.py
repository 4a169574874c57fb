"""JSON encoding for internal topics (compact, UTF-8, datetimes as RFC 3339)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from healer.timeutil import format_time


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return format_time(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"cannot encode {type(o).__name__}")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def loads(raw: bytes | str) -> Any:
    return json.loads(raw)
