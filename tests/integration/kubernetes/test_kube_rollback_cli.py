"""A failing rollback end to end: a real ``healer run`` worker cordons a real (kwok) node through
the fault proxy, then ``healer rollback ACTION_ID`` meets a 403 on the uncordon (permanent:
one attempt, exit 1, ``action.rollback_failed`` with the apiserver's reason, the worker's
ledger says ``rollback_failed``), then a 503 and a 429 (transient: retried, exit 0,
``action.rolled_back``, the node schedulable again, the ledger ``rolled_back``).

The other reversible executors go through actions.runner.Runner in
``test_kube_rollback_failures.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healer.chain import verify
from tests.harness.kube.faultproxy import Fault, FaultProxy
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubeobjects import Admin
from tests.workers import WorkerFactory, emit, healer_cli, read_until

pytestmark = pytest.mark.integration

NODE = "cpu-3"
NODE_PATH = rf"/nodes/{NODE}(\?|$)"
POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: cordon-bad-node}
spec:
  trigger: {alert: {matchers: ['alertname="NodeFlaky"']}}
  target: {kind: Node, name: "{{ labels.node }}"}
  actions: [{use: kubernetes.cordon}]
  verify: {timeout: 30s}
"""


def ledger_entry(bootstrap: str, app: str, action_id: str, state: str) -> dict[str, Any]:
    """The worker's ledger entry for ``action_id`` once it reaches ``state`` (its changelog)."""
    def mine(r: dict[str, Any]) -> bool:
        return ((r.get("request") or {}).get("action_id") == action_id) and r.get("state") == state

    recs = read_until(bootstrap, f"{app}-ledger-changelog", lambda rs: any(mine(r) for r in rs), timeout=60)
    found = [r for r in recs if mine(r)]
    assert found, f"no ledger entry for {action_id} in state {state}: {[r.get('state') for r in recs]}"
    return found[-1]


def test_cli_rollback_fails_on_403_then_retries_5xx_and_rolls_back(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    kube_cluster: KubeCluster, admin: Admin, fault_proxy: FaultProxy,
) -> None:
    app = unique_app_id
    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "healer.kubeconfig", "healer", server=fault_proxy.url)
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    try:
        w = healer_worker.start(pol, app, HEALER_KUBECONFIG=str(kubeconfig))
        emit(kafka_bootstrap, f"{app}.alerts", [json.dumps({
            "labels": {"alertname": "NodeFlaky", "node": NODE}, "startsAt": "2026-11-21T10:00:00Z",
        }).encode()])
        audit = read_until(kafka_bootstrap, f"{app}.audit", lambda r: any(
            x.get("kind") in ("action.verified", "action.failed") for x in r), timeout=120)
        aid = next(r["action_id"] for r in audit if r.get("kind") == "action.verified")
        assert admin.node(NODE)["spec"]["unschedulable"] is True, w.log_tail()

        # permanent: 403 on the uncordon -> one attempt, exit 1, the reason on the CLI's output
        fault_proxy.clear()
        fault_proxy.add(Fault(403, method="PATCH", path=NODE_PATH, message="nodes are locked"))
        first = healer_cli(kafka_bootstrap, app, "rollback", aid, "--reason", "node is fine", HEALER_SIGNING_KEY="carol")
        assert first.returncode == 1, first.stdout + first.stderr + w.log_tail()
        line = next(x for x in first.stdout.splitlines() if "action.rollback_failed" in x)
        assert f"action={aid}" in line and "actor=user:carol" in line
        assert f"patch node {NODE}: 403 Forbidden: nodes are locked" in line, line
        assert fault_proxy.count("PATCH", NODE_PATH) == 1
        assert admin.node(NODE)["spec"]["unschedulable"] is True
        entry = ledger_entry(kafka_bootstrap, app, aid, "rollback_failed")
        assert entry["rolled_back_by"] == "user:carol" and "403 Forbidden" in entry["rollback_reason"]

        # transient: 503 then 429 -> retried by the worker's runner, then rolled back
        fault_proxy.clear()
        fault_proxy.add(Fault(sequence=(503, 429), method="PATCH", path=NODE_PATH))
        second = healer_cli(kafka_bootstrap, app, "rollback", aid, HEALER_SIGNING_KEY="carol")
        assert second.returncode == 0, second.stdout + second.stderr + w.log_tail()
        assert any("action.rolled_back" in x for x in second.stdout.splitlines()), second.stdout
        assert fault_proxy.count("PATCH", NODE_PATH, injected=True) == 2
        assert fault_proxy.count("PATCH", NODE_PATH, injected=False) == 1
        assert not admin.node(NODE)["spec"].get("unschedulable")
        assert ledger_entry(kafka_bootstrap, app, aid, "rolled_back")["rollback_reason"] == "operator rollback"

        third = healer_cli(kafka_bootstrap, app, "rollback", aid, HEALER_SIGNING_KEY="carol")
        assert third.returncode == 0 and "already rolled back" in third.stdout

        audit = read_until(kafka_bootstrap, f"{app}.audit", lambda r: any(
            x.get("kind") == "action.rolled_back" for x in r))
        assert [r["kind"] for r in audit if r.get("action_id") == aid] == [
            "action.queued", "action.running", "action.succeeded", "action.verified",
            "action.rollback_failed", "action.rolled_back",
        ]
        report = verify(audit)
        assert report.ok, [str(p) for p in report.problems]
        assert w.stop() == 0
    finally:
        admin.set_unschedulable(NODE, False)
