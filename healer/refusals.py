"""How many refused requests get their own audit record: the refusal rate limit.

A flood of refused requests (bad tokens, refused connections, malformed
bodies) must cost one bounded audit entry, not one record each. Per window
(``RefusalRule.window``, starting at the first refusal after the previous
window ended) the first ``burst`` refusals are audited one by one; later
ones are only counted, by reason and by remote address (at most
``max_keys`` distinct keys each, the rest under ``(other)``), and written as
one aggregated ``event.rejected`` entry when the window ends.

Pure: the caller passes the time and keeps the returned state.
``streams.http`` calls :func:`admit` for every refusal and :func:`close` on
a timer (and once at shutdown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from healer.timeutil import format_time

OTHER = "(other)"
UNKNOWN_REMOTE = "unknown"


@dataclass(frozen=True)
class RefusalRule:
    window: timedelta = timedelta(seconds=10)
    burst: int = 10  # refusals audited one by one per window
    max_keys: int = 20  # distinct reasons / remote addresses counted per summary


@dataclass(frozen=True)
class Summary:
    """The refusals of one window that were counted instead of audited one by one."""

    start: datetime
    end: datetime
    count: int
    by_reason: Mapping[str, int]
    by_remote: Mapping[str, int]

    def reason(self) -> str:
        return f"{self.count} more refused requests in {(self.end - self.start).total_seconds():g}s (aggregated)"

    def detail(self) -> dict[str, Any]:
        return {"refusals": {
            "from": format_time(self.start), "to": format_time(self.end), "count": self.count,
            "by_reason": dict(self.by_reason), "by_remote": dict(self.by_remote),
        }}


@dataclass(frozen=True)
class RefusalState:
    start: datetime | None = None  # None: no window open
    audited: int = 0
    suppressed: int = 0
    by_reason: Mapping[str, int] = field(default_factory=dict)
    by_remote: Mapping[str, int] = field(default_factory=dict)


def _bump(counts: Mapping[str, int], key: str, max_keys: int) -> dict[str, int]:
    out = dict(counts)
    if key not in out and len(out) >= max_keys:
        key = OTHER
    out[key] = out.get(key, 0) + 1
    return out


def close(state: RefusalState, rule: RefusalRule, now: datetime) -> tuple[RefusalState, Summary | None]:
    """End the window if it is over at ``now``; the summary to audit if anything was counted."""
    if state.start is None:
        return state, None
    end = state.start + rule.window
    if state.start <= now < end:
        return state, None  # still open (a clock that went back also ends it)
    summary = None
    if state.suppressed:
        summary = Summary(state.start, end, state.suppressed, state.by_reason, state.by_remote)
    return RefusalState(), summary


def admit(
    state: RefusalState, rule: RefusalRule, now: datetime, reason: str, remote: str | None,
) -> tuple[RefusalState, bool, Summary | None]:
    """Count one refusal: (new state, audit this one now?, summary of the previous window to audit)."""
    state, summary = close(state, rule, now)
    if state.start is None:
        state = RefusalState(start=now)
    if state.audited < rule.burst:
        return replace(state, audited=state.audited + 1), True, summary
    counted = replace(
        state, suppressed=state.suppressed + 1,
        by_reason=_bump(state.by_reason, reason, rule.max_keys),
        by_remote=_bump(state.by_remote, remote or UNKNOWN_REMOTE, rule.max_keys),
    )
    return counted, False, summary


def flush_all(state: RefusalState, rule: RefusalRule) -> Summary | None:
    """At shutdown: the summary of the open window, whatever the time."""
    if state.start is None:
        return None
    return close(state, rule, state.start + rule.window)[1]
