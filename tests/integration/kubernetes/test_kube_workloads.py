"""kubernetes.scale / restart / delete_pod against a real kube-apiserver (pods made Ready by
kwok), driven through actions.runner.Runner with the executors acting as the least-privileged
``healer`` user."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.kubecluster import NEVER_READY_ANNOTATION
from tests.harness.kubeobjects import Admin, AuditLog, deployment, request, statefulset

pytestmark = pytest.mark.integration


def test_scale_deployment_verified_and_rolled_back_on_demand(
    namespace: str, admin: Admin, make_runner, audit: AuditLog
) -> None:
    admin.create(namespace, deployment("web", replicas=1))
    admin.wait_ready(namespace, "Deployment", "web", 1)
    runner = make_runner()
    req = request("kubernetes.scale", "Deployment", "web", namespace, {"replicas": "+2", "max": 5})
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    assert out.before is not None and out.before["replicas"] == 1
    assert out.after is not None and out.after["replicas"] == 3
    assert audit.kinds(req.action_id) == ["action.running", "action.succeeded", "action.verified"]
    st = admin.workload(namespace, "Deployment", "web")
    assert st["spec"]["replicas"] == 3 and st["status"]["readyReplicas"] == 3

    # Operator rollback restores the snapshot.
    rb = asyncio.run(runner.rollback(req, out.before, actor="user:test"))
    assert rb.status == "rolled_back", rb
    assert admin.workload(namespace, "Deployment", "web")["spec"]["replicas"] == 1
    assert audit.kinds(req.action_id)[-1] == "action.rolled_back"


def test_scale_statefulset(namespace: str, admin: Admin, make_runner) -> None:
    admin.create(namespace, statefulset("db", replicas=1))
    admin.wait_ready(namespace, "StatefulSet", "db", 1)
    out = asyncio.run(make_runner().run(
        request("kubernetes.scale", "StatefulSet", "db", namespace, {"replicas": "x3", "max": 4})
    ))
    assert out.status == "verified", out
    assert admin.workload(namespace, "StatefulSet", "db")["status"]["readyReplicas"] == 3


def test_scale_never_ready_is_rolled_back(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    """Pods that never become Ready: verification fails, the runner restores the replicas."""
    admin.create(namespace, deployment("stuck", replicas=1, never_ready=True))
    admin.wait("1 pod exists", lambda: len(admin.pods(namespace, "app=stuck")) == 1)
    req = request("kubernetes.scale", "Deployment", "stuck", namespace, {"replicas": "3"}, verify_timeout=4)
    out = asyncio.run(make_runner().run(req))
    assert out.status == "rolled_back", out
    assert audit.kinds(req.action_id) == [
        "action.running", "action.succeeded", "action.failed", "action.rolled_back",
    ]
    failed = audit.last("action.failed")
    assert failed.reason and "verification failed" in failed.reason
    assert failed.detail and failed.detail["phase"] == "verify" and failed.detail["readyReplicas"] == 0
    assert admin.workload(namespace, "Deployment", "stuck")["spec"]["replicas"] == 1
    admin.wait("scale-down done", lambda: len(admin.pods(namespace, "app=stuck")) == 1)


def test_scale_unschedulable_pods_rolled_back(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    """New pods the scheduler cannot place (pinned to one node without room for a second)
    stay Pending -> verification fails -> rolled back to the one Ready replica."""
    admin.create(namespace, deployment(
        "big", replicas=1, cpu="20", node_selector={"kubernetes.io/hostname": "gpu-3"}
    ))
    admin.wait_ready(namespace, "Deployment", "big", 1)
    req = request("kubernetes.scale", "Deployment", "big", namespace, {"replicas": "+1"}, verify_timeout=4)
    out = asyncio.run(make_runner().run(req))
    assert out.status == "rolled_back", out
    assert admin.workload(namespace, "Deployment", "big")["spec"]["replicas"] == 1
    rolled = audit.last("action.rolled_back")
    assert rolled.after is not None and rolled.after["ready_replicas"] == 1


def test_restart_is_idempotent_per_action(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, deployment("api", replicas=2))
    admin.wait_ready(namespace, "Deployment", "api", 2)
    old = {p["metadata"]["name"] for p in admin.pods(namespace, "app=api")}
    runner = make_runner()
    req = request("kubernetes.restart", "Deployment", "api", namespace, action_id="restart-api-1")
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    dep = admin.workload(namespace, "Deployment", "api")
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["healer.io/restart-action"] == "restart-api-1"
    admin.wait("old pods gone", lambda: not old & {p["metadata"]["name"] for p in admin.pods(namespace, "app=api")})
    generation = dep["metadata"]["generation"]
    pods_after = {p["metadata"]["name"] for p in admin.pods(namespace, "app=api")}

    # The same action again (a redelivery): nothing is written, no second rollout.
    again = asyncio.run(runner.run(req))
    assert again.status == "verified", again
    assert again.after is not None and again.after["changed"] is False
    assert admin.workload(namespace, "Deployment", "api")["metadata"]["generation"] == generation
    assert {p["metadata"]["name"] for p in admin.pods(namespace, "app=api")} == pods_after


def test_restart_statefulset(namespace: str, admin: Admin, make_runner) -> None:
    admin.create(namespace, statefulset("kv", replicas=2))
    admin.wait_ready(namespace, "StatefulSet", "kv", 2)
    uids = {p["metadata"]["uid"] for p in admin.pods(namespace, "app=kv")}
    out = asyncio.run(make_runner().run(request("kubernetes.restart", "StatefulSet", "kv", namespace)))
    assert out.status == "verified", out
    assert not uids & {p["metadata"]["uid"] for p in admin.pods(namespace, "app=kv")}


def test_restart_stalled_rollout_fails_without_rollback(
    namespace: str, admin: Admin, make_runner, audit: AuditLog
) -> None:
    """The new pod cannot be scheduled (no room next to the old one on its only node) and
    maxUnavailable=0 keeps the old one: the rollout never completes. restart is not
    reversible, so the action ends failed, audited, without a rollback attempt."""
    admin.create(namespace, deployment(
        "pinned", replicas=1, cpu="20", node_selector={"kubernetes.io/hostname": "cpu-3"},
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    ))
    admin.wait_ready(namespace, "Deployment", "pinned", 1)
    req = request("kubernetes.restart", "Deployment", "pinned", namespace, verify_timeout=4)
    out = asyncio.run(make_runner().run(req))
    assert out.status == "failed", out
    assert out.reason and "rollout complete not reached" in out.reason
    assert audit.kinds(req.action_id) == ["action.running", "action.succeeded", "action.failed"]


def test_delete_pod_replacement_ready(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, deployment("worker", replicas=2))
    admin.wait_ready(namespace, "Deployment", "worker", 2)
    victim = admin.pods(namespace, "app=worker")[0]["metadata"]
    req = request("kubernetes.delete_pod", "Pod", victim["name"], namespace)
    out = asyncio.run(make_runner().run(req))
    assert out.status == "verified", out
    assert out.detail["old_pod_gone"] is True and out.detail["ready_replacements"]
    names = {p["metadata"]["name"] for p in admin.pods(namespace, "app=worker")}
    assert victim["name"] not in names and len(names) == 2


def test_delete_statefulset_pod_same_name_new_uid(namespace: str, admin: Admin, make_runner) -> None:
    admin.create(namespace, statefulset("ss", replicas=1))
    admin.wait_ready(namespace, "StatefulSet", "ss", 1)
    old_uid = admin.pods(namespace, "app=ss")[0]["metadata"]["uid"]
    out = asyncio.run(make_runner().run(request("kubernetes.delete_pod", "Pod", "ss-0", namespace)))
    assert out.status == "verified", out
    pod = admin.pods(namespace, "app=ss")[0]
    assert pod["metadata"]["name"] == "ss-0" and pod["metadata"]["uid"] != old_uid


def test_delete_bare_pod_refused(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely"},
        "spec": {"nodeName": "cpu-3", "containers": [{"name": "c", "image": "x"}]},
    })
    req = request("kubernetes.delete_pod", "Pod", "lonely", namespace)
    out = asyncio.run(make_runner().run(req))
    assert out.status == "failed" and out.reason and "no controller" in out.reason
    assert audit.kinds(req.action_id) == ["action.running", "action.failed"]
    assert admin.j(admin.core.read_namespaced_pod("lonely", namespace))["metadata"]["name"] == "lonely"


def test_never_ready_annotation_is_what_blocks_readiness(namespace: str, admin: Admin) -> None:
    """Guard for the tests above: the kwok stage really keeps such pods un-Ready."""
    admin.create(namespace, deployment("probe", replicas=1, never_ready=True))
    admin.wait("pod bound", lambda: any(
        p["spec"].get("nodeName") for p in admin.pods(namespace, "app=probe")
    ))
    pod = admin.pods(namespace, "app=probe")[0]
    assert pod["metadata"]["annotations"][NEVER_READY_ANNOTATION] == "true"
    assert admin.workload(namespace, "Deployment", "probe")["status"].get("readyReplicas", 0) == 0


def test_delete_pod_replacement_never_ready_fails_verification(
    namespace: str, admin: Admin, make_runner, audit: AuditLog
) -> None:
    """The pods' only node is cordoned after they run: the replacement of the deleted pod stays
    Pending, verification times out, and (delete_pod is not reversible) the action ends failed
    with the timeout in the reason, without a rollback attempt."""
    admin.create(namespace, deployment("onenode", replicas=2, node_selector={"kubernetes.io/hostname": "cpu-3"}))
    admin.wait_ready(namespace, "Deployment", "onenode", 2)
    victim = admin.pods(namespace, "app=onenode")[0]["metadata"]["name"]
    admin.set_unschedulable("cpu-3", True)
    try:
        req = request("kubernetes.delete_pod", "Pod", victim, namespace, verify_timeout=3)
        out = asyncio.run(make_runner().run(req))
        assert out.status == "failed", out
        assert audit.kinds(req.action_id) == ["action.running", "action.succeeded", "action.failed"]
        failed = audit.last("action.failed")
        assert failed.reason == "verification failed: a Ready replacement pod not reached within 3s", failed.reason
        assert failed.detail is not None and failed.detail["phase"] == "verify"
        assert failed.detail["old_pod_gone"] is True and failed.detail["ready_replacements"] == []
        (replacement,) = failed.detail["replacements"]
        pod = admin.j(admin.core.read_namespaced_pod(replacement, namespace))
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    finally:
        admin.set_unschedulable("cpu-3", False)
