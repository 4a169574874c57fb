"""End to end on a real broker with a real ``healer run`` worker process:
Alertmanager payload in -> action request + audit trail out; bad records
between good ones go to dead letters and the audit, and never stop the flow.
Each dead letter names its input (topic, partition, offset) and keeps its bytes:
all of them, or the first 128 KiB of an input larger than that (``raw_bytes``,
``raw_truncated``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healer.chain import verify
from tests.workers import (
    WorkerFactory,
    dead_letter_problems,
    emit,
    read_records,
    read_to_quiet,
    read_until,
)

pytestmark = pytest.mark.integration

DEADLETTER_CAP = 128 * 1024  # bytes of a rejected input its dead letter keeps (docs, CHANGELOG)
# over the cap, well under the worker's default max record size (1 MiB): rejected as bad
# input, not as too large, and cut in the dead letter; one UTF-8 text, one binary (base64)
BIG_TEXT = b"{" + b"y" * (DEADLETTER_CAP + 70_000)
BIG_BINARY = b"\xff" * (DEADLETTER_CAP + 20_000)

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
    inputs = [
        payload("vllm-a"),
        b"\x00\xffnot json",
        b'{"labels": {"alertname": 5}}',
        BIG_TEXT,
        BIG_BINARY,
        payload("vllm-b"),
    ]
    # one partition: the bad ones sit between the good ones
    emit(kafka_bootstrap, f"{app}.alerts", inputs, keys=[b"k"] * len(inputs))

    def complete(recs: list[dict]) -> bool:
        verified = [r for r in recs if r.get("kind") == "action.verified"]
        rejected = [r for r in recs if r.get("kind") == "event.rejected"]
        return len(verified) >= 2 and len(rejected) >= 4

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
    reasons = sorted(r["reason"].split(":")[0] for r in rejected)
    assert reasons == ["not JSON", "not UTF-8", "not UTF-8", "schema"], reasons

    dead = read_to_quiet(kafka_bootstrap, f"{app}.deadletter", lambda r: len(r) >= 4, timeout=60)
    assert len(dead) == 4
    assert {d["error"] for d in dead} == {r["reason"] for r in rejected}
    sent = read_records(kafka_bootstrap, f"{app}.alerts", len(inputs))
    assert [r.value for r in sent] == inputs
    assert dead_letter_problems(dead, sent, DEADLETTER_CAP) == []
    bad = {(r.partition, r.offset) for r in sent if r.value not in (inputs[0], inputs[-1])}
    assert {(d["partition"], d["offset"]) for d in dead} == bad
    # bytes that are not UTF-8 are kept as base64, also when cut at the cap
    assert sorted((bool(d["raw_base64"]), d["raw_truncated"]) for d in dead) == [
        (False, False), (False, True), (True, False), (True, True)]

    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    assert w.get("/healthz")[0] == 200
    assert w.stop() == 0
