"""Safety checks of the Kubernetes executors: namespace allow-list and GPU blast radius.

Pure functions over plain API objects (dicts as the API server returns them), so they are
unit-tested without a cluster. The executors call them before they change anything; a
refusal is a PermanentError whose message says which rule refused and how to allow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from actions.base import PermanentError

KUBE_SYSTEM = "kube-system"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"


@dataclass(frozen=True)
class NamespaceGuard:
    """Which namespaces the executors may act in.

    ``allowed`` are globs (``fnmatch``, case-sensitive); ``None`` means every namespace.
    kube-system is refused unless ``allow_kube_system`` is set, even when a glob matches it.
    """

    allowed: tuple[str, ...] | None = None
    allow_kube_system: bool = False

    def allows(self, namespace: str) -> bool:
        if namespace == KUBE_SYSTEM and not self.allow_kube_system:
            return False
        if self.allowed is None:
            return True
        return any(fnmatchcase(namespace, pattern) for pattern in self.allowed)

    def check(self, namespace: str | None, what: str) -> str:
        """The namespace, or PermanentError when it is missing or not allowed."""
        if not namespace:
            raise PermanentError(f"{what}: the target has no namespace")
        if namespace == KUBE_SYSTEM and not self.allow_kube_system:
            raise PermanentError(
                f"{what}: refused: namespace kube-system is protected "
                "(set allow_kube_system to act there)",
                {"refused": "kube_system", "namespace": namespace},
            )
        if not self.allows(namespace):
            raise PermanentError(
                f"{what}: refused: namespace {namespace!r} is not in the allowed namespaces "
                f"{list(self.allowed or ())}",
                {"refused": "namespace_not_allowed", "namespace": namespace},
            )
        return namespace


def _quantity_positive(value: Any) -> bool:
    try:
        return float(str(value)) > 0
    except ValueError:
        return False


def is_gpu_node(node: dict[str, Any]) -> bool:
    """A GPU node: ``nvidia.com/gpu`` capacity/allocatable > 0 or the GPU feature label."""
    labels = node.get("metadata", {}).get("labels") or {}
    if str(labels.get(GPU_PRESENT_LABEL, "")).lower() == "true":
        return True
    status = node.get("status") or {}
    for key in ("capacity", "allocatable"):
        if _quantity_positive((status.get(key) or {}).get(GPU_RESOURCE, 0)):
            return True
    return False


def node_unavailable(node: dict[str, Any]) -> bool:
    """Cordoned, or its Ready condition is not True."""
    if (node.get("spec") or {}).get("unschedulable"):
        return True
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") != "True")
    return True


@dataclass(frozen=True)
class BlastRadius:
    """GPU nodes unavailable now and after taking ``target`` out of scheduling."""

    target: str
    target_is_gpu: bool
    gpu_nodes: int
    unavailable_before: tuple[str, ...]
    unavailable_after: tuple[str, ...]
    max_fraction: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction_after(self) -> float:
        return len(self.unavailable_after) / self.gpu_nodes if self.gpu_nodes else 0.0

    @property
    def allowed(self) -> bool:
        if not self.target_is_gpu:
            return True
        # Already out of scheduling: acting on it again does not widen the blast radius.
        if self.target in self.unavailable_before:
            return True
        return self.fraction_after <= self.max_fraction + 1e-9

    def as_detail(self) -> dict[str, Any]:
        return {
            "gpu_nodes": self.gpu_nodes,
            "gpu_unavailable_before": list(self.unavailable_before),
            "gpu_unavailable_after": list(self.unavailable_after),
            "fraction_after": round(self.fraction_after, 4),
            "max_unschedulable_fraction": self.max_fraction,
        }


def blast_radius(nodes: list[dict[str, Any]], target: str, max_fraction: float) -> BlastRadius:
    """How many GPU nodes would be unschedulable if ``target`` were cordoned."""
    gpu = [n for n in nodes if is_gpu_node(n)]
    names = {n["metadata"]["name"] for n in gpu}
    before = sorted(n["metadata"]["name"] for n in gpu if node_unavailable(n))
    after = sorted(set(before) | ({target} & names))
    return BlastRadius(
        target=target,
        target_is_gpu=target in names,
        gpu_nodes=len(gpu),
        unavailable_before=tuple(before),
        unavailable_after=tuple(after),
        max_fraction=max_fraction,
    )


def check_blast_radius(nodes: list[dict[str, Any]], target: str, max_fraction: float, what: str) -> BlastRadius:
    """PermanentError when taking ``target`` out would exceed ``max_fraction`` of GPU nodes."""
    br = blast_radius(nodes, target, max_fraction)
    if not br.allowed:
        raise PermanentError(
            f"{what}: refused: {len(br.unavailable_after)} of {br.gpu_nodes} GPU nodes would be "
            f"unschedulable ({br.fraction_after:.0%} > max_unschedulable_fraction "
            f"{max_fraction:.0%})",
            {"refused": "gpu_blast_radius", **br.as_detail()},
        )
    return br


# ---- pod classification for drain ------------------------------------------------------------

def controller_of(pod: dict[str, Any]) -> dict[str, Any] | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_daemonset_pod(pod: dict[str, Any]) -> bool:
    owner = controller_of(pod)
    return bool(owner and owner.get("kind") == "DaemonSet")


def is_mirror_pod(pod: dict[str, Any]) -> bool:
    return "kubernetes.io/config.mirror" in (pod.get("metadata", {}).get("annotations") or {})


def is_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def uses_emptydir(pod: dict[str, Any]) -> bool:
    return any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or [])


@dataclass
class DrainPlan:
    """Which pods on a node a drain evicts, skips, or refuses to touch."""

    evict: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)


def pod_ref(pod: dict[str, Any]) -> dict[str, str]:
    meta = pod.get("metadata", {})
    return {"namespace": meta.get("namespace", ""), "name": meta.get("name", ""), "uid": meta.get("uid", "")}


def plan_drain(pods: list[dict[str, Any]], guard: NamespaceGuard, delete_emptydir_data: bool) -> DrainPlan:
    """Classify the pods of a node like ``kubectl drain --ignore-daemonsets`` does, plus the
    namespace guard: pods the executors may not touch make the drain refuse, not skip."""
    plan = DrainPlan()
    for pod in pods:
        ref = pod_ref(pod)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            plan.skipped.append({**ref, "why": "terminating"})
        elif is_daemonset_pod(pod):
            plan.skipped.append({**ref, "why": "daemonset"})
        elif is_mirror_pod(pod):
            plan.skipped.append({**ref, "why": "mirror"})
        elif is_finished(pod):
            plan.skipped.append({**ref, "why": "finished"})
        elif not guard.allows(ref["namespace"]):
            plan.refused.append({**ref, "why": "namespace not allowed"})
        elif controller_of(pod) is None:
            plan.refused.append({**ref, "why": "no controller (would be lost)"})
        elif uses_emptydir(pod) and not delete_emptydir_data:
            plan.refused.append({**ref, "why": "emptyDir data (delete_emptydir_data is false)"})
        else:
            plan.evict.append(pod)
    return plan
