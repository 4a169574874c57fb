"""Node executors: ``kubernetes.cordon`` and ``kubernetes.drain``.

Built by :func:`actions.kubernetes.kubernetes_executors`; driven by ``actions.runner.Runner``.

* cordon: sets ``spec.unschedulable`` (merge patch guarded by resourceVersion). Refused when
  more than ``max_unschedulable_fraction`` of the GPU nodes would then be unschedulable or
  NotReady (blast radius). Rollback restores the previous value, so a node that was already
  cordoned by someone else stays cordoned.
* drain: cordon, then evict the node's pods through the Eviction API, which enforces
  PodDisruptionBudgets. DaemonSet pods, mirror pods, finished and terminating pods are skipped.
  A drain is refused (nothing changed) when the node carries pods in namespaces the executors
  may not touch, pods without a controller (they would be lost), or pods with emptyDir data
  when ``delete_emptydir_data`` is false. ``execute`` cordons and makes one eviction pass
  (quick, inside the runner's step timeout); ``verify`` keeps retrying evictions refused by a
  PDB (HTTP 429) until every evicted pod is gone or the timeout passes. A timeout is a failed
  verification, so the runner rolls back: the node is uncordoned. Evicted pods are not
  restored (their controllers recreate them elsewhere); the rollback record says so.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from actions.base import ActionContext, PermanentError, TransientError, poll_until
from actions.kubernetes.client import ApiCall
from actions.kubernetes.executor import KubeExecutor, update_with_conflicts
from actions.kubernetes.safety import check_blast_radius, is_gpu_node, plan_drain, pod_ref
from healer.catalog import CordonParams, DrainParams

EVICTION_RETRY_SECONDS = 1.0

_NODE_CALLS: frozenset[ApiCall] = frozenset({
    ("", "nodes", "get"),
    ("", "nodes", "list"),
    ("", "nodes", "patch"),
})


class CordonExecutor(KubeExecutor):
    name = "kubernetes.cordon"
    reversible = True
    cluster_scoped = True
    api_calls: ClassVar[frozenset[ApiCall]] = _NODE_CALLS

    def _max_fraction(self, ctx: ActionContext) -> float:
        assert isinstance(ctx.params, CordonParams | DrainParams)
        return ctx.params.max_unschedulable_fraction

    async def _read_node(self, ctx: ActionContext) -> dict[str, Any]:
        name, api = self.target_name(ctx), self.api(ctx)
        return dict(await api.call(f"get node {name}", api.core.read_node, name))

    async def _check_blast_radius(self, ctx: ActionContext) -> dict[str, Any]:
        api = self.api(ctx)
        nodes = await api.call("list nodes", api.core.list_node)
        br = check_blast_radius(nodes.get("items", []), self.target_name(ctx), self._max_fraction(ctx), self.name)
        return br.as_detail()

    async def _set_unschedulable(self, ctx: ActionContext, value: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        name, api = self.target_name(ctx), self.api(ctx)

        def mutate(node: dict[str, Any]) -> dict[str, Any] | None:
            if bool((node.get("spec") or {}).get("unschedulable")) == value:
                return None
            return {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"unschedulable": value or None},
            }

        async def write(patch: dict[str, Any]) -> dict[str, Any]:
            return dict(await api.call(
                f"patch node {name}", api.core.patch_node, name, patch,
                _content_type="application/merge-patch+json",
            ))

        return await update_with_conflicts(lambda: self._read_node(ctx), mutate, write)

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        node = await self._read_node(ctx)
        return {
            "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
            "gpu": is_gpu_node(node),
        }

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {"cordon": not before["unschedulable"], "blast_radius": await self._check_blast_radius(ctx)}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        radius = await self._check_blast_radius(ctx)
        _, detail = await self._set_unschedulable(ctx, True)
        return {"unschedulable": True, "blast_radius": radius, **detail}

    async def _wait_unschedulable(self, ctx: ActionContext, value: bool, timeout: float) -> dict[str, Any]:
        async def check() -> tuple[bool, dict[str, Any]]:
            node = await self._read_node(ctx)
            current = bool((node.get("spec") or {}).get("unschedulable"))
            return current == value, {"unschedulable": current}

        return await poll_until(check, timeout, interval=0.25, what=f"node unschedulable={value}")

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        return await self._wait_unschedulable(ctx, True, min(timeout, 60.0))

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        _, detail = await self._set_unschedulable(ctx, bool(before["unschedulable"]))
        return {"unschedulable": bool(before["unschedulable"]), **detail}

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        state = await self._wait_unschedulable(ctx, bool(before["unschedulable"]), min(timeout, 60.0))
        return {**restored, **state}


class DrainExecutor(CordonExecutor):
    name = "kubernetes.drain"
    reversible = True
    cluster_scoped = True
    api_calls: ClassVar[frozenset[ApiCall]] = _NODE_CALLS | frozenset({
        ("", "pods", "list"),
        ("", "pods/eviction", "create"),
    })

    @staticmethod
    def _params(ctx: ActionContext) -> DrainParams:
        assert isinstance(ctx.params, DrainParams)
        return ctx.params

    async def _node_pods(self, ctx: ActionContext) -> list[dict[str, Any]]:
        name, api = self.target_name(ctx), self.api(ctx)
        pods = await api.call(
            f"list pods on node {name}", api.core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={name}",
        )
        return list(pods.get("items", []))

    async def _plan(self, ctx: ActionContext) -> dict[str, Any]:
        plan = plan_drain(await self._node_pods(ctx), self.guard, self._params(ctx).delete_emptydir_data)
        if plan.refused:
            raise PermanentError(
                f"kubernetes.drain: refused: {len(plan.refused)} pod(s) on {self.target_name(ctx)} "
                f"cannot be evicted: "
                + ", ".join(f"{p['namespace']}/{p['name']} ({p['why']})" for p in plan.refused[:5]),
                {"refused": "pods", "pods": plan.refused},
            )
        return {"evict": [pod_ref(p) for p in plan.evict], "skipped": plan.skipped}

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        base = await super().snapshot(ctx)
        pods = await self._node_pods(ctx)
        base["pods"] = [pod_ref(p) for p in pods]
        return base

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        radius = await self._check_blast_radius(ctx)
        return {"cordon": not before["unschedulable"], "blast_radius": radius, **await self._plan(ctx)}

    async def _evict(self, ctx: ActionContext, pod: dict[str, str]) -> str:
        """One eviction request: "evicted", "gone" or "blocked" (PDB / throttled)."""
        api = self.api(ctx)
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod["name"], "namespace": pod["namespace"]},
        }
        grace = self._params(ctx).grace_period_seconds
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace}
        try:
            await api.call(
                f"evict pod {pod['namespace']}/{pod['name']}", api.core.create_namespaced_pod_eviction,
                pod["name"], pod["namespace"], body,
            )
        except PermanentError as exc:
            if exc.detail.get("status") == 404:
                return "gone"
            if exc.detail.get("status") == 403 and "NamespaceTerminating" in exc.detail.get("causes", []):
                # The namespace is being deleted: the pod goes away anyway (verify waits for it).
                return "evicted"
            raise
        except TransientError as exc:
            # 429: a PodDisruptionBudget does not allow it now; 500 can be a PDB misconfiguration.
            ctx.log.info("eviction of %s/%s refused: %s", pod["namespace"], pod["name"], exc.message)
            return "blocked"
        return "evicted"

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        radius = await self._check_blast_radius(ctx)
        plan = await self._plan(ctx)  # refuses before anything changes
        _, detail = await self._set_unschedulable(ctx, True)
        results: dict[str, list[str]] = {"evicted": [], "gone": [], "blocked": []}
        for pod in plan["evict"]:
            results[await self._evict(ctx, pod)].append(f"{pod['namespace']}/{pod['name']}")
        return {"unschedulable": True, "blast_radius": radius, **results, "skipped": plan["skipped"], **detail}

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        limit = min(timeout, self._params(ctx).timeout_seconds)
        last_try: dict[str, float] = {}
        last_result: dict[str, str] = {}
        evictions = {"retried": 0}

        async def check() -> tuple[bool, dict[str, Any]]:
            node = await self._read_node(ctx)
            if not (node.get("spec") or {}).get("unschedulable"):
                return False, {"waiting": "node is schedulable again"}
            plan = plan_drain(await self._node_pods(ctx), self.guard, self._params(ctx).delete_emptydir_data)
            terminating = [p for p in plan.skipped if p["why"] == "terminating"]
            remaining = [pod_ref(p) for p in plan.evict]
            now = time.monotonic()
            for ref in remaining:
                key = f"{ref['namespace']}/{ref['name']}"
                # Retry refused evictions (PDB) at most once per EVICTION_RETRY_SECONDS.
                if now - last_try.get(key, 0.0) >= EVICTION_RETRY_SECONDS:
                    last_try[key] = now
                    evictions["retried"] += 1
                    last_result[key] = await self._evict(ctx, ref)
            keys = [f"{r['namespace']}/{r['name']}" for r in remaining]
            done = not remaining and not terminating
            return done, {
                "remaining": keys,
                "blocked": [k for k in keys if last_result.get(k) == "blocked"],
                "terminating": [f"{p['namespace']}/{p['name']}" for p in terminating],
                "eviction_retries": evictions["retried"],
            }

        detail = await poll_until(check, limit, interval=0.5, what="node drained")
        return {"drained": True, **detail}

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        restored = await super().rollback(ctx, before)
        return {**restored, "evicted_pods_restored": False}
