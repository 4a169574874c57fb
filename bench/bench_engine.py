"""Benchmark of the policy engine: events/s of ``route()`` + ``decide()`` with
10, 100 and 1,000 loaded policies.

The 10 are the library in ``policies/`` (without the demo); the rest are
generated policies on unrelated alertnames and metric names, plus a few with
regex alertnames (which the index cannot pin), as a large fleet would have.
The input is a fixed synthetic stream (seeded): alerts and metric samples for
the library's signals over ~60 deployments and GPU nodes, mixed with noise that
matches no policy. Signals are parsed before timing: only matching and
deciding are measured, exactly the calls ``healer policy test`` and the worker
make. Run: ``python bench/bench_engine.py [--events N] [--profile]``; prints a
table and writes ``bench/results/engine.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import check, print_checks  # noqa: E402
from healer.catalog import default_catalog  # noqa: E402
from healer.engine import EngineSettings, decide, route  # noqa: E402
from healer.index import PolicySet  # noqa: E402
from healer.loader import load_documents, load_paths  # noqa: E402
from healer.models import Signal, fingerprint_of  # noqa: E402
from healer.policy import CompiledPolicy  # noqa: E402
from healer.state import GlobalState, TargetState  # noqa: E402

SIZES = (10, 100, 1000)
TARGET_RATIO = 0.5  # 1,000 policies at least half as fast as 10: "within 2x"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def library() -> list[CompiledPolicy]:
    files = sorted(p for p in (ROOT / "policies").glob("*.yaml"))
    res = load_paths(files)
    if res.errors:
        raise SystemExit("\n".join(map(str, res.errors)))
    return res.policies


def generated(n: int) -> list[CompiledPolicy]:
    """``n`` policies on signals the stream never carries (a few regex ones)."""
    docs = []
    for i in range(n):
        if i % 50 == 49:  # regex alertname: not indexable, checked for every alert
            trig: dict[str, Any] = {"alert": {"matchers": [f'alertname=~"Team{i}.*Down"']}}
        elif i % 3 == 0:
            trig = {
                "metric": {
                    "name": f"team{i}_queue_depth",
                    "group_by": ["namespace", "deployment"],
                    "aggregate": "avg",
                    "window": "5m",
                    "threshold": 100,
                    "for": "2m",
                }
            }
        else:
            trig = {
                "alert": {"matchers": [f'alertname="Team{i}ServiceDown"', 'severity="critical"']}
            }
        docs.append(
            {
                "apiVersion": "healer/v1",
                "kind": "Policy",
                "metadata": {"name": f"gen-{i}"},
                "spec": {
                    "priority": 50 + i % 7,
                    "trigger": trig,
                    "target": {
                        "kind": "Deployment",
                        "namespace": "{{ labels.namespace }}",
                        "name": "{{ labels.deployment }}",
                    },
                    "actions": [
                        {"use": "kubernetes.restart"},
                        {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/x"}},
                    ],
                    "guards": {"cooldown": "10m", "budget": {"max": 3, "per": "1h"}},
                },
            }
        )
    text = "\n---\n".join(json.dumps(d) for d in docs)  # JSON is YAML
    res = load_documents(text, "generated.yaml", default_catalog())
    if res.errors:
        raise SystemExit("\n".join(map(str, res.errors[:5])))
    return res.policies


def stream(n: int, seed: int = 7) -> list[Signal]:
    rnd = random.Random(seed)
    deployments = [(f"llm-{['prod', 'staging', 'dev'][i % 3]}", f"triton-m{i}") for i in range(60)]
    nodes = [f"gpu-node-{i:02d}" for i in range(40)]
    out: list[Signal] = []
    for k in range(n):
        t = T0 + timedelta(seconds=k * 0.5)
        ns, dep = rnd.choice(deployments)
        r = rnd.random()
        if r < 0.35:  # latency summaries, sometimes breaching
            v = rnd.choice([1e6, 2e6, 7e6]) if rnd.random() < 0.8 else 9e6
            labels = {
                "namespace": ns,
                "deployment": dep,
                "pod": f"{dep}-{rnd.randrange(4)}",
                "model": "llama",
                "quantile": rnd.choice(["0.5", "0.99"]),
            }
            out.append(_sample(k, t, "nv_inference_request_summary_us", v, labels))
        elif r < 0.55:
            labels = {
                "namespace": ns,
                "deployment": dep,
                "pod": f"{dep}-{rnd.randrange(4)}",
                "gpu": "0",
            }
            out.append(_sample(k, t, "DCGM_FI_DEV_GPU_UTIL", rnd.uniform(0, 100), labels))
        elif r < 0.62:
            labels = {"Hostname": rnd.choice(nodes), "gpu": str(rnd.randrange(8))}
            out.append(
                _sample(
                    k, t, "DCGM_FI_DEV_XID_ERRORS", 79.0 if rnd.random() < 0.01 else 0.0, labels
                )
            )
        elif r < 0.80:  # library alerts
            name = rnd.choice(
                [
                    "InferenceSuccessRateLow",
                    "KubePodCrashLooping",
                    "InferenceQPSSurge",
                    "TritonModelLoadFailed",
                    "TritonGPUMemoryHigh",
                    "GPUOffline",
                ]
            )
            labels = {
                "alertname": name,
                "severity": "critical",
                "namespace": ns,
                "deployment": dep,
                "pod": f"{dep}-{rnd.randrange(4)}",
                "service": dep,
                "model": "llama",
                "node": rnd.choice(nodes),
                "track": rnd.choice(["stable", "canary"]),
                "httproute": f"{dep}-route",
            }
            out.append(_alert(k, t, labels, rnd.choice(["firing", "firing", "resolved"])))
        elif r < 0.90:  # noise alerts: no policy matches
            labels = {
                "alertname": rnd.choice(
                    ["Watchdog", "NodeDiskFull", "KubeJobFailed", "CPUThrottlingHigh"]
                ),
                "namespace": ns,
                "severity": "warning",
            }
            out.append(_alert(k, t, labels, "firing"))
        else:  # noise metrics
            labels = {"namespace": ns, "pod": f"{dep}-0"}
            out.append(
                _sample(
                    k,
                    t,
                    rnd.choice(["node_load1", "process_cpu_seconds_total"]),
                    rnd.random(),
                    labels,
                )
            )
    return out


def _sample(k: int, t: datetime, name: str, v: float, labels: dict[str, str]) -> Signal:
    return Signal(kind="metric", time=t, event_id=f"e{k}", name=name, value=v, labels=labels)


def _alert(k: int, t: datetime, labels: dict[str, str], status: str) -> Signal:
    return Signal(
        kind="alert",
        time=t,
        event_id=f"e{k}",
        labels=labels,
        status=status,  # type: ignore[arg-type]
        fingerprint=fingerprint_of(labels),
        starts_at=T0,
    )


def run_once(ps: PolicySet, signals: list[Signal]) -> tuple[float, int]:
    states: dict[str, TargetState] = {}
    gstate = GlobalState()
    settings = EngineSettings()
    decisions = 0
    start = time.perf_counter()
    for s in signals:
        for rt in route(s, ps):
            st = states.get(rt.key)
            if st is None:
                st = states[rt.key] = TargetState()
            decisions += len(decide(s, rt, ps, st, gstate, settings).decisions)
    return time.perf_counter() - start, decisions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="5,000 events, 2 runs per size")
    ap.add_argument("--repeat", type=int, default=5, help="runs per size; the best counts")
    ap.add_argument("--profile", action="store_true", help="cProfile the 1,000-policy run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 5000, 2

    lib = library()
    if len(lib) != SIZES[0]:
        print(f"note: the library has {len(lib)} policies", file=sys.stderr)
    extra = generated(max(SIZES) - len(lib))
    signals = stream(args.events)
    sets = {size: PolicySet(lib[:size] + extra[: max(0, size - len(lib))]) for size in SIZES}
    results: dict[int, list[tuple[float, int]]] = {size: [] for size in SIZES}
    for _ in range(args.repeat):  # interleaved, so machine noise hits every size alike
        for size in SIZES:
            results[size].append(run_once(sets[size], signals))
    rows = []
    for size in SIZES:
        ps = sets[size]
        best, decisions = min(results[size])
        rows.append(
            {
                "policies": len(ps),
                "events": len(signals),
                "seconds": round(best, 4),
                "events_per_s": round(len(signals) / best),
                "decisions": decisions,
                "us_per_event": round(best / len(signals) * 1e6, 1),
            }
        )
    base = rows[0]["events_per_s"]
    head = ("policies", "events", "seconds", "events/s", "us/event", "decisions")
    print(" ".join(h.rjust(w) for h, w in zip(head, (9, 8, 9, 10, 9, 10), strict=True)))
    for r in rows:
        print(
            f"{r['policies']:>9} {r['events']:>8} {r['seconds']:>9.3f} {r['events_per_s']:>10} "
            f"{r['us_per_event']:>9} {r['decisions']:>10}"
        )
    ratio = rows[-1]["events_per_s"] / base
    checks = [check("engine throughput, 1,000 / 10 policies (within 2x)", ratio, ">=", TARGET_RATIO)]
    print_checks(checks)
    result = {
        "benchmark": "engine route+decide",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": _cpus(),
        "rows": rows,
        "ratio_1000_vs_10": round(ratio, 3),
        "checks": checks,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    if args.profile:
        ps = PolicySet(lib + extra)
        prof = cProfile.Profile()
        prof.enable()
        run_once(ps, signals)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
