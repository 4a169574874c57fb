"""Offline replay for ``healer policy test``: events JSONL -> decisions (plan).

Runs ``engine.route`` and ``engine.decide`` exactly as the worker does, with
the per-target states in a dict instead of Faust tables.

Input lines: ``{"time": RFC3339, "alert": {...}}``, ``{"time", "webhook": {...}}``
(an Alertmanager payload) or ``{"time", "metric": {...}}`` (a sample or an
array of samples). Alerts take the line's ``time`` as event time; samples take
their own ``timestamp`` when present, else the line's ``time``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from healer.engine import EngineSettings, decide, route
from healer.index import PolicySet
from healer.ingest import (
    Rejected,
    parse_alerts,
    parse_samples,
    signals_from_alerts,
    signals_from_samples,
)
from healer.models import Decision, Signal
from healer.state import GlobalState, TargetState
from healer.timeutil import parse_time


class ReplayError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class ReplayLine:
    time: datetime
    topic: str  # "alerts" | "metrics"
    value: Any


def parse_line(text: str, lineno: int) -> ReplayLine:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ReplayError(lineno, f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or "time" not in obj:
        raise ReplayError(lineno, 'each line is {"time": ..., "alert"|"webhook"|"metric": ...}')
    keys = [k for k in ("alert", "webhook", "metric") if k in obj]
    extra = set(obj) - {"time", "alert", "webhook", "metric"}
    if len(keys) != 1 or extra:
        raise ReplayError(
            lineno, 'each line has "time" and exactly one of "alert", "webhook", "metric"'
        )
    try:
        t = parse_time(obj["time"])
    except (ValueError, TypeError) as exc:
        raise ReplayError(lineno, f"bad time: {exc}") from exc
    k = keys[0]
    return ReplayLine(t, "metrics" if k == "metric" else "alerts", obj[k])


def read_lines(lines: Iterable[str]) -> Iterator[ReplayLine]:
    for n, text in enumerate(lines, 1):
        if text.strip() and not text.lstrip().startswith("#"):
            yield parse_line(text, n)


def signals_of(line: ReplayLine, event_base: str) -> list[Signal] | Rejected:
    if line.topic == "alerts":
        alerts = parse_alerts(line.value)
        return (
            alerts
            if isinstance(alerts, Rejected)
            else signals_from_alerts(alerts, line.time, event_base)
        )
    samples = parse_samples(line.value)
    return (
        samples
        if isinstance(samples, Rejected)
        else signals_from_samples(samples, line.time, event_base)
    )


@dataclass
class Replayer:
    """Holds per-target state across signals, like the worker's tables."""

    policies: PolicySet
    settings: EngineSettings = field(default_factory=EngineSettings)
    states: dict[str, TargetState] = field(default_factory=dict)
    gstate: GlobalState = field(default_factory=GlobalState)
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def feed(self, signal: Signal) -> list[Decision]:
        decisions: list[Decision] = []
        for rt in route(signal, self.policies):
            st = self.states.get(rt.key)
            if st is None:
                st = self.states[rt.key] = TargetState()
            out = decide(signal, rt, self.policies, st, self.gstate, self.settings)
            if out.duplicate:
                self.duplicates += 1
            decisions.extend(out.decisions)
        return decisions

    def run(self, lines: Iterable[ReplayLine]) -> list[Decision]:
        out: list[Decision] = []
        for n, line in enumerate(lines, 1):
            sigs = signals_of(line, f"replay:{n}")
            if isinstance(sigs, Rejected):
                self.rejected.append((n, sigs.reason))
                continue
            for s in sigs:
                out.extend(self.feed(s))
        return out
