"""Offline replay for ``healer policy test``: events JSONL -> decisions (plan).

Runs ``engine.route`` and ``engine.decide`` exactly as the worker does, with
the per-target states in a dict instead of Faust tables.

Input lines: ``{"time": RFC3339, "alert": {...}}``, ``{"time", "webhook": {...}}``
(an Alertmanager payload) or ``{"time", "metric": {...}}`` (a sample or an
array of samples). Alerts take the line's ``time`` as event time; samples take
their own ``timestamp`` when present, else the line's ``time``.

Besides the decisions, the replayer keeps, per input line, the signals that got
none and why (:func:`no_decision_reason`); ``healer policy test --show-all``
prints them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from healer.engine import EngineSettings, Outcome, Route, decide, route
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
from healer.timeutil import format_time, parse_time


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


@dataclass(frozen=True)
class NoDecision:
    """An input that led to no decision: the line, its event time, what it was and why."""

    line: int
    time: datetime
    what: str  # "alert NAME", "metric NAME" or "input" (a line that did not parse)
    reason: str

    def plan_line(self) -> dict[str, Any]:
        """The JSON line ``healer policy test --show-all`` prints next to the plan."""
        return {"time": format_time(self.time), "line": self.line, "event": self.what,
                "decision": "none", "reason": self.reason}


def describe(signal: Signal) -> str:
    if signal.kind == "alert":
        return f"alert {signal.labels.get('alertname', '?')}"
    return f"metric {signal.name}"


def no_decision_reason(signal: Signal, routes: list[Route], outcomes: list[Outcome]) -> str:
    """Why ``signal`` got no decision, given its routes and the engine's outcome for each."""
    if not routes:
        return "no policy matched"
    if any(o.duplicate for o in outcomes):
        return "duplicate"
    if any(o.late for o in outcomes):
        return "late sample"  # older than its window
    if signal.kind == "metric":
        return "metric condition not met"  # window, threshold or for
    if signal.status == "resolved":
        return "resolved"  # ends the incident, if one was open
    return "trigger status not matched"


@dataclass
class Replayer:
    """Holds per-target state across signals, like the worker's tables."""

    policies: PolicySet
    settings: EngineSettings = field(default_factory=EngineSettings)
    states: dict[str, TargetState] = field(default_factory=dict)
    gstate: GlobalState = field(default_factory=GlobalState)
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # every decision and every input that got none, in input order, with its line number
    entries: list[tuple[int, Decision | NoDecision]] = field(default_factory=list)

    def _feed(self, signal: Signal) -> tuple[list[Route], list[Outcome]]:
        routes = route(signal, self.policies)
        outcomes = []
        for rt in routes:
            st = self.states.get(rt.key)
            if st is None:
                st = self.states[rt.key] = TargetState()
            out = decide(signal, rt, self.policies, st, self.gstate, self.settings)
            if out.duplicate:
                self.duplicates += 1
            outcomes.append(out)
        return routes, outcomes

    def feed(self, signal: Signal) -> list[Decision]:
        _, outcomes = self._feed(signal)
        return [d for o in outcomes for d in o.decisions]

    def run(self, lines: Iterable[ReplayLine]) -> list[Decision]:
        out: list[Decision] = []
        for n, line in enumerate(lines, 1):
            sigs = signals_of(line, f"replay:{n}")
            if isinstance(sigs, Rejected):
                self.rejected.append((n, sigs.reason))
                self.entries.append((n, NoDecision(n, line.time, "input", f"rejected input: {sigs.reason}")))
                continue
            for s in sigs:
                routes, outcomes = self._feed(s)
                decisions = [d for o in outcomes for d in o.decisions]
                out.extend(decisions)
                self.entries.extend((n, d) for d in decisions)
                if not decisions:
                    reason = no_decision_reason(s, routes, outcomes)
                    self.entries.append((n, NoDecision(n, s.time, describe(s), reason)))
        return out
