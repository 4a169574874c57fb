"""Session fixtures for a real Kubernetes control plane (tests/harness/kubecluster.py):
``kube_cluster`` (etcd, kube-apiserver, controller-manager, scheduler, kwok) and ``admin`` (an
admin client; it also binds deploy/rbac/clusterrole.yaml to the ``healer`` user).

Used by tests/integration/kubernetes/conftest.py; an e2e suite can use it as a pytest plugin.
The first session builds the binaries from the Go module proxy (minutes; cached afterwards).
Skips, with the reason, only when the Go toolchain is absent and nothing is cached; under CI
(``CI`` set) that is a failure instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kubecluster import BINARIES, KubeCluster, cache_dir
from tests.harness.kubeobjects import Admin

CLUSTERROLE = Path(__file__).resolve().parents[1] / "deploy" / "rbac" / "clusterrole.yaml"


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    cached = all((cache_dir() / "bin" / b).is_file() for b in BINARIES)
    if not cached and shutil.which("go") is None:
        msg = "Go toolchain not found: cannot build kube-apiserver/etcd/kwok (install Go >= 1.25)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    cluster = KubeCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def admin(kube_cluster: KubeCluster) -> Iterator[Admin]:
    a = Admin(kube_cluster.kubeconfig("admin"))
    a.bind_cluster_role(CLUSTERROLE, "healer")
    try:
        yield a
    finally:
        a.close()
