"""End to end with the real ecosystem: Prometheus 2.42 scrapes two fake inference servers,
evaluates the shipped rules (deploy/examples/prometheusrule.yaml), Alertmanager 0.25 routes the
alert with the shipped config (deploy/examples/alertmanager.yaml) to healer's webhook, and the
same Prometheus remote-writes its samples to healer. One real ``healer run`` worker acts on the
real kube-apiserver for both:

- alert path: server ``vllm`` fails 10 % of its requests -> ``InferenceSuccessRateLow`` ->
  Alertmanager -> ``POST /api/v1/alerts`` -> library policy ``inference-success-rate-restart``
  (policies/, unchanged) -> ``kubernetes.restart`` of Deployment ``vllm``;
- metric path: server ``ranker`` reports its GPU 97 % busy -> remote write -> a metric-window
  policy (avg over 10 s > 90 for 2 s) -> ``kubernetes.scale`` of Deployment ``ranker`` 1 -> 2.

Both actions end ``action.verified``; the audit chains verify (``healer audit verify``).

The test copy of the rules differs from the shipped one only in ``for`` (1s instead of
minutes); expressions, labels and thresholds are the shipped ones, and the exporter's values
trip them. Alertmanager's config is the shipped one with the URL, the token file and a 1 s
``group_wait`` filled in.
"""

from __future__ import annotations

import contextlib
import copy
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.chain import verify
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubeobjects import Admin, deployment
from tests.harness.prometheus import Alertmanager, Prometheus, rule_groups
from tests.integration.prometheus.exporter import InferenceServer
from tests.integration.prometheus.kit import TOKEN, remote_write, remote_write_samples
from tests.workers import WorkerFactory, healer_cli, read_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "deploy" / "examples"
LIBRARY_POLICY = ROOT / "policies" / "inference-success-rate-restart.yaml"
METRIC_POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: gpu-busy-scale-out}
spec:
  trigger:
    metric:
      name: DCGM_FI_DEV_GPU_UTIL
      matchers: ['namespace=~"llm-.*"']
      group_by: [namespace, deployment]
      aggregate: avg
      window: 10s
      op: ">"
      threshold: 90
      for: 2s
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - use: kubernetes.scale
      with: {replicas: "x2", max: 4}
  guards: {cooldown: 10m}
  verify: {timeout: 90s}
"""


@pytest.fixture
def llm_namespace(kube_cluster: KubeCluster, admin: Admin) -> Iterator[str]:
    """A fresh namespace that the library policy's ``namespaces: ["llm-*", ...]`` allows."""
    name = f"llm-prom-{uuid.uuid4().hex[:6]}"
    admin.core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    admin.wait("default service account", lambda: bool(admin.core.list_namespaced_service_account(
        name, field_selector="metadata.name=default").items), 30)
    try:
        yield name
    finally:
        for d in ("vllm", "ranker"):  # leave the shared fake nodes empty
            with contextlib.suppress(Exception):
                admin.apps.delete_namespaced_deployment(d, name, propagation_policy="Foreground")
        with contextlib.suppress(Exception):
            admin.wait("e2e pods gone", lambda: not admin.pods(name), 60)
        with contextlib.suppress(Exception):
            admin.core.delete_namespace(name)


def test_rules_copy_differs_from_the_shipped_rules_only_in_for() -> None:
    """The test copy of the rules: the shipped ones with every ``for`` at 1s, nothing else."""
    shipped = rule_groups(EXAMPLES / "prometheusrule.yaml")
    fast = fast_rules()
    for g_ship, g_fast in zip(shipped["groups"], fast["groups"], strict=True):
        for r_ship, r_fast in zip(g_ship["rules"], g_fast["rules"], strict=True):
            assert {k: v for k, v in r_fast.items() if k != "for"} == {k: v for k, v in r_ship.items() if k != "for"}
            assert r_fast.get("for") == ("1s" if "for" in r_ship else None)


def fast_rules() -> dict[str, Any]:
    rules = copy.deepcopy(rule_groups(EXAMPLES / "prometheusrule.yaml"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    return rules


def alertmanager_config(webhook_url: str, token_file: Path) -> dict[str, Any]:
    am = yaml.safe_load((EXAMPLES / "alertmanager.yaml").read_text())
    (route,) = [r for r in am["route"]["routes"] if r["receiver"] == "healer"]
    route["group_wait"] = "1s"
    (receiver,) = [r for r in am["receivers"] if r["name"] == "healer"]
    (hook,) = receiver["webhook_configs"]
    hook["url"] = webhook_url
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return dict(am)


def policy_of(record: dict[str, Any]) -> str | None:
    return (record.get("policy") or {}).get("name")


def lifecycle(audit: list[dict[str, Any]], policy: str) -> list[dict[str, Any]]:
    return [r for r in audit if r.get("action_id") and policy_of(r) == policy]


def test_prometheus_alertmanager_and_remote_write_drive_real_actions(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    kube_cluster: KubeCluster, admin: Admin, llm_namespace: str, token_file: Path,
    prometheus: Callable[..., Prometheus], alertmanager: Callable[..., Alertmanager],
    inference_server: Callable[..., InferenceServer],
) -> None:
    started = time.monotonic()
    ns = llm_namespace
    admin.create(ns, deployment("vllm", replicas=2))
    admin.create(ns, deployment("ranker", replicas=1))
    admin.wait_ready(ns, "Deployment", "vllm", 2)
    admin.wait_ready(ns, "Deployment", "ranker", 1)
    vllm_template = admin.workload(ns, "Deployment", "vllm")["spec"]["template"]

    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "healer.kubeconfig", "healer")
    pol = tmp_path / "policies"
    pol.mkdir()
    shutil.copy(LIBRARY_POLICY, pol / LIBRARY_POLICY.name)
    (pol / "gpu-busy.yaml").write_text(METRIC_POLICY)
    w = healer_worker.start(pol, unique_app_id, HEALER_KUBECONFIG=str(kubeconfig), HEALER_WEBHOOK_TOKEN=TOKEN)

    vllm = inference_server("vllm-model", error_ratio=0.1, gpu_util=50.0)
    ranker = inference_server("ranker-model", error_ratio=0.0, gpu_util=97.0)
    am = alertmanager(alertmanager_config(w.url("/api/v1/alerts"), token_file))
    prom = prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]},
        "scrape_configs": [{"job_name": "triton", "static_configs": [
            {"targets": [vllm.target], "labels": {"namespace": ns, "deployment": "vllm"}},
            {"targets": [ranker.target], "labels": {"namespace": ns, "deployment": "ranker"}},
        ]}],
        "remote_write": [remote_write(w.url("/api/v1/write"), token_file)],
    }, rules=fast_rules())

    def both_done(audit: list[dict[str, Any]]) -> bool:
        ends = {policy_of(r) for r in audit if r.get("kind") in ("action.verified", "action.failed")}
        return ends >= {"inference-success-rate-restart", "gpu-busy-scale-out"}

    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit", both_done, timeout=240)
    diag = f"\n{w.log_tail()}\n--- prometheus\n{prom.log_tail()}\n--- alertmanager\n{am.log_tail()}"
    assert both_done(audit), f"alerts firing in Prometheus: {prom.firing()}{diag}"
    acted = time.monotonic() - started

    # the alert path: Prometheus rule -> Alertmanager -> webhook -> library policy -> restart
    steps = lifecycle(audit, "inference-success-rate-restart")
    assert [r["kind"] for r in steps] == [
        "action.queued", "action.running", "action.succeeded", "action.verified"], diag
    assert steps[1]["use"] == "kubernetes.restart"
    assert steps[1]["target"] == {"kind": "Deployment", "namespace": ns, "name": "vllm"}
    alert_event = steps[0]["event"]["id"]
    assert alert_event.startswith(f"{unique_app_id}.alerts:"), steps[0]
    received = [r for r in audit if r.get("kind") == "event.received" and r["event"]["id"] == alert_event]
    assert received and received[0]["detail"]["kind"] == "alert"
    restarted = admin.workload(ns, "Deployment", "vllm")
    assert restarted["spec"]["template"] != vllm_template
    assert restarted["spec"]["template"]["metadata"]["annotations"]["healer.io/restart-action"] == steps[0]["action_id"]
    assert restarted["spec"]["replicas"] == 2

    # the metric path: remote write -> {app}.metrics -> window policy -> scale 1 -> 2
    steps = lifecycle(audit, "gpu-busy-scale-out")
    assert [r["kind"] for r in steps] == [
        "action.queued", "action.running", "action.succeeded", "action.verified"], diag
    assert steps[1]["use"] == "kubernetes.scale" and steps[2]["before"]["replicas"] == 1
    assert steps[1]["target"] == {"kind": "Deployment", "namespace": ns, "name": "ranker"}
    assert steps[0]["event"]["id"].startswith(f"{unique_app_id}.metrics:"), steps[0]
    assert admin.workload(ns, "Deployment", "ranker")["spec"]["replicas"] == 2
    assert admin.workload(ns, "Deployment", "ranker")["status"].get("readyReplicas") == 2
    # vllm's GPU (50 %) was written too and matched the policy's matchers, but never breached
    assert not [r for r in audit if policy_of(r) == "gpu-busy-scale-out"
                and (r.get("target") or {}).get("name") == "vllm"]
    assert remote_write_samples(w, "accepted") > 0 and remote_write_samples(w, "no_policy") > 0

    # nothing refused or failed along the way, and the chains verify
    assert not [r for r in audit if r.get("kind") in ("event.rejected", "action.failed")], diag
    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    cli = healer_cli(kafka_bootstrap, unique_app_id, "audit", "verify")
    assert cli.returncode == 0 and re.search(r"^ok: \d+ records", cli.stdout, re.M), cli.stdout + cli.stderr
    assert prom.own_metric("prometheus_remote_storage_samples_failed_total") == 0
    assert w.stop() == 0
    print(f"\ne2e: both actions verified {acted:.1f}s after the test started")
