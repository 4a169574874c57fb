"""Chaos: hostile input interleaved with valid input.

10,000 hostile records (``--short``: 1,000) among 2,000 valid ones (``--short``:
400) on the alerts and metrics topics. Two classes:

- malformed (must go to ``{app}.deadletter`` and be audited ``event.rejected``):
  garbage bytes, invalid UTF-8, truncated JSON, deeply nested JSON (100,000
  levels), labels of ~1 MB (over the 16 KiB label limit, under the broker's
  record limit), wrong types, bad Alertmanager versions, 10,001-sample arrays,
  empty values;
- well-formed but hostile (valid JSON and schema; must be received, never
  rendered as templates and never act on a target that is not a valid
  Kubernetes name): template syntax in label names and values, path tricks
  (``../``, ``/``, ``%2e``) in the labels a policy's target is built from.

The valid records must all be processed: executed actions == offline plan.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime
from typing import Any

from bench import harness as h
from bench.chaos.common import Ctx, Result, audit_view, fill, plan, wait_settled
from healer.ingest import partition_key

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: poison-alert}
spec:
  trigger:
    alert:
      matchers: ['alertname=~"Chaos.*"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}}
  guards: {cooldown: 30s}
"""
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
BIG_LABELS = 20


def _malformed(i: int, rng: random.Random, big_left: list[int]) -> tuple[str, bytes | None, str]:
    kind = i % 10
    if kind == 0:
        return "alerts", bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))), "garbage bytes"
    if kind == 1:
        return "metrics", b'{"name": "x", "value": 1, "labels": {"a": "\xff\xfe"}}', "invalid UTF-8"
    if kind == 2:
        return "alerts", b'{"status": "firing", "labels": {"alertname": "ChaosX"', "truncated JSON"
    if kind == 3:
        depth = 100_000
        return "alerts", b"[" * depth + b"]" * depth, "deep JSON array"
    if kind == 4:
        depth = 20_000
        return "metrics", b'{"a":' * depth + b"1" + b"}" * depth, "deep JSON object"
    if kind == 5 and big_left[0] > 0:
        big_left[0] -= 1
        v = {"status": "firing", "labels": {"alertname": "ChaosBig", "namespace": "llm-prod",
                                            "deployment": "svc-1", "blob": "a" * 1_000_000}}
        return "alerts", json.dumps(v).encode(), "1 MB label"
    if kind == 6:
        bad: list[Any] = [{"status": 42, "labels": {"alertname": "ChaosValid"}},
                          {"status": "firing", "labels": {"alertname": 7}},
                          {"status": "firing", "labels": ["a", "b"]},
                          {"version": "3", "alerts": []},
                          {"version": "4", "alerts": "nope"}, "just a string", 12345, None]
        return "alerts", json.dumps(bad[i % len(bad)]).encode(), "wrong types"
    if kind == 7:
        arr = [{"name": "m", "value": 1.0, "labels": {}}] * 10_001
        return "metrics", json.dumps(arr).encode(), "10,001-sample array"
    if kind == 8:
        return "metrics", None, "empty value"
    return "metrics", json.dumps({"name": "", "value": "NaN?", "labels": {"x": {"y": 1}}}).encode(), \
        "schema violations"


TRICKS = ["{{ labels.namespace }}", "{{ value }}", "{% for x in y %}", "${HOME}", "../../etc/passwd",
          "kube-system/../default", "svc/../../x", "%2e%2e%2fetc", "a" * 300, "UPPER_case",
          "svc-1\nsvc-2", "svc-1;rm -rf /", ".", "..", "-lead"]


def _wellformed(i: int, rng: random.Random) -> tuple[str, dict[str, Any], str]:
    trick = TRICKS[i % len(TRICKS)]
    if i % 3 == 0:
        labels = {"alertname": "ChaosTrick", "namespace": "llm-prod", "deployment": trick}
        what = "trick in target name"
    elif i % 3 == 1:
        labels = {"alertname": "ChaosTrick", "namespace": trick, "deployment": "svc-1"}
        what = "trick in target namespace"
    else:
        labels = {"alertname": "ChaosTrick", "{{ labels.deployment }}": "x",
                  "namespace": "llm-prod", "deployment": "{{ labels.namespace }}"}
        what = "template label name"
    return "alerts", {"status": "firing", "labels": labels, "startsAt": "2026-01-01T00:00:00Z"}, what


def run(ctx: Ctx) -> Result:
    n_bad, n_valid = (1_000, 400) if ctx.short else (10_000, 2_000)
    res = Result("poison")
    d = ctx.dir("poison")
    pol = d / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(POLICIES)
    app = h.unique_app("cp")
    rng = random.Random(3)
    big_left = [BIG_LABELS if not ctx.short else 5]
    # (class, record, replay line or None, what)
    items: list[tuple[str, h.Rec, str | None, str]] = []
    n_total = n_bad + n_valid
    bad_every = n_total / n_bad
    k_bad = 0
    k_mal = 0
    for i in range(n_total):
        t = h.T0.timestamp() + i * 0.05
        ts_ms = int(t * 1000)
        iso = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if k_bad < n_bad and int(k_bad * bad_every) == i:
            if k_bad % 5 == 4:
                topic, body, what = _wellformed(k_bad, rng)
                rec = h.Rec(f"{app}.{topic}", b"chaos/trick", json.dumps(body).encode(), ts_ms)
                items.append(("wellformed", rec, json.dumps({"time": iso, "alert": body}), what))
            else:
                topic, raw, what = _malformed(k_mal, rng, big_left)
                k_mal += 1
                items.append(("malformed", h.Rec(f"{app}.{topic}", b"chaos/bad", raw, ts_ms), None, what))
            k_bad += 1
            continue
        dep = f"svc-{i % 10}"
        labels = {"alertname": "ChaosValid", "namespace": "llm-prod", "deployment": dep}
        body = {"status": "firing", "labels": labels,
                "startsAt": iso[:-5] + "Z" if i % 4 == 0 else "2026-01-01T00:00:00Z"}
        items.append(("valid", h.Rec(f"{app}.alerts", partition_key(labels), json.dumps(body).encode(),
                                     ts_ms), json.dumps({"time": iso, "alert": body}), "valid"))
    replay = [line for _, _, line, _ in items if line is not None]
    expected = plan(pol, replay)
    with h.workers(ctx.bootstrap, d) as wf:
        w = wf.start(pol, app, partitions=3)
        sent = []
        for start in range(0, len(items), 500):
            sent += h.produce(ctx.bootstrap, [rec for _, rec, _, _ in items[start:start + 500]])
        valid_n = sum(1 for c, *_ in items if c != "malformed")
        settled = wait_settled(ctx.bootstrap, app, expected, valid_n, timeout=600, workers=[w])
        res.checks["settled within 600 s"] = settled
        res.checks["worker never exited"] = w.proc.poll() is None
        view = audit_view(ctx.bootstrap, app)
        dead = h.read_topic(ctx.bootstrap, f"{app}.deadletter")
        w.stop()
    ids = [s.event_id for s in sent]
    classes = [c for c, *_ in items]
    whats = [wh for *_, wh in items]
    malformed = {e for e, c in zip(ids, classes, strict=True) if c == "malformed"}
    good = [e for e, c in zip(ids, classes, strict=True) if c != "malformed"]
    fill(res, view, good, expected)
    dl_ids = {f"{r.value.get('topic')}:{r.value.get('partition')}:{r.value.get('offset')}"
              for r in dead if isinstance(r.value, dict)}
    missing_dl = malformed - dl_ids
    missing_rej = malformed - set(view.rejected)
    wrongly_received = malformed & set(view.received)
    by_what: dict[str, int] = {}
    for wh, c in zip(whats, classes, strict=True):
        if c != "valid":
            by_what[wh] = by_what.get(wh, 0) + 1
    bad_targets = []
    for r in view.records:
        if r.get("kind") == "action.running":
            t = r.get("target") or {}
            if not (DNS_LABEL.match(t.get("namespace", "")) and DNS_SUB.match(t.get("name", ""))):
                bad_targets.append(t)
    res.checks["every malformed record dead-lettered"] = not missing_dl
    res.checks["every malformed record audited event.rejected"] = not missing_rej
    res.checks["no malformed record received as valid"] = not wrongly_received
    res.checks["no action on an invalid target name"] = not bad_targets
    res.detail.update({
        "hostile": len(malformed) + sum(1 for c in classes if c == "wellformed"),
        "malformed": len(malformed), "wellformed_hostile": sum(1 for c in classes if c == "wellformed"),
        "valid": sum(1 for c in classes if c == "valid"), "hostile_by_kind": by_what,
        "deadletter_records": len(dead), "missing_deadletter": sorted(missing_dl)[:10],
        "missing_rejected": sorted(missing_rej)[:10], "actions_on_invalid_targets": bad_targets[:5],
    })
    res.events_in = len(good)
    return res
