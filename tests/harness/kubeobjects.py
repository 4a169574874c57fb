"""Test-side helpers for the Kubernetes integration tests: object builders and an admin client
that creates them and waits for them, plus an ``ActionRequest`` builder and an audit sink.

Used by ``tests/integration/kubernetes/`` and ``bench/bench_kube_scale.py``; the executors under
test never use this module (they get their own, least-privileged kubeconfig).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from healer.audit import AuditEntry
from healer.models import ActionRequest, Target, VerifySpec
from tests.harness.kubecluster import NEVER_READY_ANNOTATION

IMAGE = "registry.example/fake:1"  # kwok never pulls images


def labels_for(app: str) -> dict[str, str]:
    return {"app": app}


def pod_template(
    app: str, never_ready: bool = False, node_selector: dict[str, str] | None = None,
    cpu: str | None = None, extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    annotations = {NEVER_READY_ANNOTATION: "true"} if never_ready else {}
    container: dict[str, Any] = {"name": "main", "image": IMAGE}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 0}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "metadata": {"labels": {**labels_for(app), **(extra_labels or {})}, "annotations": annotations},
        "spec": spec,
    }


def deployment(name: str, replicas: int = 1, app: str | None = None, **tpl: Any) -> dict[str, Any]:
    app = app or name
    strategy = tpl.pop("strategy", None)
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels_for(app)},
            "template": pod_template(app, **tpl),
        },
    }
    if strategy:
        obj["spec"]["strategy"] = strategy
    return obj


def statefulset(name: str, replicas: int = 1, **tpl: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels_for(name)},
            "template": pod_template(name, **tpl),
        },
    }


def daemonset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels_for(name)}, "template": pod_template(name)},
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def httproute(name: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]}],
        },
    }


def pdb(name: str, app: str, min_available: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels_for(app)}},
    }


def request(
    use: str, kind: str, name: str, namespace: str | None = None, with_: dict[str, Any] | None = None,
    verify_timeout: float = 30.0, rollback: bool = True, action_id: str | None = None,
) -> ActionRequest:
    return ActionRequest.model_validate({
        "action_id": action_id or f"test-{uuid.uuid4().hex[:12]}",
        "use": use,
        "target": Target.model_validate({"kind": kind, "namespace": namespace, "name": name}),
        "verify": VerifySpec(timeout_seconds=verify_timeout, rollback=rollback),
        "with": with_ or {},
    })


@dataclass
class AuditLog:
    """A list-collecting audit sink for the runner."""

    entries: list[AuditEntry] = field(default_factory=list)

    async def __call__(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def kinds(self, action_id: str | None = None) -> list[str]:
        return [e.kind for e in self.entries if action_id is None or e.action_id == action_id]

    def last(self, kind: str) -> AuditEntry:
        for e in reversed(self.entries):
            if e.kind == kind:
                return e
        raise AssertionError(f"no {kind} in {self.kinds()}")


class Admin:
    """The test's own admin client: creates fixtures and reads state to assert on."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
        )
        self.api_client = k8s.ApiClient(cfg)
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.policy = k8s.PolicyV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.rbac = k8s.RbacAuthorizationV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def j(self, obj: Any) -> Any:
        return self.api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

    def create(self, ns: str, body: dict[str, Any]) -> None:
        # The typed client accepts plain dicts (it validates them into its models).
        obj: Any = body
        kind = body["kind"]
        if kind == "Deployment":
            self.apps.create_namespaced_deployment(ns, obj)
        elif kind == "StatefulSet":
            self.apps.create_namespaced_stateful_set(ns, obj)
        elif kind == "DaemonSet":
            self.apps.create_namespaced_daemon_set(ns, obj)
        elif kind == "Service":
            self.core.create_namespaced_service(ns, obj)
        elif kind == "Pod":
            self.core.create_namespaced_pod(ns, obj)
        elif kind == "PodDisruptionBudget":
            self.policy.create_namespaced_pod_disruption_budget(ns, obj)
        elif kind == "HTTPRoute":
            self.custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", obj)
        else:
            raise ValueError(kind)

    def workload(self, ns: str, kind: str, name: str) -> dict[str, Any]:
        if kind == "Deployment":
            return dict(self.j(self.apps.read_namespaced_deployment(name, ns)))
        return dict(self.j(self.apps.read_namespaced_stateful_set(name, ns)))

    def pods(self, ns: str, selector: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
        kw: dict[str, Any] = {}
        if selector:
            kw["label_selector"] = selector
        if node:
            kw["field_selector"] = f"spec.nodeName={node}"
        return list(self.j(self.core.list_namespaced_pod(ns, **kw)).get("items", []))

    def node(self, name: str) -> dict[str, Any]:
        return dict(self.j(self.core.read_node(name)))

    def set_unschedulable(self, name: str, value: bool) -> None:
        self.core.patch_node(name, {"spec": {"unschedulable": value or None}},
                             _content_type="application/merge-patch+json")

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_ready(self, ns: str, kind: str, name: str, replicas: int, timeout: float = 60.0) -> None:
        def ok() -> bool:
            st = self.workload(ns, kind, name).get("status") or {}
            return bool(st.get("readyReplicas", 0) == replicas and st.get("replicas", 0) == replicas)

        self.wait(f"{kind} {ns}/{name} {replicas} ready", ok, timeout)

    def bind_cluster_role(self, role_yaml: Path, user: str) -> None:
        """Create the ClusterRole from ``role_yaml`` and bind it to ``user`` (idempotent)."""
        import yaml

        role = yaml.safe_load(role_yaml.read_text())
        try:
            self.rbac.create_cluster_role(role)
        except k8s.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
        binding: Any = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{role['metadata']['name']}-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role["metadata"]["name"]},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        try:
            self.rbac.create_cluster_role_binding(binding)
        except k8s.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
