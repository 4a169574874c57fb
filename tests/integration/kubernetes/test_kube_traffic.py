"""kubernetes.reroute against a real kube-apiserver: HTTPRoute weights (minimal Gateway API CRD)
and Service selector switches, verified against real EndpointSlices (controller-manager) of
pods made Ready by kwok."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness.kubeobjects import Admin, AuditLog, deployment, httproute, request, service

pytestmark = pytest.mark.integration


def _weights(admin: Admin, ns: str, name: str) -> list[int]:
    route: dict[str, Any] = admin.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes", name
    )
    return [ref.get("weight", 1) for ref in route["spec"]["rules"][0]["backendRefs"]]


def _backends(admin: Admin, ns: str, canary_ready: bool = True) -> None:
    admin.create(ns, deployment("stable", replicas=2))
    admin.create(ns, deployment("canary", replicas=1, never_ready=not canary_ready))
    admin.create(ns, service("stable", {"app": "stable"}))
    admin.create(ns, service("canary", {"app": "canary"}))
    admin.wait_ready(ns, "Deployment", "stable", 2)


def test_httproute_shift_to_stable_and_back(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    _backends(admin, namespace)
    admin.create(namespace, httproute("llm", {"stable": 50, "canary": 50}))
    runner = make_runner()
    req = request("kubernetes.reroute", "HTTPRoute", "llm", namespace, {"weights": {"stable": 100, "canary": 0}})
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    assert _weights(admin, namespace, "llm") == [100, 0]
    # verify passes once the backend has a Ready endpoint (the slice may not list both yet)
    assert out.detail["ready_endpoints"][f"{namespace}/stable"] >= 1
    assert out.before is not None and [r["weight"] for r in out.before["weights"][0]] == [50, 50]

    rb = asyncio.run(runner.rollback(req, out.before, actor="user:test"))
    assert rb.status == "rolled_back", rb
    assert _weights(admin, namespace, "llm") == [50, 50]


def test_httproute_to_backend_without_ready_endpoints_rolls_back(
    namespace: str, admin: Admin, make_runner, audit: AuditLog
) -> None:
    _backends(admin, namespace, canary_ready=False)
    admin.create(namespace, httproute("llm", {"stable": 90, "canary": 10}))
    req = request(
        "kubernetes.reroute", "HTTPRoute", "llm", namespace,
        {"weights": {"stable": 0, "canary": 100}}, verify_timeout=4,
    )
    out = asyncio.run(make_runner().run(req))
    assert out.status == "rolled_back", out
    assert audit.kinds(req.action_id) == [
        "action.running", "action.succeeded", "action.failed", "action.rolled_back",
    ]
    assert audit.last("action.failed").detail["ready_endpoints"] == {f"{namespace}/canary": 0}
    assert _weights(admin, namespace, "llm") == [90, 10]


def test_httproute_unknown_backend_is_permanent(namespace: str, admin: Admin, make_runner) -> None:
    _backends(admin, namespace)
    admin.create(namespace, httproute("llm", {"stable": 1}))
    out = asyncio.run(make_runner().run(
        request("kubernetes.reroute", "HTTPRoute", "llm", namespace, {"weights": {"blue": 100}})
    ))
    assert out.status == "failed" and out.reason and "not in the selected" in out.reason
    assert _weights(admin, namespace, "llm") == [1]


def test_service_selector_switch(namespace: str, admin: Admin, make_runner, audit: AuditLog) -> None:
    admin.create(namespace, deployment("blue", replicas=1))
    admin.create(namespace, deployment("green", replicas=2))
    admin.create(namespace, service("front", {"app": "blue"}))
    admin.wait_ready(namespace, "Deployment", "green", 2)
    runner = make_runner()
    req = request("kubernetes.reroute", "Service", "front", namespace, {"selector": {"app": "green"}})
    out = asyncio.run(runner.run(req))
    assert out.status == "verified", out
    green = {p["metadata"]["name"] for p in admin.pods(namespace, "app=green")}
    assert out.detail["ready_endpoints"] and set(out.detail["ready_endpoints"]) <= green
    assert out.before == {"kind": "Service", "selector": {"app": "blue"}}

    rb = asyncio.run(runner.rollback(req, out.before))
    assert rb.status == "rolled_back"
    svc = admin.j(admin.core.read_namespaced_service("front", namespace))
    assert svc["spec"]["selector"] == {"app": "blue"}


def test_service_selector_without_ready_pods_rolls_back(
    namespace: str, admin: Admin, make_runner, audit: AuditLog
) -> None:
    admin.create(namespace, deployment("blue", replicas=1))
    admin.create(namespace, deployment("broken", replicas=1, never_ready=True))
    admin.create(namespace, service("front", {"app": "blue"}))
    admin.wait_ready(namespace, "Deployment", "blue", 1)
    req = request(
        "kubernetes.reroute", "Service", "front", namespace, {"selector": {"app": "broken"}}, verify_timeout=4
    )
    out = asyncio.run(make_runner().run(req))
    assert out.status == "rolled_back", out
    svc = admin.j(admin.core.read_namespaced_service("front", namespace))
    assert svc["spec"]["selector"] == {"app": "blue"}
