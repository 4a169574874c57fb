"""Chaos: a flaky Kubernetes API (500/429/409 on 20 % of calls, 2 s latency spikes).

The harness control plane (tests/harness/kubecluster.py: etcd, kube-apiserver,
controller-manager, scheduler, kwok) with the fault proxy
(tests/harness/kube/faultproxy.py) in front; the worker's Kubernetes executors
(``kubernetes_executors`` built by the worker from ``HEALER_KUBECONFIG``) talk to
the proxy as the least-privileged ``healer`` user. About 20 % of calls get an
injected 500, 429 (Retry-After 1) or 409 (the request never reaches the
apiserver), and 5 % are held 2 s before being forwarded. 5 Deployments get 3
``kubernetes.scale +1`` actions each (``--short``: 3 x 2), one incident per alert.

Checks: each action runs once and ends in a final state, and each Deployment's
replicas equal 1 + the scale actions that succeeded (an absolute write computed
from the snapshot, so a retried write cannot scale twice).
Skipped with the reason when the harness cannot start (no Go toolchain, build failure).
"""

from __future__ import annotations

import json
import time

from bench import harness as h
from bench.chaos.common import Ctx, Result, Skip, audit_view, fill
from healer.ingest import partition_key

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: kube-chaos-scale}
spec:
  trigger:
    alert:
      matchers: ['alertname="ChaosLatency"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: kubernetes.scale, with: {replicas: "+1", max: 10}}
  verify: {timeout: 90s, rollback: true}
"""
NS = "chaos"
FRACTION = 0.072  # three rules: 1 - (1 - 0.072)^3 = 20 % of calls answered with an error


def run(ctx: Ctx) -> Result:
    deps, per = (3, 2) if ctx.short else (5, 3)
    res = Result("kube_faults")
    try:
        from tests.harness.kube.faultproxy import Fault, FaultProxy
        from tests.harness.kubecluster import ClusterError, KubeCluster
        from tests.harness.kubeobjects import Admin, deployment
    except ImportError as exc:
        raise Skip(f"kube harness not importable: {exc}") from exc
    d = ctx.dir("kube_faults")
    pol = d / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(POLICY)
    cluster = KubeCluster()
    try:
        t0 = time.monotonic()
        try:
            cluster.start()
        except (ClusterError, OSError) as exc:
            raise Skip(f"kube harness unavailable: {str(exc)[:300]}") from exc
        res.detail["cluster_start_seconds"] = round(time.monotonic() - t0, 1)
        admin = Admin(cluster.kubeconfig("admin"))
        admin.bind_cluster_role(h.ROOT / "deploy" / "rbac" / "clusterrole.yaml", "healer")
        admin.core.create_namespace({"metadata": {"name": NS}})
        admin.wait("default sa", lambda: bool(admin.core.list_namespaced_service_account(NS).items), 60)
        names = [f"web-{i}" for i in range(deps)]
        for name in names:
            admin.create(NS, deployment(name, replicas=1))
        for name in names:
            admin.wait_ready(NS, "Deployment", name, 1, timeout=120)
        with FaultProxy(cluster.server, cluster.ca_file, seed=7) as proxy:
            for status in (500, 429, 409):
                proxy.add(Fault(status=status, fraction=FRACTION))
            proxy.add(Fault(status=0, fraction=0.05, delay=2.0))
            kc = cluster.write_kubeconfig(d / "healer-via-proxy.kubeconfig", "healer", server=proxy.url)
            app = h.unique_app("ckube")
            with h.workers(ctx.bootstrap, d) as wf:
                w = wf.start(pol, app, partitions=3, HEALER_KUBECONFIG=str(kc))
                recs = []
                for k in range(per):
                    for name in names:
                        labels = {"alertname": "ChaosLatency", "namespace": NS, "deployment": name,
                                  "round": str(k)}
                        body = {"status": "firing", "labels": labels,
                                "startsAt": f"2026-01-01T00:0{k}:00Z"}
                        recs.append(h.Rec(f"{app}.alerts", partition_key(labels),
                                          json.dumps(body).encode(), None))
                sent = h.produce(ctx.bootstrap, recs)
                deadline = time.monotonic() + 600
                view = audit_view(ctx.bootstrap, app)
                while time.monotonic() < deadline:
                    view = audit_view(ctx.bootstrap, app)
                    if len(view.terminal) >= len(recs) and set(view.running) <= set(view.terminal):
                        break
                    if w.proc.poll() is not None:
                        break
                    time.sleep(3)
                res.checks["every alert's action finished within 600 s"] = len(view.terminal) >= len(recs)
                w.stop()
            res.detail["proxy"] = {
                "requests": len(proxy.requests),
                "injected_errors": {s: sum(1 for r in proxy.requests if r.injected and r.status == s)
                                    for s in (500, 429, 409)},
                "delayed_2s": sum(f.injected for f in proxy.faults if f.status == 0),
            }
        fill(res, view, (s.event_id for s in sent))
        succeeded: dict[str, int] = {}
        for r in view.records:
            if r.get("kind") == "action.running":
                name = (r.get("target") or {}).get("name")
                if view.terminal.get(r["action_id"]) in ("action.verified", "action.succeeded"):
                    succeeded[name] = succeeded.get(name, 0) + 1
        replicas = {name: admin.workload(NS, "Deployment", name)["spec"]["replicas"] for name in names}
        res.detail["replicas"] = replicas
        res.detail["scale_actions_succeeded"] = succeeded
        res.checks["replicas == 1 + succeeded scale actions (no double effect)"] = all(
            replicas[n] == 1 + succeeded.get(n, 0) for n in names)
        admin.close()
    finally:
        cluster.stop()
    return res
