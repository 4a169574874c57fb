"""Shared machinery for the crash, rebalance and broker-restart tests: a
deterministic input stream, its offline plan, and the invariants every run
must keep (each input received exactly once, no action run twice, an
interrupted action never re-run, executed actions == the offline plan, audit
chains verify).

The invariants are read from the public audit topic only, to a quiet point
(tests/workers.py ``read_to_quiet``), so a duplicate written after every
expected action ended is seen too. The internal ``{app}.audit-log`` is read
only for a diagnostic when inputs are missing, and tolerates any format.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from healer.chain import verify
from healer.cli.emit_cmd import parse_input
from healer.loader import load_policy_set
from healer.replay import Replayer, read_lines
from streams.client import OutRecord, produce
from tests.workers import EffectReceiver, end_offsets, read_to_quiet

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: crash-alert}
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
metadata: {name: crash-metric}
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


def make_events(n: int, seed: int = 11) -> list[str]:
    """Alerts for 25 targets and metric samples for 25 others, in time order."""
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    lines = []
    for i in range(n):
        t = t0 + timedelta(seconds=i * 0.5)
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if i % 2 == 0:
            dep = f"svc-{(i // 2) % 25}"
            status = "resolved" if rng.random() < 0.08 else "firing"
            starts = (t - timedelta(seconds=rng.randrange(0, 600))).strftime("%Y-%m-%dT%H:%M:%SZ")
            alert = {"status": status, "labels": {"alertname": "InferenceDegraded", "namespace": "llm-prod",
                                                  "deployment": dep}, "startsAt": starts}
            lines.append(json.dumps({"time": ts, "alert": alert}))
        else:
            dep = f"svc-{25 + (i // 2) % 25}"
            value = rng.uniform(2.0, 8.0) if (i // 100) % 3 else rng.uniform(5.5, 9.0)
            sample = {"name": "llm_request_latency_p99_seconds", "value": round(value, 3),
                      "labels": {"namespace": "llm-prod", "deployment": dep}, "timestamp": ts}
            lines.append(json.dumps({"time": ts, "metric": sample}))
    return lines


@dataclass
class Scenario:
    policies: Path
    lines: list[str]
    expected: set[str]  # action ids the offline replay executes
    env: dict[str, str] = field(default_factory=dict)  # for the workers (the webhook allow-list)

    @classmethod
    def build(cls, tmp: Path, n: int, seed: int = 11, hook_url: str | None = None) -> Scenario:
        """``hook_url``: every step is a ``webhook.notify`` to it (an effect a test can
        count: tests/workers.py ``EffectReceiver``), else a noop."""
        pol = tmp / "policies"
        pol.mkdir(exist_ok=True)
        text = POLICIES
        if hook_url:  # every step: each action's effect is counted
            text = re.sub(r"use: healer\.noop, with: \{message: \w+\}",
                          f'use: webhook.notify, with: {{url: "{hook_url}", timeout_seconds: 30}}', text)
        (pol / "p.yaml").write_text(text)
        lines = make_events(n, seed)
        plan = Replayer(load_policy_set([pol])).run(read_lines(lines))
        expected = {d.action_id for d in plan if d.decision == "execute" and d.action_id}
        assert len(expected) > 20, "the scenario should make plenty of actions"
        return cls(pol, lines, expected, {"HEALER_WEBHOOK_URLS": hook_url} if hook_url else {})

    def batches(self, app: str, parts: int) -> list[dict[str, list[OutRecord]]]:
        """The input as ``parts`` chunks of records per topic, as `healer emit` keys them."""
        records = parse_input("\n".join(self.lines), None)
        size = max(1, len(records) // parts)
        out = []
        for start in range(0, len(records), size):
            chunk: dict[str, list[OutRecord]] = {}
            for topic, key, value, ts in records[start:start + size]:
                chunk.setdefault(f"{app}.{topic}", []).append(OutRecord(key, value, ts))
            out.append(chunk)
        return out


def emit_batch(bootstrap: str, batch: dict[str, list[OutRecord]]) -> None:
    for topic, recs in batch.items():
        asyncio.run(produce(bootstrap, topic, recs))


# the outcomes of a run: one after an action was reported interrupted is a second run
OUTCOMES = ("action.succeeded", "action.verified", "action.failed", "action.rolled_back",
            "action.rollback_failed")
INTERRUPTED = "action.failed (interrupted)"


def _lifecycles(audit: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per action id, the kinds of its ``action.*`` records in the order written (records of
    one action share an audit partition, so their order in ``audit`` is that order); an
    interrupted report is :data:`INTERRUPTED`."""
    kinds: dict[str, list[str]] = {}
    for r in audit:
        aid, kind = r.get("action_id"), str(r.get("kind", ""))
        if aid and kind.startswith("action."):
            if kind == "action.failed" and (r.get("detail") or {}).get("interrupted"):
                kind = INTERRUPTED
            kinds.setdefault(aid, []).append(kind)
    return kinds


def interrupted_actions(audit: list[dict[str, Any]]) -> set[str]:
    """The actions audited as interrupted (``action.failed`` with ``detail.interrupted``),
    after asserting that none of them ran again: one ``action.running`` before the one
    interrupted report, and no outcome after it."""
    out: set[str] = set()
    for aid, seq in _lifecycles(audit).items():
        if INTERRUPTED not in seq:
            continue
        out.add(aid)
        at = seq.index(INTERRUPTED)
        assert seq.count("action.running") == 1 and seq.count(INTERRUPTED) == 1, (aid, seq)
        assert seq.index("action.running") < at, (aid, seq)
        assert not set(seq[at:]) & set(OUTCOMES), f"interrupted action {aid} ran again: {seq}"
    return out


def finished_then_interrupted(audit: list[dict[str, Any]]) -> set[str]:
    """Actions with an outcome and, after it, an interrupted report: not a second run (one
    ``action.running``), but a crash after the outcome was audited and before the ledger
    recorded it, so the redelivered request found the ledger still ``running``."""
    return {aid for aid, seq in _lifecycles(audit).items()
            if INTERRUPTED in seq and set(seq[:seq.index(INTERRUPTED)]) & set(OUTCOMES)}


def _audit_log_ids(bootstrap: str, app: str, wanted: set[str]) -> str:
    """Diagnostic only: which of ``wanted`` event ids the internal audit-log holds (written but
    never sealed). Its record format is the worker's own and may change: any shape is tolerated."""
    try:
        log = read_to_quiet(bootstrap, f"{app}.audit-log", timeout=30, settle=2.0)
    except AssertionError as exc:
        return f"(audit-log diagnostic unavailable: {exc})"
    found: set[str] = set()
    todo: list[Any] = list(log)
    while todo:  # any string equal to a wanted id, at any depth (entries, batches, ...)
        x = todo.pop()
        if isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, list):
            todo.extend(x)
        elif isinstance(x, str) and x in wanted:
            found.add(x)
    return f"of those in the audit-log (diagnostic): {sorted(found)[:20]}"


def accounted_inputs(recs: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """How often the audit accounts for each input record: alerts by ``event.received``
    (one per alert), metric records by the ``input.batch`` ranges that cover them
    (a range can be covered twice after a crash replays it: counted, not an error)."""
    alerts = Counter(r["event"]["id"] for r in recs if r.get("kind") == "event.received")
    metrics: Counter[str] = Counter()
    for r in recs:
        if r.get("kind") == "input.batch":
            d = r["detail"]
            for off in range(d["first_offset"], d["last_offset"] + 1):
                metrics[f"{d['topic']}:{d['partition']}:{off}"] += 1
    return alerts, metrics


def effect_problems(audit: list[dict[str, Any]], effects: EffectReceiver) -> list[str]:
    """How the requests ``effects`` received break "no action runs twice": an action id
    requested twice, or a ``webhook.notify`` action audited as succeeded without exactly one
    request (one interrupted mid-request may have sent one or none)."""
    counts = effects.counts()
    problems = [f"{aid}: requested {c} times" for aid, c in sorted(counts.items()) if c > 1]
    done = {r["action_id"] for r in audit if r.get("kind") == "action.succeeded" and r.get("use") == "webhook.notify"}
    problems += [f"{aid}: succeeded with {counts.get(aid, 0)} requests" for aid in sorted(done) if counts.get(aid) != 1]
    return problems


def check_invariants(sc: Scenario, bootstrap: str, app: str, log_tail: str = "",
                     timeout: float = 300, interrupted: int | None = None,
                     effects: EffectReceiver | None = None) -> dict[str, Any]:
    """Wait until every input and expected action has settled and the audit topic is quiet,
    then assert the invariants. ``interrupted``: the exact number of actions the run must
    have interrupted (None: any number, reported). ``effects``: the receiver of the
    scenario's webhook steps (``Scenario.build(hook_url=...)``); each action's request is
    counted, since the audit cannot show a second run (its entries repeat the same ids)."""
    n = len(sc.lines)

    def settled(recs: list[dict[str, Any]]) -> bool:
        ended = {r["action_id"] for r in recs if r.get("kind") in ("action.verified", "action.failed")}
        alerts, metrics = accounted_inputs(recs)
        return len(alerts) + len(metrics) >= n and ended >= sc.expected

    audit = read_to_quiet(bootstrap, f"{app}.audit", settled, timeout=timeout)
    received, metric_inputs = accounted_inputs(audit)
    if len(received) + len(metric_inputs) != n:
        received = received + Counter(set(metric_inputs))
        ends = end_offsets(bootstrap, [f"{app}.alerts", f"{app}.metrics"])
        all_ids = {f"{t}:{p}:{o}" for (t, p), end in ends.items() for o in range(end)}
        missing = sorted(all_ids - set(received))
        pytest.fail(f"{len(received)} of {n} inputs received; missing {missing[:20]}; "
                    f"{_audit_log_ids(bootstrap, app, set(missing))}\n{log_tail}")
    assert max(received.values()) == 1, [k for k, v in received.items() if v > 1][:5]
    replayed_metric_inputs = sum(1 for v in metric_inputs.values() if v > 1)

    running = Counter(r["action_id"] for r in audit if r.get("kind") == "action.running")
    assert max(running.values()) == 1, [k for k, v in running.items() if v > 1]
    ended = {r["action_id"] for r in audit if r.get("kind") in ("action.verified", "action.failed")}
    assert ended >= sc.expected, f"{len(sc.expected - ended)} actions never ended: {sorted(sc.expected - ended)[:5]}"
    stopped = interrupted_actions(audit)
    late_reports = finished_then_interrupted(audit)
    executed = set(running)
    assert stopped <= executed
    if interrupted is not None:
        assert len(stopped) == interrupted, f"{len(stopped)} interrupted actions, expected {interrupted}"
    assert executed == sc.expected, (
        f"missing {sorted(sc.expected - executed)[:5]}, unexpected {sorted(executed - sc.expected)[:5]}"
    )
    if effects is not None:
        problems = effect_problems(audit, effects)
        assert not problems, f"actions ran twice: {problems[:10]}"
    queued = Counter(r["action_id"] for r in audit if r.get("kind") == "action.queued")
    assert set(queued) == sc.expected and max(queued.values()) == 1
    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    return {"inputs": n, "actions": len(sc.expected), "interrupted": len(stopped),
            "interrupted_after_an_outcome": len(late_reports),
            "webhook_requests": len(effects.requests) if effects is not None else None,
            "metric_inputs_audited_twice": replayed_metric_inputs,
            "audit_records": len(audit)}
