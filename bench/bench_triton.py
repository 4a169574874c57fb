"""Benchmark: triton.reload request-to-verified latency against a real tritonserver.

Starts the test harness server (tests/harness/triton_server.py: tritonserver
from the nvidia-pytriton wheel, explicit model control, Python-backend models
on CPU), then runs ``triton.reload`` through the Runner N times per model.
Each sample is the wall time of ``Runner.run``: snapshot (index, per-version
ready, config) -> load with the loaded config + ``healer_reload`` (a real
reload) -> verify (per-version ready, plus a smoke inference on ``simple``).
Also times one plain load of a cold model for comparison. Prints a table and
writes bench/results/triton.json.

    .venv/bin/python bench/bench_triton.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actions.runner import RetryPolicy  # noqa: E402
from actions.triton import triton_executors  # noqa: E402
from bench.report import check, print_checks  # noqa: E402
from tests.harness.triton_runs import make_harness, request, smoke  # noqa: E402
from tests.harness.triton_server import TritonServer, find_dist  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "triton.json"
CASES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("simple", "1 version, + smoke inference", {"smoke": smoke([1.0, 2.0], expect=[2.0, 3.0])}),
    ("healthy", "2 versions", {}),
)


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]  # nearest rank
    return {"min": s[0], "median": statistics.median(s), "p90": p90, "max": s[-1],
            "mean": statistics.fmean(s)}


async def _reloads(
    server: TritonServer, model: str, with_: dict[str, Any], n: int
) -> tuple[list[float], list[float]]:
    """Wall time of each Runner.run, and of its execute step (the load call + read-back)."""
    executors = triton_executors()
    control = executors[0].control  # type: ignore[attr-defined]
    h = make_harness(executors, retry=RetryPolicy(attempts=3, step_timeout=120))
    samples: list[float] = []
    executes: list[float] = []
    for i in range(n):
        req = request("triton.reload", model, server=server.url, with_=with_, verify_timeout=120)
        t0 = time.perf_counter()
        out = await h.runner.run(req)
        dt = time.perf_counter() - t0
        if out.status != "verified":
            raise SystemExit(f"{model} run {i} ended {out.status}: {out.reason}")
        samples.append(round(dt, 4))
        executes.extend(round(x.ended - x.started, 4) for x in control.timeline
                        if x.action_id == req.action_id and x.step == "execute")
    return samples, executes


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 runs per model")
    args = ap.parse_args()
    if args.quick:
        args.runs = 3

    dist = find_dist()
    with tempfile.TemporaryDirectory(prefix="healer-bench-triton-") as tmp:
        t0 = time.monotonic()
        server = TritonServer(root=Path(tmp)).start()
        try:
            start_s = time.monotonic() - t0
            cold: dict[str, float] = {}
            for model, _, _ in CASES:
                t1 = time.perf_counter()
                server.load(model)
                cold[model] = round(time.perf_counter() - t1, 4)
            results: dict[str, dict[str, Any]] = {}
            for model, note, with_ in CASES:
                samples, executes = asyncio.run(_reloads(server, model, with_, args.runs))
                results[model] = {"note": note, "samples": samples, **_stats(samples),
                                  "execute_step": {"samples": executes, **_stats(executes)}}
            triton_version = server.metadata().get("version")
        finally:
            server.stop()

    print(f"tritonserver {triton_version} (nvidia-pytriton {dist.wheel_version}): "
          f"start to live {start_s:.2f}s")
    print(f"{'model':<10} {'case':<30} {'what':<18} {'n':>3} {'min':>7} {'median':>7} "
          f"{'p90':>7} {'max':>7}")
    for model, r in results.items():
        for what, row in (("request->verified", r), ("execute step", r["execute_step"])):
            print(f"{model:<10} {r['note']:<30} {what:<18} {len(row['samples']):>3} "
                  f"{row['min']:>7.3f} {row['median']:>7.3f} {row['p90']:>7.3f} {row['max']:>7.3f}")
    print("cold load (plain HTTP load call): " + ", ".join(f"{m} {s:.3f}s" for m, s in cold.items()))
    checks = [check(f"triton.reload request -> verified, median ({r['note']})", r["median"], None, unit=" s")
              for r in results.values()]
    print_checks(checks)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "bench": "triton.reload request-to-verified (Runner.run wall time)",
        "unit": "seconds",
        "runs": args.runs,
        "server": {"pytriton_wheel": dist.wheel_version, "triton_version": triton_version,
                   "start_to_live_seconds": round(start_s, 3),
                   "mode": "explicit model control, Python backend, CPU"},
        "results": results,
        "cold_load_seconds": cold,
        "checks": checks,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
