"""End to end on a real broker with a real ``healer run`` worker process:
Alertmanager payload in -> action request + audit trail out; bad records
between good ones go to dead letters and the audit, and never stop the flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healer.chain import verify
from tests.workers import WorkerFactory, emit, read_until

pytestmark = pytest.mark.integration

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: latency-scale}
spec:
  trigger:
    alert:
      matchers: ['alertname="LLMHighLatency"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - use: healer.noop
      with: {message: "scale out"}
  guards: {cooldown: 10m}
"""


def payload(deployment: str) -> bytes:
    return json.dumps({
        "version": "4", "status": "firing", "receiver": "healer", "groupKey": "{}:{}",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "LLMHighLatency", "namespace": "llm-prod", "deployment": deployment},
            "annotations": {"summary": "P99 above 5s"},
            "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": f"fp-{deployment}",
        }],
    }).encode()


def test_alert_to_action_and_audit_with_bad_records_between(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    w = healer_worker.start(pol, unique_app_id)
    app = unique_app_id
    emit(kafka_bootstrap, f"{app}.alerts", [
        payload("vllm-a"),
        b"\x00\xffnot json",
        b'{"labels": {"alertname": 5}}',
        payload("vllm-b"),
    ], keys=[b"k", b"k", b"k", b"k"])  # one partition: the bad ones sit between the good ones

    def complete(recs: list[dict]) -> bool:
        verified = [r for r in recs if r.get("kind") == "action.verified"]
        rejected = [r for r in recs if r.get("kind") == "event.rejected"]
        return len(verified) >= 2 and len(rejected) >= 2

    audit = read_until(kafka_bootstrap, f"{app}.audit", complete, timeout=90)
    assert complete(audit), f"audit incomplete: {[r.get('kind') for r in audit]}\n{w.log_tail()}"

    actions = read_until(kafka_bootstrap, f"{app}.actions", lambda r: len(r) >= 2, timeout=30)
    names = sorted(a["target"]["name"] for a in actions)
    assert names == ["vllm-a", "vllm-b"]
    assert all(a["use"] == "healer.noop" and a["policy"] == "latency-scale" for a in actions)

    for aid in {a["action_id"] for a in actions}:
        kinds = [r["kind"] for r in audit if r.get("action_id") == aid]
        assert kinds == ["action.queued", "action.running", "action.succeeded", "action.verified"], kinds

    received = [r for r in audit if r["kind"] == "event.received"]
    assert len(received) == 2
    rejected = [r for r in audit if r["kind"] == "event.rejected"]
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons[0].startswith("not UTF-8") and reasons[1].startswith("schema:"), reasons

    dead = read_until(kafka_bootstrap, f"{app}.deadletter", lambda r: len(r) >= 2, timeout=30)
    assert len(dead) == 2
    assert {d["error"] for d in dead} == {r["reason"] for r in rejected}
    assert all(d["topic"] == f"{app}.alerts" and isinstance(d["offset"], int) for d in dead)
    assert any(d.get("raw_base64") for d in dead)  # bytes that are not UTF-8 are kept, base64

    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    assert w.get("/healthz")[0] == 200
    assert w.stop() == 0
