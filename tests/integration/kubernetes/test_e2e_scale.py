"""End to end: an Alertmanager alert on real Kafka -> a policy -> kubernetes.scale on
the real kube-apiserver (pods made Ready by kwok) -> verified -> every step in
the audit chain. A real `healer run` worker process does all of it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from healer.chain import verify
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubeobjects import Admin, deployment
from tests.workers import WorkerFactory, emit, read_until

pytestmark = pytest.mark.integration

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: llm-latency-scale-out}
spec:
  trigger:
    alert:
      matchers: ['alertname="LLMHighLatency"', 'severity=~"critical|warning"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - use: kubernetes.scale
      with: {replicas: "x2", max: 4}
  guards: {cooldown: 5m}
  verify: {timeout: 60s}
"""


def test_alert_scales_a_real_deployment_and_audits_every_step(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    kube_cluster: KubeCluster, admin: Admin, namespace: str,
) -> None:
    admin.create(namespace, deployment("vllm", replicas=2))
    admin.wait_ready(namespace, "Deployment", "vllm", 2)
    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "healer.kubeconfig", "healer")
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    w = healer_worker.start(pol, unique_app_id, HEALER_KUBECONFIG=str(kubeconfig))

    payload = {"version": "4", "status": "firing", "receiver": "healer", "alerts": [{
        "status": "firing", "startsAt": "2026-11-21T10:00:00Z", "fingerprint": "e2e1",
        "labels": {"alertname": "LLMHighLatency", "severity": "critical", "namespace": namespace,
                   "deployment": "vllm"}}]}
    emit(kafka_bootstrap, f"{unique_app_id}.alerts", [json.dumps(payload).encode()])

    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda r: any(x.get("kind") in ("action.verified", "action.failed") for x in r),
                       timeout=120)
    steps = [r for r in audit if r.get("action_id")]
    assert [r["kind"] for r in steps] == [
        "action.queued", "action.running", "action.succeeded", "action.verified"], w.log_tail()
    assert steps[1]["use"] == "kubernetes.scale" and steps[1]["target"]["namespace"] == namespace
    assert steps[2]["before"]["replicas"] == 2
    assert admin.workload(namespace, "Deployment", "vllm")["spec"]["replicas"] == 4
    assert admin.workload(namespace, "Deployment", "vllm")["status"].get("readyReplicas") == 4
    assert [r["kind"] for r in audit if not r.get("action_id")] == ["event.received"]
    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    assert w.stop() == 0
    # leave the shared fake nodes empty: node tests count the pods they drain
    admin.apps.delete_namespaced_deployment("vllm", namespace, propagation_policy="Foreground")
    with contextlib.suppress(Exception):  # best effort; the namespace goes anyway
        admin.wait("e2e pods gone", lambda: not admin.pods(namespace), 60)
