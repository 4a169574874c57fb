"""Error handling against the real apiserver, through the fault-injecting proxy
(tests/harness/kube/faultproxy.py): 5xx/429/timeouts retried by the runner, 409 conflicts
(injected and real) re-read and re-applied by the executor, 403 permanent without retries,
and the safety refusals (namespaces, kube-system, bounds)."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.kube.faultproxy import Fault, FaultProxy
from tests.harness.kubeobjects import Admin, AuditLog, deployment, request

pytestmark = pytest.mark.integration

SCALE_PATH = r"/deployments/web/scale"


@pytest.fixture
def web(namespace: str, admin: Admin) -> str:
    admin.create(namespace, deployment("web", replicas=1))
    admin.wait_ready(namespace, "Deployment", "web", 1)
    return namespace


def test_5xx_on_snapshot_and_write_retried(web: str, admin: Admin, make_runner, fault_proxy: FaultProxy, audit: AuditLog) -> None:
    get_faults = fault_proxy.add(Fault(status=500, method="GET", path=SCALE_PATH, first=2))
    put_faults = fault_proxy.add(Fault(status=503, method="PUT", path=SCALE_PATH, first=1))
    runner = make_runner(server=fault_proxy.url)
    req = request("kubernetes.scale", "Deployment", "web", web, {"replicas": "2"})
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    assert get_faults.injected == 2 and put_faults.injected == 1
    assert fault_proxy.count("PUT", SCALE_PATH, injected=False) == 1  # exactly one real write
    assert admin.workload(web, "Deployment", "web")["status"]["readyReplicas"] == 2
    assert audit.kinds(req.action_id) == ["action.running", "action.succeeded", "action.verified"]


def test_429_retried(web: str, make_runner, fault_proxy: FaultProxy) -> None:
    fault = fault_proxy.add(Fault(status=429, method="PATCH", path=r"/deployments/web$", first=2))
    out = asyncio.run(make_runner(server=fault_proxy.url).run(
        request("kubernetes.restart", "Deployment", "web", web)
    ))
    assert out.status == "verified", out
    assert fault.injected == 2


def test_injected_conflicts_reread_and_reapplied(web: str, admin: Admin, make_runner, fault_proxy: FaultProxy) -> None:
    fault = fault_proxy.add(Fault(status=409, method="PUT", path=SCALE_PATH, first=2))
    out = asyncio.run(make_runner(server=fault_proxy.url).run(
        request("kubernetes.scale", "Deployment", "web", web, {"replicas": "+1"})
    ))
    assert out.status == "verified", out
    assert fault.injected == 2
    assert out.after is not None and out.after["conflicts"] == 2
    # one GET for the snapshot, then one per write attempt (initial + 2 re-reads)
    assert fault_proxy.count("GET", SCALE_PATH) == 4
    assert admin.workload(web, "Deployment", "web")["spec"]["replicas"] == 2


def test_real_conflict_from_a_concurrent_writer(web: str, admin: Admin, make_runner, fault_proxy: FaultProxy) -> None:
    """Just before the executor's write reaches the apiserver, another writer changes the
    Deployment: the apiserver itself answers 409 (stale resourceVersion)."""

    def concurrent_writer(method: str, path: str) -> None:
        admin.apps.patch_namespaced_deployment(
            "web", web, {"metadata": {"annotations": {"someone/else": "was-here"}}},
            _content_type="application/merge-patch+json",
        )

    fault_proxy.add(Fault(status=0, method="PUT", path=SCALE_PATH, first=1, before=concurrent_writer))
    out = asyncio.run(make_runner(server=fault_proxy.url).run(
        request("kubernetes.scale", "Deployment", "web", web, {"replicas": "3"})
    ))
    assert out.status == "verified", out
    real_409 = [r for r in fault_proxy.requests if r.status == 409 and not r.injected]
    assert len(real_409) == 1 and out.after is not None and out.after["conflicts"] == 1
    dep = admin.workload(web, "Deployment", "web")
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["annotations"]["someone/else"] == "was-here"


def test_read_timeout_retried(web: str, make_runner, fault_proxy: FaultProxy) -> None:
    fault = fault_proxy.add(Fault(status=0, method="GET", path=SCALE_PATH, first=1, delay=2.0))
    out = asyncio.run(make_runner(server=fault_proxy.url, request_timeout=0.5).run(
        request("kubernetes.scale", "Deployment", "web", web, {"replicas": "1"})
    ))
    assert out.status == "verified", out
    assert fault.injected == 1


def test_persistent_5xx_fails_after_bounded_attempts(web: str, make_runner, fault_proxy: FaultProxy, audit: AuditLog) -> None:
    fault_proxy.add(Fault(status=500, method="GET", path=SCALE_PATH))
    req = request("kubernetes.scale", "Deployment", "web", web, {"replicas": "2"})
    out = asyncio.run(make_runner(server=fault_proxy.url).run(req))
    assert out.status == "failed"
    assert out.detail["attempts"] == 5 and fault_proxy.count("GET", SCALE_PATH) == 5
    assert audit.kinds(req.action_id) == ["action.running", "action.failed"]


def test_forbidden_fails_without_retries(web: str, make_runner, fault_proxy: FaultProxy, audit: AuditLog) -> None:
    req = request("kubernetes.scale", "Deployment", "web", web, {"replicas": "2"})
    out = asyncio.run(make_runner(user="nobody", server=fault_proxy.url).run(req))
    assert out.status == "failed"
    assert fault_proxy.count() == 1  # one request, no retry
    assert out.detail["status"] == 403
    failed = audit.last("action.failed")
    assert failed.reason and 'User "nobody" cannot get resource "deployments/scale"' in failed.reason


def test_not_found_is_permanent(namespace: str, make_runner, fault_proxy: FaultProxy) -> None:
    out = asyncio.run(make_runner(server=fault_proxy.url).run(
        request("kubernetes.scale", "Deployment", "ghost", namespace, {"replicas": "2"})
    ))
    assert out.status == "failed" and out.detail["status"] == 404
    assert fault_proxy.count() == 1


# ---- safety refusals (nothing reaches the apiserver) ------------------------------------------

def test_namespace_outside_allow_list_refused(web: str, admin: Admin, make_runner, fault_proxy: FaultProxy) -> None:
    runner = make_runner(server=fault_proxy.url, allowed_namespaces=["llm-*"])
    out = asyncio.run(runner.run(request("kubernetes.scale", "Deployment", "web", web, {"replicas": "3"})))
    assert out.status == "failed" and out.detail["refused"] == "namespace_not_allowed"
    assert fault_proxy.count() == 0
    assert admin.workload(web, "Deployment", "web")["spec"]["replicas"] == 1


def test_kube_system_refused_unless_allowed(make_runner, fault_proxy: FaultProxy) -> None:
    out = asyncio.run(make_runner(server=fault_proxy.url, allowed_namespaces=["*"]).run(
        request("kubernetes.restart", "Deployment", "coredns", "kube-system")
    ))
    assert out.status == "failed" and out.detail["refused"] == "kube_system"
    assert fault_proxy.count() == 0
    # Explicitly allowed: the request goes out (and finds no such deployment here).
    out2 = asyncio.run(make_runner(server=fault_proxy.url, allow_kube_system=True).run(
        request("kubernetes.restart", "Deployment", "coredns", "kube-system")
    ))
    assert out2.status == "failed" and out2.detail["status"] == 404


def test_scale_above_max_refused(web: str, admin: Admin, make_runner) -> None:
    out = asyncio.run(make_runner().run(
        request("kubernetes.scale", "Deployment", "web", web, {"replicas": "12", "max": 10})
    ))
    assert out.status == "failed" and out.detail["refused"] == "bounds"
    assert admin.workload(web, "Deployment", "web")["spec"]["replicas"] == 1


def test_dry_run_changes_nothing(web: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    req = request("kubernetes.scale", "Deployment", "web", web, {"replicas": "+2"})
    req = req.model_copy(update={"dry_run": True})
    out = asyncio.run(make_runner().run(req))
    assert out.status == "succeeded" and out.detail["would"] == {"replicas": {"from": 1, "to": 3}}
    assert admin.workload(web, "Deployment", "web")["spec"]["replicas"] == 1
