"""kubernetes.cordon / kubernetes.drain against a real kube-apiserver with kwok nodes: the
Eviction API with a real PodDisruptionBudget, DaemonSet pods skipped, GPU blast radius.

Nodes are shared by the session, so every test restores the nodes it touched."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.kubeobjects import Admin, AuditLog, daemonset, deployment, pdb, request

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def restore_nodes(admin: Admin, *names: str) -> Iterator[None]:
    try:
        yield
    finally:
        for n in names:
            admin.set_unschedulable(n, False)


def _unschedulable(admin: Admin, name: str) -> bool:
    return bool(admin.node(name).get("spec", {}).get("unschedulable"))


def _pinned(name: str, nodes: list[str], replicas: int) -> dict[str, Any]:
    """A Deployment spread one pod per node over ``nodes``."""
    dep = deployment(name, replicas=replicas)
    dep["spec"]["template"]["spec"]["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}
        ]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": "kubernetes.io/hostname"}
        ]},
    }
    return dep


def test_cordon_and_operator_rollback(admin: Admin, make_runner, audit: AuditLog) -> None:
    with restore_nodes(admin, "cpu-1"):
        runner = make_runner()
        req = request("kubernetes.cordon", "Node", "cpu-1")
        out = asyncio.run(runner.run(req))
        assert out.status == "verified", out
        assert _unschedulable(admin, "cpu-1")
        rb = asyncio.run(runner.rollback(req, out.before or {}))
        assert rb.status == "rolled_back", rb
        assert audit.kinds(req.action_id)[-1] == "action.rolled_back"
        assert not _unschedulable(admin, "cpu-1")


def test_rollback_keeps_a_node_cordoned_by_someone_else(admin: Admin, make_runner, audit: AuditLog) -> None:
    with restore_nodes(admin, "cpu-2"):
        admin.set_unschedulable("cpu-2", True)
        runner = make_runner()
        req = request("kubernetes.cordon", "Node", "cpu-2")
        out = asyncio.run(runner.run(req))
        assert out.status == "verified" and out.before == {"unschedulable": True, "gpu": False}
        rb = asyncio.run(runner.rollback(req, out.before))
        # a rollback that crashed or failed must fail this test, not pass as "still cordoned"
        assert rb.status == "rolled_back", rb
        assert rb.after is not None and rb.after["unschedulable"] is True and rb.after["changed"] is False
        assert audit.kinds(req.action_id)[-1] == "action.rolled_back"
        assert _unschedulable(admin, "cpu-2")


def test_drain_evicts_and_skips_daemonsets(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, _pinned("web", ["cpu-1", "cpu-2"], 2))
    admin.create(namespace, daemonset("agent"))
    admin.wait_ready(namespace, "Deployment", "web", 2)
    admin.wait("daemonset pod on cpu-1", lambda: len(admin.pods(namespace, "app=agent", node="cpu-1")) == 1)
    with restore_nodes(admin, "cpu-1"):
        runner = make_runner()
        req = request("kubernetes.drain", "Node", "cpu-1", with_={"timeout_seconds": 30})
        out = asyncio.run(runner.run(req))
        assert out.status == "verified", out
        assert out.after is not None and len(out.after["evicted"]) == 1
        assert {s["why"] for s in out.after["skipped"]} >= {"daemonset"}
        assert admin.pods(namespace, "app=web", node="cpu-1") == []
        assert len(admin.pods(namespace, "app=agent", node="cpu-1")) == 1  # DaemonSet pod stays
        assert _unschedulable(admin, "cpu-1")
        rb = asyncio.run(runner.rollback(req, out.before or {}))
        assert rb.status == "rolled_back" and rb.after and rb.after["evicted_pods_restored"] is False
        assert not _unschedulable(admin, "cpu-1")


def test_drain_blocked_by_pdb_is_rolled_back(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, deployment("solo", replicas=1, node_selector={"kubernetes.io/hostname": "cpu-2"}))
    admin.create(namespace, pdb("solo", "solo", min_available=1))
    admin.wait_ready(namespace, "Deployment", "solo", 1)
    admin.wait("PDB observed", lambda: (admin.j(admin.policy.read_namespaced_pod_disruption_budget(
        "solo", namespace)).get("status") or {}).get("currentHealthy") == 1)
    pod_name = admin.pods(namespace, "app=solo")[0]["metadata"]["name"]
    with restore_nodes(admin, "cpu-2"):
        req = request("kubernetes.drain", "Node", "cpu-2", with_={"timeout_seconds": 4}, verify_timeout=30)
        out = asyncio.run(make_runner().run(req))
        assert out.status == "rolled_back", out
        assert audit.kinds(req.action_id) == [
            "action.running", "action.succeeded", "action.failed", "action.rolled_back",
        ]
        assert out.after is not None and out.after["blocked"] == [f"{namespace}/{pod_name}"]
        failed = audit.last("action.failed")
        assert failed.detail and failed.detail["blocked"] == [f"{namespace}/{pod_name}"]
        assert failed.detail["eviction_retries"] >= 1
        assert not _unschedulable(admin, "cpu-2")
        assert [p["metadata"]["name"] for p in admin.pods(namespace, "app=solo")] == [pod_name]


def test_gpu_blast_radius_refuses(admin: Admin, make_runner, audit: AuditLog) -> None:
    """3 GPU nodes, one already cordoned: a second one would be 2/3 > 0.34 -> refused."""
    with restore_nodes(admin, "gpu-1", "gpu-2"):
        admin.set_unschedulable("gpu-1", True)
        req = request("kubernetes.cordon", "Node", "gpu-2", with_={"max_unschedulable_fraction": 0.34})
        out = asyncio.run(make_runner().run(req))
        assert out.status == "failed", out
        assert out.reason and "GPU nodes would be unschedulable" in out.reason
        assert out.detail["refused"] == "gpu_blast_radius"
        assert not _unschedulable(admin, "gpu-2")
        # Allowed with a wider budget.
        ok = asyncio.run(make_runner().run(
            request("kubernetes.drain", "Node", "gpu-2", with_={"max_unschedulable_fraction": 0.7})
        ))
        assert ok.status == "verified", ok


def test_drain_refuses_node_with_unmanaged_pod(namespace: str, admin: Admin, make_runner) -> None:
    admin.create(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pet"},
        "spec": {"nodeName": "cpu-3", "containers": [{"name": "c", "image": "x"}]},
    })
    with restore_nodes(admin, "cpu-3"):
        out = asyncio.run(make_runner().run(request("kubernetes.drain", "Node", "cpu-3")))
        assert out.status == "failed" and out.reason and "no controller" in out.reason
        assert not _unschedulable(admin, "cpu-3")  # refused before cordoning
