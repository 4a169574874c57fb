"""Traffic executor: ``kubernetes.reroute`` (Gateway API HTTPRoute weights or Service selector).

Built by :func:`actions.kubernetes.kubernetes_executors`; driven by ``actions.runner.Runner``.

* HTTPRoute (``gateway.networking.k8s.io/v1``): ``weights`` maps backendRef names to weights;
  the executor sets them in the selected rule (``rule``) or in every rule that references the
  backend. Backends not named keep their weight. A rule whose weights would all be 0 is refused
  (it would drop the traffic), as is a name no selected rule references.
* Service: ``selector`` replaces the Service's selector (a switch, not a merge).

The previous weights / selector are the snapshot; writes are full updates guarded by
resourceVersion (409 -> re-read and re-apply). Verify reads the object back and waits until
every backend that now gets traffic has Ready endpoints (EndpointSlices); for a Service, until
its ready endpoints are exactly pods matching the new selector. Rollback restores the snapshot
values only (other fields changed meanwhile are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from actions.base import ActionContext, PermanentError, VerificationFailed, poll_until
from actions.kubernetes.client import ApiCall, KubeApi
from actions.kubernetes.executor import KubeExecutor, update_with_conflicts
from healer.catalog import RerouteParams

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTES = "httproutes"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _backend_weights(route: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Per rule, the backendRefs as {name, namespace, kind, weight} (weight defaults to 1)."""
    out: list[list[dict[str, Any]]] = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = []
        for ref in rule.get("backendRefs") or []:
            refs.append({
                "name": ref.get("name"),
                "namespace": ref.get("namespace"),
                "kind": ref.get("kind", "Service"),
                "group": ref.get("group", ""),
                "weight": int(ref.get("weight", 1)),
            })
        out.append(refs)
    return out


def apply_weights(
    route: dict[str, Any], weights: dict[str, int], rule: int | None
) -> tuple[dict[str, Any], bool]:
    """The route with new weights and whether anything changed; PermanentError when refused."""
    rules = (route.get("spec") or {}).get("rules") or []
    indexes = list(range(len(rules))) if rule is None else [rule]
    if rule is not None and rule >= len(rules):
        raise PermanentError(f"kubernetes.reroute: HTTPRoute has {len(rules)} rules, no rule {rule}")
    seen: set[str] = set()
    changed = False
    new_rules = [dict(r) for r in rules]
    for i in indexes:
        refs = [dict(ref) for ref in new_rules[i].get("backendRefs") or []]
        names = {ref.get("name") for ref in refs}
        if not names & set(weights):
            continue
        for ref in refs:
            name = ref.get("name")
            if name in weights:
                seen.add(name)
                if int(ref.get("weight", 1)) != weights[name]:
                    ref["weight"] = weights[name]
                    changed = True
        if refs and all(int(ref.get("weight", 1)) == 0 for ref in refs):
            raise PermanentError(
                f"kubernetes.reroute: refused: rule {i} would send all traffic nowhere (all weights 0)",
                {"refused": "all_weights_zero", "rule": i},
            )
        new_rules[i] = {**new_rules[i], "backendRefs": refs}
    missing = sorted(set(weights) - seen)
    if missing:
        raise PermanentError(
            f"kubernetes.reroute: backendRefs {missing} are not in the selected HTTPRoute rules",
            {"missing_backends": missing},
        )
    return {**route, "spec": {**route.get("spec", {}), "rules": new_rules}}, changed


def restore_weights(route: dict[str, Any], previous: list[list[dict[str, Any]]]) -> tuple[dict[str, Any], bool]:
    """The route with each backendRef's weight from the snapshot (matched by rule and name)."""
    rules = [dict(r) for r in (route.get("spec") or {}).get("rules") or []]
    changed = False
    for i, old_refs in enumerate(previous):
        if i >= len(rules):
            break
        old = {(r["name"], r.get("namespace")): r["weight"] for r in old_refs}
        refs = [dict(ref) for ref in rules[i].get("backendRefs") or []]
        for ref in refs:
            key = (ref.get("name"), ref.get("namespace"))
            if key in old and int(ref.get("weight", 1)) != old[key]:
                ref["weight"] = old[key]
                changed = True
        rules[i] = {**rules[i], "backendRefs": refs}
    return {**route, "spec": {**route.get("spec", {}), "rules": rules}}, changed


async def ready_endpoints(api: KubeApi, namespace: str, service: str) -> list[dict[str, Any]]:
    """The Ready endpoints of a Service from its EndpointSlices (address + target pod)."""
    slices = await api.call(
        f"list endpointslices {namespace} ({service})",
        api.discovery.list_namespaced_endpoint_slice,
        namespace,
        label_selector=f"{SERVICE_NAME_LABEL}={service}",
    )
    out = []
    for sl in slices.get("items", []):
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is True:
                out.append({
                    "addresses": ep.get("addresses", []),
                    "pod": (ep.get("targetRef") or {}).get("name"),
                })
    return out


class RerouteExecutor(KubeExecutor):
    name = "kubernetes.reroute"
    reversible = True
    api_calls: ClassVar[frozenset[ApiCall]] = frozenset({
        (GATEWAY_GROUP, HTTPROUTES, "get"),
        (GATEWAY_GROUP, HTTPROUTES, "update"),
        ("", "services", "get"),
        ("", "services", "update"),
        ("", "pods", "list"),
        ("discovery.k8s.io", "endpointslices", "list"),
    })

    @staticmethod
    def _params(ctx: ActionContext) -> RerouteParams:
        assert isinstance(ctx.params, RerouteParams)
        return ctx.params

    def _check_params(self, ctx: ActionContext) -> RerouteParams:
        p = self._params(ctx)
        if ctx.target.kind == "HTTPRoute" and p.weights is None:
            raise PermanentError("kubernetes.reroute: an HTTPRoute target needs `weights`")
        if ctx.target.kind == "Service" and p.selector is None:
            raise PermanentError("kubernetes.reroute: a Service target needs `selector`")
        return p

    async def _read(self, ctx: ActionContext) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        if ctx.target.kind == "HTTPRoute":
            return dict(await api.call(
                f"get httproute {ns}/{name}", api.custom.get_namespaced_custom_object,
                GATEWAY_GROUP, GATEWAY_VERSION, ns, HTTPROUTES, name,
            ))
        return dict(await api.call(f"get service {ns}/{name}", api.core.read_namespaced_service, name, ns))

    async def _write(self, ctx: ActionContext, obj: dict[str, Any]) -> dict[str, Any]:
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        if ctx.target.kind == "HTTPRoute":
            return dict(await api.call(
                f"update httproute {ns}/{name}", api.custom.replace_namespaced_custom_object,
                GATEWAY_GROUP, GATEWAY_VERSION, ns, HTTPROUTES, name, obj,
            ))
        return dict(await api.call(
            f"update service {ns}/{name}", api.core.replace_namespaced_service, name, ns, obj
        ))

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        self._check_params(ctx)
        obj = await self._read(ctx)
        if ctx.target.kind == "HTTPRoute":
            return {"kind": "HTTPRoute", "weights": _backend_weights(obj)}
        return {"kind": "Service", "selector": dict((obj.get("spec") or {}).get("selector") or {})}

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = self._check_params(ctx)
        if ctx.target.kind == "HTTPRoute":
            return {"weights": {"from": before["weights"], "set": p.weights, "rule": p.rule}}
        return {"selector": {"from": before["selector"], "to": p.selector}}

    def _mutate(self, ctx: ActionContext) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        p = self._check_params(ctx)

        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            if ctx.target.kind == "HTTPRoute":
                assert p.weights is not None
                new, changed = apply_weights(obj, p.weights, p.rule)
                return new if changed else None
            spec = obj.get("spec") or {}
            if dict(spec.get("selector") or {}) == p.selector:
                return None
            return {**obj, "spec": {**spec, "selector": dict(p.selector or {})}}

        return mutate

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        obj, detail = await update_with_conflicts(
            lambda: self._read(ctx), self._mutate(ctx), lambda o: self._write(ctx, o)
        )
        if ctx.target.kind == "HTTPRoute":
            return {"weights": _backend_weights(obj), **detail}
        return {"selector": dict((obj.get("spec") or {}).get("selector") or {}), **detail}

    async def _backends_ready(self, ctx: ActionContext, obj: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Every Service backend with weight > 0 in the route has at least one Ready endpoint."""
        ns, api = self.namespace(ctx), self.api(ctx)
        status: dict[str, int] = {}
        for refs in _backend_weights(obj):
            for ref in refs:
                if ref["weight"] <= 0 or ref["kind"] != "Service" or ref["group"] not in ("", None):
                    continue
                bns = ref["namespace"] or ns
                key = f"{bns}/{ref['name']}"
                if key not in status:
                    status[key] = len(await ready_endpoints(api, self.guard.check(bns, self.name), ref["name"]))
        return all(n > 0 for n in status.values()), {"ready_endpoints": status}

    async def _service_ready(self, ctx: ActionContext, selector: dict[str, str]) -> tuple[bool, dict[str, Any]]:
        """The Service's Ready endpoints exist and are all pods of the new selector."""
        ns, name, api = self.namespace(ctx), self.target_name(ctx), self.api(ctx)
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = await api.call(f"list pods {ns} ({sel})", api.core.list_namespaced_pod, ns, label_selector=sel)
        wanted = {p["metadata"]["name"] for p in pods.get("items", [])}
        eps = await ready_endpoints(api, ns, name)
        targets = {e["pod"] for e in eps}
        ok = bool(eps) and targets <= wanted
        return ok, {"ready_endpoints": sorted(t for t in targets if t), "selected_pods": len(wanted)}

    async def _verify_state(
        self, ctx: ActionContext, expect: dict[str, Any], timeout: float, what: str
    ) -> dict[str, Any]:
        async def check() -> tuple[bool, dict[str, Any]]:
            obj = await self._read(ctx)
            if ctx.target.kind == "HTTPRoute":
                current = _backend_weights(obj)
                if current != expect["weights"]:
                    return False, {"weights": current, "waiting": "read-back differs"}
                ok, detail = await self._backends_ready(ctx, obj)
                return ok, {"weights": current, **detail}
            selector = dict((obj.get("spec") or {}).get("selector") or {})
            if selector != expect["selector"]:
                return False, {"selector": selector, "waiting": "read-back differs"}
            ok, detail = await self._service_ready(ctx, selector)
            return ok, {"selector": selector, **detail}

        return await poll_until(check, timeout, interval=0.25, what=what)

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        limit = min(timeout, self._params(ctx).timeout_seconds)
        return await self._verify_state(ctx, after, limit, "new backends ready")

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            if before["kind"] == "HTTPRoute":
                new, changed = restore_weights(obj, before["weights"])
                return new if changed else None
            spec = obj.get("spec") or {}
            if dict(spec.get("selector") or {}) == before["selector"]:
                return None
            return {**obj, "spec": {**spec, "selector": dict(before["selector"])}}

        obj, detail = await update_with_conflicts(
            lambda: self._read(ctx), mutate, lambda o: self._write(ctx, o)
        )
        if before["kind"] == "HTTPRoute":
            return {"weights": _backend_weights(obj), **detail}
        return {"selector": dict((obj.get("spec") or {}).get("selector") or {}), **detail}

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        # Read-back only: the previous backends may not have been ready either. A 429/5xx on
        # the read is retried until the timeout (poll_until); a read-back that differs fails at once.
        async def check() -> tuple[bool, dict[str, Any]]:
            obj = await self._read(ctx)
            if before["kind"] == "HTTPRoute":
                current = _backend_weights(obj)
                if [[r["weight"] for r in rule] for rule in current] != [
                    [r["weight"] for r in rule] for rule in before["weights"]
                ]:
                    raise VerificationFailed("HTTPRoute weights not restored", {"weights": current})
                return True, {"weights": current}
            selector = dict((obj.get("spec") or {}).get("selector") or {})
            if selector != before["selector"]:
                raise VerificationFailed("Service selector not restored", {"selector": selector})
            return True, {"selector": selector}

        return await poll_until(check, timeout, interval=0.25, what="rollback read-back")
