"""What every chaos scenario shares: the run context, the result row, and the audit
analysis that turns an audit topic into the invariants (losses, duplicate executions,
chain status). Used by the scenario modules and ``bench/chaos/run.py``.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import harness as h
from healer.chain import verify


@dataclass
class Ctx:
    """Where a scenario runs: the shared broker, a scratch dir, and the mode."""

    bootstrap: str
    tmp: Path
    short: bool

    def dir(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        return d


class Skip(Exception):
    """A scenario cannot run here (a component is missing); the message says why."""


@dataclass
class Result:
    scenario: str
    events_in: int = 0
    events_out: int = 0
    actions_expected: int | None = None
    actions_executed: int = 0
    duplicates: int = 0
    losses: int = 0
    chain_ok: bool = False
    chain_records: int = 0
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        if self.skipped is not None:
            return True
        return (self.error is None and self.losses == 0 and self.duplicates == 0 and self.chain_ok
                and all(self.checks.values()))

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "SKIP"
        return "PASS" if self.ok else "FAIL"

    def failed_checks(self) -> list[str]:
        return [k for k, v in self.checks.items() if not v]


@dataclass
class AuditView:
    records: list[dict[str, Any]]
    received: Counter[str]  # alerts by event.received, metric records by the input.batch ranges covering them
    rejected: Counter[str]
    running: Counter[str]
    terminal: dict[str, str]
    chain_ok: bool
    chain_problems: list[str]
    metric_replayed: int = 0  # metric records covered by two input.batch ranges (a replay after a crash)


TERMINAL = ("action.succeeded", "action.verified", "action.failed", "action.rolled_back",
            "action.rollback_failed")


def audit_view(bootstrap: str, app: str) -> AuditView:
    recs = [r.value for r in h.read_topic(bootstrap, f"{app}.audit")]
    received: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    running: Counter[str] = Counter()
    terminal: dict[str, str] = {}
    order = {k: i for i, k in enumerate(TERMINAL)}
    covered: Counter[str] = Counter()
    for r in recs:
        kind = r.get("kind")
        if kind == "event.received":
            received[r["event"]["id"]] += 1
        elif kind == "input.batch":
            d = r["detail"]
            for off in range(d["first_offset"], d["last_offset"] + 1):
                covered[f"{d['topic']}:{d['partition']}:{off}"] += 1
        elif kind == "event.rejected":
            rejected[r["event"]["id"]] += 1
        elif kind == "action.running":
            running[r["action_id"]] += 1
        elif kind in TERMINAL:
            prev = terminal.get(r["action_id"])
            # the most final state wins: succeeded < verified < failed < rolled_back ...
            if prev is None or order[kind] >= order[prev]:
                terminal[r["action_id"]] = kind
    report = verify(recs)
    # a metric record is accounted for once whatever the number of ranges covering it:
    # a range replayed after a crash is covered twice (counted in metric_replayed)
    received.update(set(covered) - set(rejected))
    return AuditView(recs, received, rejected, running, terminal, report.ok,
                     [str(p) for p in report.problems[:5]], sum(1 for c in covered.values() if c > 1))


def fill(res: Result, view: AuditView, valid_ids: Iterable[str],
         expected: set[str] | None = None) -> None:
    """The standard invariants: every valid input received once, every action run at most once
    (and, with ``expected``, exactly the offline plan's actions), the chain verifies."""
    valid = set(valid_ids)
    res.events_in = len(valid)
    res.events_out = len(valid & set(view.received))
    res.losses = len(valid - set(view.received))
    dup_events = sum(c - 1 for c in view.received.values() if c > 1)
    dup_runs = sum(c - 1 for c in view.running.values() if c > 1)
    res.duplicates = dup_events + dup_runs
    res.actions_executed = len(view.running)
    res.chain_ok = view.chain_ok
    res.chain_records = len(view.records)
    res.detail["duplicate_event_records"] = dup_events
    res.detail["metric_records_audited_twice"] = view.metric_replayed
    res.detail["duplicate_executions"] = dup_runs
    if view.chain_problems:
        res.detail["chain_problems"] = view.chain_problems
    unfinished = sorted(set(view.running) - set(view.terminal))
    res.checks["every executed action reached a final state"] = not unfinished
    if unfinished:
        res.detail["unfinished_actions"] = unfinished[:10]
    res.detail["final_states"] = dict(Counter(view.terminal.values()))
    if expected is not None:
        executed = set(view.running)
        res.actions_expected = len(expected)
        res.checks["executed actions == offline plan"] = executed == expected
        if executed != expected:
            res.detail["missing_actions"] = sorted(expected - executed)[:10]
            res.detail["unexpected_actions"] = sorted(executed - expected)[:10]


# --------------------------------------------------------------------------- inputs

MIXED_POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: chaos-alert}
spec:
  trigger:
    alert:
      matchers: ['alertname="InferenceDegraded"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}, times: 2}
    - {use: healer.noop, with: {message: page}}
  guards:
    cooldown: 20s
    budget: {max: 6, per: 10m}
---
apiVersion: healer/v1
kind: Policy
metadata: {name: chaos-metric}
spec:
  trigger:
    metric:
      name: llm_request_latency_p99_seconds
      group_by: [namespace, deployment]
      aggregate: avg
      window: 1m
      op: ">"
      threshold: 5
      for: 10s
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}}
  guards: {cooldown: 45s}
"""


def mixed_lines(n: int, seed: int = 11, targets: int = 50) -> list[str]:
    """Replay-format lines (``{"time", "alert"|"metric"}``): alerts on half the targets,
    latency samples on the other half, 0.5 s apart in event time."""
    rng = random.Random(seed)
    half = targets // 2
    lines = []
    for i in range(n):
        t = h.T0 + timedelta(seconds=i * 0.5)
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if i % 2 == 0:
            dep = f"svc-{(i // 2) % half}"
            status = "resolved" if rng.random() < 0.08 else "firing"
            starts = (t - timedelta(seconds=rng.randrange(0, 600))).strftime("%Y-%m-%dT%H:%M:%SZ")
            alert = {"status": status, "labels": {"alertname": "InferenceDegraded",
                                                  "namespace": "llm-prod", "deployment": dep},
                     "startsAt": starts}
            lines.append(json.dumps({"time": ts, "alert": alert}))
        else:
            dep = f"svc-{half + (i // 2) % half}"
            value = rng.uniform(2.0, 8.0) if (i // 100) % 3 else rng.uniform(5.5, 9.0)
            sample = {"name": "llm_request_latency_p99_seconds", "value": round(value, 3),
                      "labels": {"namespace": "llm-prod", "deployment": dep}, "timestamp": ts}
            lines.append(json.dumps({"time": ts, "metric": sample}))
    return lines


def plan(policies: Path, lines: list[str]) -> set[str]:
    """Action ids ``healer policy test`` computes offline for these lines (decision execute)."""
    from healer.loader import load_policy_set
    from healer.replay import Replayer, read_lines

    out = Replayer(load_policy_set([policies])).run(read_lines(lines))
    return {d.action_id for d in out if d.decision == "execute" and d.action_id}


def records(app: str, lines: list[str]) -> list[h.Rec]:
    """The lines as ``healer emit`` would produce them (keys, timestamps from ``time``)."""
    from healer.cli.emit_cmd import parse_input

    return [h.Rec(f"{app}.{t}", k, v, ts) for t, k, v, ts in parse_input("\n".join(lines), None)]


def wait_settled(bootstrap: str, app: str, expected: set[str] | None, n_valid: int,
                 timeout: float, workers: Sequence[Any] = ()) -> bool:
    """Drained, and every expected action has a final state in the audit; False once the
    pipeline is drained twice in a row with an unchanged audit that still lacks some."""
    deadline = time.monotonic() + timeout
    last_size = -1
    while time.monotonic() < deadline:
        ok, _ = h.wait_drained(bootstrap, app, timeout=max(5.0, deadline - time.monotonic()),
                               workers=workers)
        if not ok:
            return False
        if expected is None:
            return True
        view = audit_view(bootstrap, app)
        if expected <= set(view.terminal) and len(view.received) >= n_valid:
            return True
        if len(view.records) == last_size:
            return False
        last_size = len(view.records)
        time.sleep(2.0)
    return False
