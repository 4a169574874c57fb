"""Benchmark: kubernetes.scale request-to-verified latency on the real test cluster.

Starts the harness cluster (tests/harness/kubecluster.py: etcd, kube-apiserver,
controller-manager, scheduler, kwok), then runs ``kubernetes.scale`` through the Runner N times,
alternating a Deployment between 1 and 3 replicas, as the least-privileged ``healer`` user.
Each sample is the wall time of ``Runner.run`` (snapshot -> scale subresource update -> verify
ready replicas). Prints a table and writes bench/results/kube_scale.json.

    .venv/bin/python bench/bench_kube_scale.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actions.kubernetes import kubernetes_executors  # noqa: E402
from actions.registry import ExecutorRegistry  # noqa: E402
from actions.runner import RetryPolicy, Runner  # noqa: E402
from bench.report import check, print_checks  # noqa: E402
from tests.harness.kubecluster import KubeCluster  # noqa: E402
from tests.harness.kubeobjects import Admin, AuditLog, deployment, request  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "kube_scale.json"


async def _runs(runner: Runner, ns: str, n: int) -> list[dict[str, float | int | str]]:
    samples: list[dict[str, float | int | str]] = []
    for i in range(n):
        target = 3 if i % 2 == 0 else 1
        req = request("kubernetes.scale", "Deployment", "bench", ns, {"replicas": str(target)}, verify_timeout=60)
        t0 = time.perf_counter()
        out = await runner.run(req)
        dt = time.perf_counter() - t0
        if out.status != "verified":
            raise SystemExit(f"run {i} ended {out.status}: {out.reason}")
        samples.append({"run": i, "replicas": target, "seconds": round(dt, 4)})
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 runs")
    args = ap.parse_args()
    if args.quick:
        args.runs = 5

    t0 = time.monotonic()
    with KubeCluster() as cluster:
        start_total = time.monotonic() - t0
        admin = Admin(cluster.kubeconfig("admin"))
        admin.bind_cluster_role(ROOT / "deploy" / "rbac" / "clusterrole.yaml", "healer")
        ns = "bench"
        admin.core.create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]
        admin.wait("default sa", lambda: bool(admin.core.list_namespaced_service_account(ns).items), 30)
        admin.create(ns, deployment("bench", replicas=1))
        admin.wait_ready(ns, "Deployment", "bench", 1)
        registry = ExecutorRegistry()
        registry.register_all(kubernetes_executors(kubeconfig=str(cluster.kubeconfig("healer"))))
        runner = Runner(registry, AuditLog(), retry=RetryPolicy())
        samples = asyncio.run(_runs(runner, ns, args.runs))
        asyncio.run(registry.close())
        admin.close()
        timings = dict(cluster.timings)

    secs = [float(s["seconds"]) for s in samples]
    summary = {
        "runs": len(secs),
        "min_seconds": round(min(secs), 4),
        "median_seconds": round(statistics.median(secs), 4),
        "max_seconds": round(max(secs), 4),
        "up_seconds": round(statistics.median([float(s["seconds"]) for s in samples if s["replicas"] == 3]), 4),
        "down_seconds": round(statistics.median([float(s["seconds"]) for s in samples if s["replicas"] == 1]), 4)
        if len(samples) > 1 else None,
    }
    print(f"kubernetes.scale request -> verified, {len(secs)} runs (1 <-> 3 replicas, kwok nodes)")
    print(f"{'min':>8} {'median':>8} {'max':>8}   (seconds)")
    print(f"{summary['min_seconds']:>8.3f} {summary['median_seconds']:>8.3f} {summary['max_seconds']:>8.3f}")
    print(f"cluster: binaries {timings.get('binaries_seconds')} s, start {timings.get('start_seconds')} s "
          f"(total {start_total:.1f} s)")
    checks = [check("kubernetes.scale request -> verified, median", summary["median_seconds"], None, unit=" s")]
    print_checks(checks)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "bench": "kube_scale",
        "summary": summary,
        "cluster": {**timings, "total_start_seconds": round(start_total, 2)},
        "samples": samples,
        "checks": checks,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
