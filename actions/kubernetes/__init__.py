"""Kubernetes executors (official ``kubernetes`` client): scale, restart, delete_pod, reroute,
cordon, drain.

The worker (``streams``) and the CLI call :func:`kubernetes_executors` and register the result
in an ``actions.registry.ExecutorRegistry``; the runner drives them. All executors of one
factory call share one set of API clients (one per kubeconfig context) and one namespace guard.
"""

from __future__ import annotations

from actions.base import Executor
from actions.kubernetes.client import ApiCall, KubeClients
from actions.kubernetes.executor import KubeExecutor
from actions.kubernetes.nodes import CordonExecutor, DrainExecutor
from actions.kubernetes.safety import NamespaceGuard
from actions.kubernetes.traffic import RerouteExecutor
from actions.kubernetes.workloads import DeletePodExecutor, RestartExecutor, ScaleExecutor

EXECUTOR_CLASSES: tuple[type[KubeExecutor], ...] = (
    ScaleExecutor,
    RestartExecutor,
    DeletePodExecutor,
    RerouteExecutor,
    CordonExecutor,
    DrainExecutor,
)


def kubernetes_executors(
    kubeconfig: str | None = None,
    context: str | None = None,
    allowed_namespaces: list[str] | None = None,
    allow_kube_system: bool = False,
    request_timeout: float = 15.0,
) -> list[Executor]:
    """One instance of every Kubernetes executor.

    ``kubeconfig``/``context``: credentials; ``None`` means the in-cluster service account when
    running in a pod, else the default kubeconfig. ``allowed_namespaces``: globs the executors
    may act in (``None``: all); kube-system only with ``allow_kube_system``.
    """
    clients = KubeClients(kubeconfig=kubeconfig, context=context, request_timeout=request_timeout)
    guard = NamespaceGuard(
        allowed=tuple(allowed_namespaces) if allowed_namespaces is not None else None,
        allow_kube_system=allow_kube_system,
    )
    executors: list[Executor] = [cls(clients, guard) for cls in EXECUTOR_CLASSES]
    return executors


def declared_api_calls(cluster_scoped: bool = True) -> frozenset[ApiCall]:
    """The union of the executors' API calls (only namespaced executors when not cluster_scoped)."""
    out: set[ApiCall] = set()
    for cls in EXECUTOR_CLASSES:
        if cluster_scoped or not cls.cluster_scoped:
            out |= cls.api_calls
    return frozenset(out)


__all__ = [
    "EXECUTOR_CLASSES",
    "CordonExecutor",
    "DeletePodExecutor",
    "DrainExecutor",
    "KubeClients",
    "NamespaceGuard",
    "RerouteExecutor",
    "RestartExecutor",
    "ScaleExecutor",
    "declared_api_calls",
    "kubernetes_executors",
]
