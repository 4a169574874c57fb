"""Pure logic of the Kubernetes executors: namespace guard, GPU blast radius, drain plan,
scale bounds, HTTPRoute weight edits and API error mapping (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from actions.base import PermanentError, TransientError
from actions.kubernetes.client import Conflict, map_api_error
from actions.kubernetes.safety import NamespaceGuard, blast_radius, check_blast_radius, plan_drain
from actions.kubernetes.traffic import apply_weights, restore_weights
from actions.kubernetes.workloads import desired_replicas
from healer.catalog import ScaleParams


@pytest.mark.parametrize(
    ("allowed", "kube_system", "ns", "ok"),
    [
        (None, False, "llm-prod", True),
        (None, False, "kube-system", False),
        (None, True, "kube-system", True),
        (("llm-*",), False, "llm-prod", True),
        (("llm-*",), False, "web", False),
        (("*",), False, "kube-system", False),
        (("kube-*",), True, "kube-system", True),
    ],
)
def test_namespace_guard(allowed: tuple[str, ...] | None, kube_system: bool, ns: str, ok: bool) -> None:
    guard = NamespaceGuard(allowed, kube_system)
    assert guard.allows(ns) is ok
    if ok:
        assert guard.check(ns, "x") == ns
    else:
        with pytest.raises(PermanentError, match="refused"):
            guard.check(ns, "x")


def _node(name: str, gpus: int = 0, unschedulable: bool = False, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {"unschedulable": unschedulable} if unschedulable else {},
        "status": {
            "capacity": {"nvidia.com/gpu": str(gpus)} if gpus else {},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_blast_radius_counts_cordoned_and_notready_gpu_nodes() -> None:
    nodes = [_node("c1"), _node("g1", 8), _node("g2", 8), _node("g3", 8, ready=False)]
    br = blast_radius(nodes, "g1", 0.5)
    assert br.gpu_nodes == 3 and br.unavailable_before == ("g3",)
    assert br.unavailable_after == ("g1", "g3") and not br.allowed  # 2/3 > 0.5
    assert blast_radius(nodes, "c1", 0.1).allowed  # CPU node: no GPU blast radius
    assert blast_radius(nodes, "g3", 0.1).allowed  # already unavailable
    assert blast_radius(nodes, "g1", 0.67).allowed
    with pytest.raises(PermanentError, match="GPU nodes would be unschedulable") as exc:
        check_blast_radius(nodes, "g2", 0.34, "kubernetes.cordon")
    assert exc.value.detail["refused"] == "gpu_blast_radius"


def _pod(name: str, ns: str = "app", owner: str | None = "ReplicaSet", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": name + "-uid"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "o", "controller": True}]
    pod = {"metadata": meta, "spec": {}, "status": {"phase": "Running"}}
    for k, v in extra.items():
        pod[k] = {**pod.get(k, {}), **v}
    return pod


def test_drain_plan_classifies_pods() -> None:
    pods = [
        _pod("web"),
        _pod("ds", owner="DaemonSet"),
        _pod("done", status={"phase": "Succeeded"}),
        _pod("bare", owner=None),
        _pod("dns", ns="kube-system"),
        _pod("cache", spec={"volumes": [{"name": "c", "emptyDir": {}}]}),
    ]
    plan = plan_drain(pods, NamespaceGuard(), delete_emptydir_data=True)
    assert [p["metadata"]["name"] for p in plan.evict] == ["web", "cache"]
    assert {s["name"]: s["why"] for s in plan.skipped} == {"ds": "daemonset", "done": "finished"}
    assert {r["name"] for r in plan.refused} == {"bare", "dns"}
    plan2 = plan_drain([pods[5]], NamespaceGuard(), delete_emptydir_data=False)
    assert plan2.refused and not plan2.evict


@pytest.mark.parametrize(
    ("replicas", "lo", "hi", "current", "want"),
    [
        ("+1", 1, 10, 3, 4),
        ("+5", 1, 10, 8, 10),      # clamped
        ("x2", 1, 5, 2, 4),
        ("-1", 1, None, 3, 2),
        ("4", 0, 10, 2, 4),
        ("0", 0, None, 2, 0),
    ],
)
def test_desired_replicas(replicas: str, lo: int, hi: int | None, current: int, want: int) -> None:
    assert desired_replicas(ScaleParams(replicas=replicas, min=lo, max=hi), current) == want


@pytest.mark.parametrize(
    ("replicas", "lo", "hi", "current"),
    [("+1", 1, 10, 10), ("-1", 1, None, 1), ("20", 1, 10, 3), ("0", 1, None, 3)],
)
def test_scale_outside_bounds_is_refused(replicas: str, lo: int, hi: int | None, current: int) -> None:
    with pytest.raises(PermanentError, match="refused"):
        desired_replicas(ScaleParams(replicas=replicas, min=lo, max=hi), current)


ROUTE = {
    "spec": {"rules": [
        {"backendRefs": [{"name": "stable", "port": 80, "weight": 90}, {"name": "canary", "port": 80, "weight": 10}]},
        {"backendRefs": [{"name": "stable", "port": 80}]},
    ]}
}


def test_apply_and_restore_weights() -> None:
    new, changed = apply_weights(ROUTE, {"stable": 100, "canary": 0}, rule=0)
    assert changed
    assert [r["weight"] for r in new["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    assert new["spec"]["rules"][1] == ROUTE["spec"]["rules"][1]
    again, changed2 = apply_weights(new, {"stable": 100, "canary": 0}, rule=0)
    assert not changed2 and again == new
    prev = [[{"name": "stable", "namespace": None, "weight": 90}, {"name": "canary", "namespace": None, "weight": 10}],
            [{"name": "stable", "namespace": None, "weight": 1}]]
    back, changed3 = restore_weights(new, prev)
    assert changed3 and [r["weight"] for r in back["spec"]["rules"][0]["backendRefs"]] == [90, 10]


def test_apply_weights_refusals() -> None:
    with pytest.raises(PermanentError, match="all weights 0"):
        apply_weights(ROUTE, {"stable": 0, "canary": 0}, rule=0)
    with pytest.raises(PermanentError, match="not in the selected"):
        apply_weights(ROUTE, {"blue": 1}, rule=None)
    with pytest.raises(PermanentError, match="no rule 5"):
        apply_weights(ROUTE, {"stable": 1}, rule=5)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(409, Conflict), (429, TransientError), (500, TransientError), (503, TransientError),
     (403, PermanentError), (404, PermanentError), (422, PermanentError), (0, TransientError)],
)
def test_error_mapping(status: int, cls: type[Exception]) -> None:
    exc = ApiException(status=status, reason="R", body='{"message": "the API said no", "reason": "Forbidden"}')
    err = map_api_error(exc, "get thing")
    assert type(err) is cls
    assert "the API said no" in err.message and err.detail["status"] == status


def test_connection_errors_are_transient() -> None:
    import urllib3

    err = map_api_error(urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"), "get thing")  # type: ignore[arg-type]
    assert isinstance(err, TransientError) and not isinstance(err, Conflict)


# ---- the conflict-aware update loop (fake read/write: pure control flow) ----------------------

def test_update_with_conflicts_rereads_and_reapplies() -> None:
    import asyncio

    from actions.kubernetes.executor import update_with_conflicts

    store = {"rv": 1, "replicas": 1}
    reads: list[int] = []
    conflicts_left = [2]

    async def read() -> dict[str, Any]:
        reads.append(store["rv"])
        return dict(store)

    def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
        return None if obj["replicas"] == 3 else {**obj, "replicas": 3}

    async def write(obj: dict[str, Any]) -> dict[str, Any]:
        if conflicts_left[0]:
            conflicts_left[0] -= 1
            store["rv"] += 1  # someone else wrote
            raise Conflict("409", {"status": 409})
        assert obj["rv"] == store["rv"], "a write must carry the version it read"
        store.update(replicas=obj["replicas"], rv=store["rv"] + 1)
        return dict(store)

    out, detail = asyncio.run(update_with_conflicts(read, mutate, write))
    assert out["replicas"] == 3 and detail["conflicts"] == 2 and reads == [1, 2, 3]
    # Already as wanted: nothing is written.
    _, detail2 = asyncio.run(update_with_conflicts(read, mutate, write))
    assert detail2 == {"conflicts": 0, "changed": False}


def test_update_with_conflicts_gives_up_as_transient() -> None:
    import asyncio

    from actions.kubernetes.executor import update_with_conflicts

    async def read() -> dict[str, Any]:
        return {"x": 0}

    async def write(obj: dict[str, Any]) -> dict[str, Any]:
        raise Conflict("409", {"status": 409})

    with pytest.raises(Conflict, match="still conflicting after 3") as exc:
        asyncio.run(update_with_conflicts(read, lambda o: {"x": 1}, write, attempts=3))
    assert isinstance(exc.value, TransientError) and exc.value.detail["conflicts"] == 3
