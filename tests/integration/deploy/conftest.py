"""Fixtures for the deploy/ tests: the Helm CLI (built from the Go module proxy, cached), a
renderer for deploy/helm/healer, and a real kube-apiserver for server-side dry runs.

``helm`` builds Helm once with deploy/tools/install-helm.sh (minutes the first time, cached in
~/.cache/healer/bin). Without Go and without a cached binary the chart tests skip with the
reason; under CI (``CI`` set) that is a failure. ``apiserver`` is the session's ``kube_cluster``
when a conftest/plugin above this directory provides it, else a control plane of the same
harness (tests/harness/kubecluster.py) started for the requesting module and stopped after it,
so it never runs alongside the Kubernetes tests' own cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "healer"
INSTALL_HELM = ROOT / "deploy" / "tools" / "install-helm.sh"
HELM_BUILD_TIMEOUT_S = 3600

Render = Callable[..., list[dict[str, Any]]]


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of a helm binary (built from source via the Go module proxy, cached by version)."""
    proc = subprocess.run(
        ["bash", str(INSTALL_HELM)], capture_output=True, text=True,
        timeout=HELM_BUILD_TIMEOUT_S, check=False,
    )
    if proc.returncode == 3:
        _missing(f"cannot build helm: {proc.stderr.strip()}")
    if proc.returncode != 0:
        pytest.fail(f"install-helm.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    path = proc.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), path
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with a private HOME-like config so no user state leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HELM_CACHE_HOME": "/nonexistent/helm-cache",
        "HELM_CONFIG_HOME": "/nonexistent/helm-config",
        "HELM_DATA_HOME": "/nonexistent/helm-data",
        "KUBECONFIG": "/nonexistent/kubeconfig",
    }
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """``render(values: dict, release=..., namespace=...)`` -> every manifest of the chart."""
    tmp = tmp_path_factory.mktemp("helm-values")

    def _render(values: dict[str, Any] | None = None, release: str = "healer",
                namespace: str = "healer", extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        vfile = tmp / f"values-{len(list(tmp.iterdir()))}.yaml"
        vfile.write_text(yaml.safe_dump(values or {}))
        proc = run_helm(helm, "template", release, str(CHART), "--namespace", namespace,
                        "--values", str(vfile), *extra)
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        assert docs, "helm template rendered nothing"
        return docs

    return _render


@pytest.fixture(scope="module")
def apiserver(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A running tests.harness.kubecluster.KubeCluster (shared when the session has one)."""
    try:
        yield request.getfixturevalue("kube_cluster")
        return
    except pytest.FixtureLookupError:
        pass
    from tests.harness.kubecluster import BINARIES, KubeCluster, cache_dir

    cached = all((cache_dir() / "bin" / b).is_file() for b in BINARIES)
    if not cached and shutil.which("go") is None:
        _missing("Go toolchain not found: cannot build kube-apiserver/etcd/kwok (install Go >= 1.25)")
    cluster = KubeCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
