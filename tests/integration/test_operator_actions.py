"""Operator actions end to end on a real broker and worker: `healer rollback`
(after success, after a failed verify, refused when not reversible, repeated
is a no-op) and `healer action run` (through the same runner; guards refuse
protected namespaces)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.workers import WorkerFactory, emit, healer_cli, read_until

pytestmark = pytest.mark.integration

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: ok-action}
spec:
  trigger: {alert: {matchers: ['alertname="Ok"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop, with: {message: fine}}]
---
apiVersion: healer/v1
kind: Policy
metadata: {name: bad-verify}
spec:
  trigger: {alert: {matchers: ['alertname="BadVerify"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop, with: {fail: verify}}]
  verify: {timeout: 5s, rollback: true}
---
apiVersion: healer/v1
kind: Policy
metadata: {name: notify}
spec:
  trigger: {alert: {matchers: ['alertname="Notify"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop, with: {message: page}}]
"""


def alert(name: str, dep: str) -> bytes:
    return json.dumps({"labels": {"alertname": name, "namespace": "llm-prod", "deployment": dep},
                       "startsAt": "2026-11-21T10:00:00Z"}).encode()


def cli(bootstrap: str, app: str, *args: str) -> subprocess.CompletedProcess[str]:
    return healer_cli(bootstrap, app, *args, HEALER_SIGNING_KEY="carol")


def kinds_of(audit: list[dict], aid: str) -> list[str]:
    return [r["kind"] for r in audit if r.get("action_id") == aid]


def test_rollback_and_manual_actions(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICIES)
    w = healer_worker.start(pol, unique_app_id)
    app = unique_app_id
    emit(kafka_bootstrap, f"{app}.alerts", [alert("Ok", "a"), alert("BadVerify", "b")])
    audit = read_until(kafka_bootstrap, f"{app}.audit", lambda r: sum(
        x.get("kind") in ("action.verified", "action.rolled_back") for x in r) >= 2)
    ok_id = next(r["action_id"] for r in audit if r.get("kind") == "action.verified")
    bad_id = next(r["action_id"] for r in audit if r.get("kind") == "action.rolled_back")

    # automatic rollback after a failed verification
    assert kinds_of(audit, bad_id) == ["action.queued", "action.running", "action.succeeded",
                                       "action.failed", "action.rolled_back"], w.log_tail()
    auto = next(r for r in audit if r.get("action_id") == bad_id and r["kind"] == "action.rolled_back")
    assert auto["actor"] == "healer" and "verification failed" in auto["reason"]

    # operator rollback after success; a second one is a no-op
    first = cli(kafka_bootstrap, app, "rollback", ok_id, "--reason", "made it worse")
    assert first.returncode == 0, first.stderr + w.log_tail()
    again = cli(kafka_bootstrap, app, "rollback", ok_id)
    assert again.returncode == 0 and "already rolled back" in again.stdout
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda r: any(x.get("kind") == "action.rolled_back" and x.get("action_id") == ok_id
                                     for x in r))
    mine = [r for r in audit if r.get("action_id") == ok_id and r["kind"] == "action.rolled_back"]
    assert len(mine) == 1 and mine[0]["actor"] == "user:carol" and mine[0]["reason"] == "made it worse"
    assert mine[0]["before"] == {"target": {"kind": "Deployment", "namespace": "llm-prod", "name": "a"}}

    # manual action through the same runner
    run = cli(kafka_bootstrap, app, "action", "run", "healer.noop", "--target", "kind=Deployment",
              "--target", "namespace=llm-prod", "--target", "name=vllm", "--with", "message=by hand")
    assert run.returncode == 0, run.stderr + run.stdout + w.log_tail()
    assert "action.verified" in run.stdout
    manual_id = run.stdout.split()[1].rstrip(":")
    audit = read_until(kafka_bootstrap, f"{app}.audit", lambda r: any(
        x.get("action_id") == manual_id and x.get("kind") == "action.verified" for x in r))
    steps = [r for r in audit if r.get("action_id") == manual_id]
    assert [r["kind"] for r in steps] == ["action.queued", "action.running", "action.succeeded", "action.verified"]
    assert {r["actor"] for r in steps} == {"user:carol"}

    # guards: a protected namespace is refused and the refusal audited
    refused = cli(kafka_bootstrap, app, "action", "run", "healer.noop", "--target", "kind=Deployment",
                  "--target", "namespace=kube-system", "--target", "name=coredns")
    assert refused.returncode == 1 and "namespace_denied" in refused.stderr

    # a non-reversible action cannot be rolled back: refused with a clear message, audited
    restart = cli(kafka_bootstrap, app, "action", "run", "kubernetes.restart", "--target", "kind=Deployment",
                  "--target", "namespace=llm-prod", "--target", "name=vllm", "--no-wait")
    assert restart.returncode == 0, restart.stderr
    restart_id = restart.stdout.split()[1].rstrip(":")
    no = cli(kafka_bootstrap, app, "rollback", restart_id)
    assert no.returncode == 1 and "not reversible" in no.stderr
    audit = read_until(kafka_bootstrap, f"{app}.audit", lambda r: sum(
        x.get("kind") == "event.rejected" for x in r) >= 2, timeout=30)
    rejected = [r for r in audit if r.get("kind") == "event.rejected"]
    assert any("namespace_denied" in (r.get("reason") or "") for r in rejected)
    assert any(r.get("action_id") == restart_id and "not reversible" in r["reason"] for r in rejected)
    assert w.stop() == 0
