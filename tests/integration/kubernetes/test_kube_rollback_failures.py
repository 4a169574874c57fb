"""Rollbacks that fail, against the real apiserver through the fault proxy
(tests/harness/kube/faultproxy.py), for every reversible Kubernetes executor (scale, reroute
on an HTTPRoute and on a Service, cordon, drain):

* a 403 on the rollback write: ``action.rollback_failed`` with the apiserver's reason, one
  write attempt (permanent errors are not retried), the object left as the action set it;
* 429 / 503 / 500 on the write and a 503 on the read-back after it: retried (attempts counted
  at the proxy), then ``action.rolled_back`` and the object restored;
* persistent 5xx: bounded attempts, then ``action.rollback_failed``;
* a rollback whose verification times out (reads failing, or another writer undoing it).

The same through a real ``healer run`` worker and the ``healer rollback`` CLI is in
``test_kube_rollback_cli.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actions.runner import Outcome, Runner
from healer.models import ActionRequest, VerifySpec
from tests.harness.kube.faultproxy import Fault, FaultProxy
from tests.harness.kubeobjects import Admin, AuditLog, deployment, httproute, request, service
from tests.integration.kubernetes.conftest import FAST_RETRY

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    """One reversible executor: how to set it up, the rollback's write and read-back, its state."""

    id: str
    setup: Callable[[Admin, str], ActionRequest]
    state: Callable[[Admin, str], Any]
    write: str  # HTTP method of the rollback's write
    path: str  # regex of the written object's path
    read_path: str  # regex of what the rollback's verification reads
    node: str | None = None


def _obj(name: str) -> str:
    return rf"/{name}(\?|$)"


def _scale_setup(admin: Admin, ns: str) -> ActionRequest:
    admin.create(ns, deployment("web", replicas=1))
    admin.wait_ready(ns, "Deployment", "web", 1)
    return request("kubernetes.scale", "Deployment", "web", ns, {"replicas": "2"})


def _route_setup(admin: Admin, ns: str) -> ActionRequest:
    admin.create(ns, deployment("stable", replicas=1))
    admin.create(ns, deployment("canary", replicas=1))
    admin.create(ns, service("stable", {"app": "stable"}))
    admin.create(ns, service("canary", {"app": "canary"}))
    admin.create(ns, httproute("llm", {"stable": 50, "canary": 50}))
    admin.wait_ready(ns, "Deployment", "stable", 1)
    return request("kubernetes.reroute", "HTTPRoute", "llm", ns, {"weights": {"stable": 100, "canary": 0}})


def _route_weights(admin: Admin, ns: str) -> list[int]:
    route: dict[str, Any] = admin.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes", "llm")
    return [ref.get("weight", 1) for ref in route["spec"]["rules"][0]["backendRefs"]]


def _service_setup(admin: Admin, ns: str) -> ActionRequest:
    admin.create(ns, deployment("blue", replicas=1))
    admin.create(ns, deployment("green", replicas=1))
    admin.create(ns, service("front", {"app": "blue"}))
    admin.wait_ready(ns, "Deployment", "green", 1)
    return request("kubernetes.reroute", "Service", "front", ns, {"selector": {"app": "green"}})


def _node_setup(use: str, node: str) -> Callable[[Admin, str], ActionRequest]:
    with_ = {"timeout_seconds": 30} if use == "kubernetes.drain" else {}
    return lambda admin, ns: request(use, "Node", node, with_=with_)


def _unschedulable(node: str) -> Callable[[Admin, str], bool]:
    return lambda admin, ns: bool(admin.node(node).get("spec", {}).get("unschedulable"))


CASES = [
    Case("scale", _scale_setup, lambda a, ns: a.workload(ns, "Deployment", "web")["spec"]["replicas"],
         "PUT", r"/deployments/web/scale(\?|$)", _obj("deployments/web")),
    Case("reroute-httproute", _route_setup, _route_weights, "PUT", _obj("httproutes/llm"),
         _obj("httproutes/llm")),
    Case("reroute-service", _service_setup,
         lambda a, ns: a.j(a.core.read_namespaced_service("front", ns))["spec"]["selector"],
         "PUT", _obj("services/front"), _obj("services/front")),
    Case("cordon", _node_setup("kubernetes.cordon", "cpu-2"), _unschedulable("cpu-2"), "PATCH",
         _obj("nodes/cpu-2"), _obj("nodes/cpu-2"), node="cpu-2"),
    Case("drain", _node_setup("kubernetes.drain", "cpu-1"), _unschedulable("cpu-1"), "PATCH",
         _obj("nodes/cpu-1"), _obj("nodes/cpu-1"), node="cpu-1"),
]


@contextlib.contextmanager
def restored_node(admin: Admin, node: str | None) -> Iterator[None]:
    try:
        yield
    finally:
        if node:
            admin.set_unschedulable(node, False)


def verified(runner: Runner, req: ActionRequest, proxy: FaultProxy) -> Outcome:
    """Run ``req`` to ``verified``, then clear the proxy: what it counts next is the rollback's."""
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    proxy.clear()
    return out


@pytest.fixture
def scaled(namespace: str, admin: Admin, make_runner, fault_proxy: FaultProxy) -> tuple[ActionRequest, Runner, Outcome]:
    """web scaled 1 -> 2 through the proxy, verified."""
    req = _scale_setup(admin, namespace)
    runner = make_runner(server=fault_proxy.url)
    return req, runner, verified(runner, req, fault_proxy)


def arm_once(proxy: FaultProxy, fault: Fault) -> Callable[[str, str, int], None]:
    """An ``after`` hook that adds ``fault`` once, when the first request went through."""
    armed: list[Fault] = []

    def after(method: str, path: str, status: int) -> None:
        if not armed and status < 300:
            armed.append(proxy.add(fault))

    return after


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rollback_write_errors(
    case: Case, namespace: str, admin: Admin, make_runner, fault_proxy: FaultProxy, audit: AuditLog
) -> None:
    with restored_node(admin, case.node):
        req = case.setup(admin, namespace)
        original = case.state(admin, namespace)
        runner = make_runner(server=fault_proxy.url)
        out = verified(runner, req, fault_proxy)
        changed = case.state(admin, namespace)
        assert changed != original

        # permanent: 403 on the write -> rollback_failed at once, the object as the action left it
        fault_proxy.add(Fault(403, method=case.write, path=case.path, message="rollback writes are forbidden"))
        rb = asyncio.run(runner.rollback(req, out.before or {}, actor="user:test", reason="made it worse"))
        assert rb.status == "rollback_failed", rb
        assert fault_proxy.count(case.write, case.path) == 1  # no retry
        failed = audit.last("action.rollback_failed")
        assert failed.action_id == req.action_id and failed.actor == "user:test"
        assert failed.reason and "403 Forbidden: rollback writes are forbidden" in failed.reason, failed.reason
        assert failed.before == out.before and failed.detail and failed.detail["status"] == 403
        assert case.state(admin, namespace) == changed

        # transient: 429, 503, 500 on the write, then a 503 on the first read after the real
        # write -> all retried, the rollback completes
        fault_proxy.clear()
        readback = Fault(503, method="GET", path=case.read_path, first=1)
        fault_proxy.add(Fault(sequence=(429, 503, 500), method=case.write, path=case.path,
                              after=arm_once(fault_proxy, readback)))
        rb = asyncio.run(runner.rollback(req, out.before or {}, actor="user:test"))
        assert rb.status == "rolled_back", (rb.reason, audit.kinds(req.action_id))
        assert fault_proxy.count(case.write, case.path, injected=True) == 3
        assert fault_proxy.count(case.write, case.path, injected=False) == 1
        assert readback.injected == 1
        assert audit.kinds(req.action_id)[-2:] == ["action.rollback_failed", "action.rolled_back"]
        assert case.state(admin, namespace) == original


def test_persistent_5xx_on_the_rollback_gives_up_after_bounded_attempts(
    scaled: tuple[ActionRequest, Runner, Outcome], namespace: str, admin: Admin, fault_proxy: FaultProxy,
    audit: AuditLog,
) -> None:
    req, runner, out = scaled
    fault_proxy.add(Fault(503, method="PUT", path=CASES[0].path))
    rb = asyncio.run(runner.rollback(req, out.before or {}))
    assert rb.status == "rollback_failed", rb
    assert fault_proxy.count("PUT", CASES[0].path) == FAST_RETRY.attempts
    failed = audit.last("action.rollback_failed")
    assert failed.reason and failed.reason.startswith(
        f"rollback failed after {FAST_RETRY.attempts} attempts: update deployments/scale {namespace}/web: "
        "503 ServiceUnavailable"), failed.reason
    assert failed.detail and failed.detail["attempts"] == FAST_RETRY.attempts
    assert admin.workload(namespace, "Deployment", "web")["spec"]["replicas"] == 2


def test_rollback_verification_times_out_when_reads_keep_failing(
    scaled: tuple[ActionRequest, Runner, Outcome], namespace: str, admin: Admin, fault_proxy: FaultProxy,
    audit: AuditLog,
) -> None:
    req, runner, out = scaled
    fault_proxy.add(Fault(500, method="GET", path=CASES[0].read_path))
    short = req.model_copy(update={"verify": VerifySpec(timeout_seconds=3, rollback=True)})
    rb = asyncio.run(runner.rollback(short, out.before or {}))
    assert rb.status == "rollback_failed", rb
    failed = audit.last("action.rollback_failed")
    assert failed.reason == "rollback did not verify: 1 replicas restored not reached within 3s", failed.reason
    assert failed.detail and "500 InternalError" in failed.detail["last_error"]
    # the write itself went through: the verification is what could not confirm it
    assert fault_proxy.count("PUT", CASES[0].path, injected=False) == 1
    assert admin.workload(namespace, "Deployment", "web")["spec"]["replicas"] == 1


def test_cordon_rollback_undone_by_another_writer_does_not_verify(
    admin: Admin, make_runner, fault_proxy: FaultProxy, audit: AuditLog
) -> None:
    """Right after the uncordon reaches the apiserver, someone cordons the node again: the
    rollback's verification never sees it schedulable and says so."""
    case = CASES[3]
    with restored_node(admin, case.node):
        req = case.setup(admin, "")
        runner = make_runner(server=fault_proxy.url)
        out = verified(runner, req, fault_proxy)
        fault_proxy.add(Fault(status=0, method="PATCH", path=case.path, first=1,
                              after=lambda m, p, s: admin.set_unschedulable("cpu-2", True)))
        short = req.model_copy(update={"verify": VerifySpec(timeout_seconds=3, rollback=True)})
        rb = asyncio.run(runner.rollback(short, out.before or {}))
        assert rb.status == "rollback_failed", rb
        failed = audit.last("action.rollback_failed")
        assert failed.reason == "rollback did not verify: node unschedulable=False not reached within 3s"
        assert failed.detail == {"unschedulable": True}
