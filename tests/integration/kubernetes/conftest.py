"""Fixtures for the Kubernetes integration tests: one real control plane per session
(etcd + kube-apiserver + controller-manager + scheduler + kwok, see tests/harness/kubecluster.py),
a namespace per test, an admin client for setup, and runners whose executors act as the
``healer`` user bound only to deploy/rbac/clusterrole.yaml (so the shipped RBAC is exercised).

The first session builds the binaries from the Go module proxy (minutes; cached afterwards).
Tests skip, with the reason, only when the Go toolchain is absent and nothing is cached; under
CI (``CI`` set) that is a failure instead.
"""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from actions.kubernetes import kubernetes_executors  # noqa: E402
from actions.registry import ExecutorRegistry  # noqa: E402
from actions.runner import RetryPolicy, Runner  # noqa: E402
from tests.harness.kube.faultproxy import FaultProxy  # noqa: E402
from tests.harness.kubecluster import KubeCluster  # noqa: E402
from tests.harness.kubeobjects import Admin, AuditLog  # noqa: E402

FAST_RETRY = RetryPolicy(attempts=5, max_seconds=30, initial_wait=0.1, max_wait=1.0, step_timeout=30)


@pytest.fixture
def namespace(kube_cluster: KubeCluster, admin: Admin, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    admin.core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    admin.wait("default service account", lambda: _has_default_sa(admin, name), 30)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            admin.core.delete_namespace(name)


def _has_default_sa(admin: Admin, ns: str) -> bool:
    try:
        admin.core.read_namespaced_service_account("default", ns)
        return True
    except Exception:
        return False


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog()


RunnerFactory = Callable[..., Runner]


@pytest.fixture
def make_runner(kube_cluster: KubeCluster, admin: Admin, audit: AuditLog, tmp_path: Path) -> Iterator[RunnerFactory]:
    """Build a Runner over fresh Kubernetes executors; ``user`` picks the credentials and
    ``server`` lets a test point the executors at the fault proxy."""
    registries: list[ExecutorRegistry] = []

    def factory(
        user: str = "healer", server: str | None = None, retry: RetryPolicy = FAST_RETRY, **kw: Any
    ) -> Runner:
        path = tmp_path / f"{user}-{len(registries)}.kubeconfig"
        kube_cluster.write_kubeconfig(path, user, server=server)
        registry = ExecutorRegistry()
        registry.register_all(kubernetes_executors(kubeconfig=str(path), **kw))
        registries.append(registry)
        return Runner(registry, audit, retry=retry)

    yield factory
    import asyncio

    for reg in registries:
        asyncio.run(reg.close())


@pytest.fixture
def fault_proxy(kube_cluster: KubeCluster) -> Iterator[FaultProxy]:
    proxy = FaultProxy(kube_cluster.server, kube_cluster.ca_file).start()
    try:
        yield proxy
    finally:
        proxy.stop()
