"""Workload executors: ``kubernetes.scale``, ``kubernetes.restart``, ``kubernetes.delete_pod``.

Built by :func:`actions.kubernetes.kubernetes_executors`; driven by ``actions.runner.Runner``.

* scale: through the ``scale`` subresource, resourceVersion-guarded; the desired count is
  computed once from the snapshot, so a retried execute sets the same absolute value. Verify:
  the workload reports ``readyReplicas == replicas == desired`` for its current generation.
  Rollback writes the snapshot's replicas back and waits for the previous readiness.
* restart: a pod-template annotation whose value is the action id (``healer.io/restart-action``)
  plus the time (``healer.io/restartedAt``); when the template already carries this action's id
  nothing is written, so executing the same action twice restarts once. Verify: rollout
  complete, like ``kubectl rollout status``. Not reversible.
* delete_pod: deletes one controller-owned pod with a UID precondition (a retry never deletes
  the replacement of a StatefulSet pod, which keeps the name). Verify: the old pod is gone and
  a new pod of the same controller is Ready. Pods without a controller are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from actions.base import (
    ActionContext,
    PermanentError,
    VerificationFailed,
    poll_until,
)
from actions.kubernetes.client import ApiCall, Conflict, KubeApi
from actions.kubernetes.executor import KubeExecutor, update_with_conflicts
from actions.kubernetes.safety import controller_of
from healer.catalog import DeletePodParams, RestartParams, ScaleParams

RESTART_ACTION_ANNOTATION = "healer.io/restart-action"
RESTARTED_AT_ANNOTATION = "healer.io/restartedAt"


def _workload_methods(api: KubeApi, kind: str) -> dict[str, Any]:
    if kind == "Deployment":
        return {
            "read": api.apps.read_namespaced_deployment,
            "patch": api.apps.patch_namespaced_deployment,
            "read_scale": api.apps.read_namespaced_deployment_scale,
            "replace_scale": api.apps.replace_namespaced_deployment_scale,
        }
    if kind == "StatefulSet":
        return {
            "read": api.apps.read_namespaced_stateful_set,
            "patch": api.apps.patch_namespaced_stateful_set,
            "read_scale": api.apps.read_namespaced_stateful_set_scale,
            "replace_scale": api.apps.replace_namespaced_stateful_set_scale,
        }
    raise PermanentError(f"not a scalable workload kind: {kind}")


def _workload_status(obj: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    return {
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "replicas": spec.get("replicas", 1),
        "statusReplicas": status.get("replicas", 0),
        "readyReplicas": status.get("readyReplicas", 0),
        "updatedReplicas": status.get("updatedReplicas", 0),
        "availableReplicas": status.get("availableReplicas", 0),
    }


def _observed(obj: dict[str, Any]) -> bool:
    st = _workload_status(obj)
    return (st["observedGeneration"] or 0) >= (st["generation"] or 0)


# ---- scale ------------------------------------------------------------------------------------

def desired_replicas(params: ScaleParams, current: int) -> int:
    """The count to scale to; PermanentError when the request breaks ``min``/``max``.

    An absolute request outside [min, max] is refused. A relative or factor request is clamped
    to the bounds, and refused when the clamp leaves nothing to do (already at the bound).
    """
    unclamped = params.model_copy(update={"min": 0, "max": None}).desired(current)
    hi = params.max
    absolute = params.replicas.isdigit()
    out_of_bounds = unclamped < params.min or (hi is not None and unclamped > hi)
    if out_of_bounds:
        bound = f"[{params.min}, {hi if hi is not None else 'inf'}]"
        if absolute:
            raise PermanentError(
                f"kubernetes.scale: refused: {unclamped} replicas is outside {bound}",
                {"refused": "bounds", "requested": unclamped, "min": params.min, "max": hi},
            )
        clamped = params.desired(current)
        if clamped == current:
            raise PermanentError(
                f"kubernetes.scale: refused: {params.replicas} from {current} would leave {bound} "
                f"and the workload is already at the bound",
                {"refused": "bounds", "requested": unclamped, "current": current,
                 "min": params.min, "max": hi},
            )
        return clamped
    return unclamped


class ScaleExecutor(KubeExecutor):
    name = "kubernetes.scale"
    reversible = True
    api_calls: ClassVar[frozenset[ApiCall]] = frozenset({
        ("apps", "deployments", "get"),
        ("apps", "deployments/scale", "get"),
        ("apps", "deployments/scale", "update"),
        ("apps", "statefulsets", "get"),
        ("apps", "statefulsets/scale", "get"),
        ("apps", "statefulsets/scale", "update"),
    })

    @staticmethod
    def _params(ctx: ActionContext) -> ScaleParams:
        assert isinstance(ctx.params, ScaleParams)
        return ctx.params

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        m = _workload_methods(api, ctx.target.kind)
        scale = await api.call(f"get {ctx.target.kind.lower()}s/scale {ns}/{name}", m["read_scale"], name, ns)
        obj = await api.call(f"get {ctx.target.kind.lower()} {ns}/{name}", m["read"], name, ns)
        st = _workload_status(obj)
        return {
            "kind": ctx.target.kind,
            "replicas": int(scale.get("spec", {}).get("replicas", 0)),
            "readyReplicas": st["readyReplicas"],
            "resourceVersion": scale["metadata"]["resourceVersion"],
        }

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        want = desired_replicas(self._params(ctx), before["replicas"])
        return {"replicas": {"from": before["replicas"], "to": want}}

    async def _write_replicas(self, ctx: ActionContext, want: int) -> tuple[dict[str, Any], dict[str, Any]]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        m = _workload_methods(api, ctx.target.kind)
        res = f"{ctx.target.kind.lower()}s/scale {ns}/{name}"

        async def read() -> dict[str, Any]:
            return dict(await api.call(f"get {res}", m["read_scale"], name, ns))

        def mutate(scale: dict[str, Any]) -> dict[str, Any] | None:
            if scale.get("spec", {}).get("replicas") == want:
                return None
            # metadata.resourceVersion stays in the body: the update is conditional on it.
            return {**scale, "spec": {**scale.get("spec", {}), "replicas": want}, "status": None}

        async def write(body: dict[str, Any]) -> dict[str, Any]:
            return dict(await api.call(f"update {res}", m["replace_scale"], name, ns, body))

        return await update_with_conflicts(read, mutate, write)

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        want = desired_replicas(self._params(ctx), before["replicas"])
        scale, detail = await self._write_replicas(ctx, want)
        return {
            "replicas": want,
            "resourceVersion": scale.get("metadata", {}).get("resourceVersion"),
            **detail,
        }

    async def _wait_ready(self, ctx: ActionContext, replicas: int, min_ready: int, timeout: float, what: str) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        m = _workload_methods(api, ctx.target.kind)

        async def check() -> tuple[bool, dict[str, Any]]:
            obj = await api.call(f"get {ctx.target.kind.lower()} {ns}/{name}", m["read"], name, ns)
            st = _workload_status(obj)
            ok = (
                _observed(obj)
                and st["replicas"] == replicas
                and st["statusReplicas"] == replicas
                and st["readyReplicas"] >= min_ready
            )
            return ok, st

        return await poll_until(check, timeout, interval=0.25, what=what)

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        want = int(after["replicas"])
        limit = min(timeout, self._params(ctx).timeout_seconds)
        st = await self._wait_ready(ctx, want, want, limit, f"{want} ready replicas")
        return {"ready_replicas": st["readyReplicas"], "replicas": want}

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        _, detail = await self._write_replicas(ctx, int(before["replicas"]))
        return {"replicas": int(before["replicas"]), **detail}

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        replicas = int(before["replicas"])
        min_ready = min(replicas, int(before.get("readyReplicas") or 0))
        limit = min(timeout, self._params(ctx).timeout_seconds)
        st = await self._wait_ready(ctx, replicas, min_ready, limit, f"{replicas} replicas restored")
        return {**restored, "ready_replicas": st["readyReplicas"]}


# ---- restart ----------------------------------------------------------------------------------

def _rollout_state(kind: str, obj: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether the rollout of ``obj``'s current generation is complete (kubectl's rules)."""
    st = _workload_status(obj)
    status = obj.get("status") or {}
    if not _observed(obj):
        return False, {**st, "waiting": "controller has not observed the new generation"}
    want = st["replicas"]
    if kind == "Deployment":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                raise VerificationFailed(
                    f"rollout exceeded its progress deadline: {cond.get('message', '')}", st
                )
        if st["updatedReplicas"] < want:
            return False, {**st, "waiting": "updating replicas"}
        if st["statusReplicas"] > st["updatedReplicas"]:
            return False, {**st, "waiting": "old replicas pending termination"}
        if st["availableReplicas"] < st["updatedReplicas"]:
            return False, {**st, "waiting": "updated replicas not yet available"}
        return True, st
    # StatefulSet with RollingUpdate
    if st["updatedReplicas"] < want or st["readyReplicas"] < want:
        return False, {**st, "waiting": "updating / readying pods"}
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return False, {**st, "waiting": "currentRevision != updateRevision"}
    return True, st


class RestartExecutor(KubeExecutor):
    name = "kubernetes.restart"
    reversible = False
    api_calls: ClassVar[frozenset[ApiCall]] = frozenset({
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "get"),
        ("apps", "statefulsets", "patch"),
    })

    async def _read(self, ctx: ActionContext) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        m = _workload_methods(api, ctx.target.kind)
        return dict(await api.call(f"get {ctx.target.kind.lower()} {ns}/{name}", m["read"], name, ns))

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        obj = await self._read(ctx)
        ann = obj["spec"]["template"].get("metadata", {}).get("annotations") or {}
        return {
            "kind": ctx.target.kind,
            "generation": obj["metadata"].get("generation"),
            "restart_action": ann.get(RESTART_ACTION_ANNOTATION),
            "restartedAt": ann.get(RESTARTED_AT_ANNOTATION),
            **{k: v for k, v in _workload_status(obj).items() if k in ("replicas", "readyReplicas")},
        }

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        if before.get("restart_action") == ctx.action_id:
            return {"restart": False, "why": "this action already restarted the workload"}
        return {"restart": True, "annotation": {RESTART_ACTION_ANNOTATION: ctx.action_id}}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        m = _workload_methods(api, ctx.target.kind)
        res = f"{ctx.target.kind.lower()} {ns}/{name}"

        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            ann = obj["spec"]["template"].get("metadata", {}).get("annotations") or {}
            if ann.get(RESTART_ACTION_ANNOTATION) == ctx.action_id:
                return None
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "spec": {"template": {"metadata": {"annotations": {
                    RESTART_ACTION_ANNOTATION: ctx.action_id,
                    RESTARTED_AT_ANNOTATION: now,
                }}}},
            }

        async def write(patch: dict[str, Any]) -> dict[str, Any]:
            return dict(await api.call(
                f"patch {res}", m["patch"], name, ns, patch,
                _content_type="application/merge-patch+json",
            ))

        obj, detail = await update_with_conflicts(lambda: self._read(ctx), mutate, write)
        return {"generation": obj["metadata"].get("generation"), "restart_action": ctx.action_id, **detail}

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        assert isinstance(ctx.params, RestartParams)
        limit = min(timeout, ctx.params.timeout_seconds)

        async def check() -> tuple[bool, dict[str, Any]]:
            obj = await self._read(ctx)
            if (obj["metadata"].get("generation") or 0) < (after.get("generation") or 0):
                return False, {"waiting": "generation went backwards"}
            return _rollout_state(ctx.target.kind, obj)

        return await poll_until(check, limit, interval=0.25, what="rollout complete")


# ---- delete_pod -------------------------------------------------------------------------------

def _pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


class DeletePodExecutor(KubeExecutor):
    name = "kubernetes.delete_pod"
    reversible = False
    api_calls: ClassVar[frozenset[ApiCall]] = frozenset({
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
    })

    async def _siblings(self, ctx: ActionContext, owner_uid: str) -> list[dict[str, Any]]:
        ns, api = self.namespace(ctx), self.api(ctx)
        pods = await api.call(f"list pods {ns}", api.core.list_namespaced_pod, ns)
        return [
            p for p in pods.get("items", [])
            if (controller_of(p) or {}).get("uid") == owner_uid
        ]

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        pod = await api.call(f"get pod {ns}/{name}", api.core.read_namespaced_pod, name, ns)
        owner = controller_of(pod)
        if owner is None:
            raise PermanentError(
                f"kubernetes.delete_pod: refused: pod {ns}/{name} has no controller, "
                "nothing would replace it",
                {"refused": "no_controller"},
            )
        siblings = await self._siblings(ctx, owner["uid"])
        return {
            "uid": pod["metadata"]["uid"],
            "node": (pod.get("spec") or {}).get("nodeName"),
            "phase": (pod.get("status") or {}).get("phase"),
            "ready": _pod_ready(pod),
            "owner": {"kind": owner.get("kind"), "name": owner.get("name"), "uid": owner.get("uid")},
            "sibling_uids": sorted(p["metadata"]["uid"] for p in siblings),
        }

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {"delete": f"{ctx.target.namespace}/{ctx.target.name}", "uid": before["uid"]}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        assert isinstance(ctx.params, DeletePodParams)
        body: dict[str, Any] = {"preconditions": {"uid": before["uid"]}}
        if ctx.params.grace_period_seconds is not None:
            body["gracePeriodSeconds"] = ctx.params.grace_period_seconds
        try:
            await api.call(f"delete pod {ns}/{name}", api.core.delete_namespaced_pod, name, ns, body=body)
        except Conflict:
            # UID precondition failed: the pod with this name is already a replacement.
            return {"deleted_uid": before["uid"], "already_gone": True}
        except PermanentError as exc:
            if exc.detail.get("status") != 404:
                raise
            return {"deleted_uid": before["uid"], "already_gone": True}
        return {"deleted_uid": before["uid"], "already_gone": False}

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        assert isinstance(ctx.params, DeletePodParams)
        limit = min(timeout, ctx.params.timeout_seconds)
        known = set(before["sibling_uids"]) | {before["uid"]}

        async def check() -> tuple[bool, dict[str, Any]]:
            pods = await self._siblings(ctx, before["owner"]["uid"])
            old_present = any(p["metadata"]["uid"] == before["uid"] for p in pods)
            new = [p for p in pods if p["metadata"]["uid"] not in known]
            ready = [p["metadata"]["name"] for p in new if _pod_ready(p)]
            detail = {
                "old_pod_gone": not old_present,
                "replacements": [p["metadata"]["name"] for p in new],
                "ready_replacements": ready,
            }
            return (not old_present and bool(ready)), detail

        return await poll_until(check, limit, interval=0.25, what="a Ready replacement pod")
