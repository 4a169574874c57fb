"""Benchmark: the metric pipeline against bare consumers, as ratios measured in one run.

Two phases on one embedded broker, each on its own topics (6 partitions), one
real ``healer run`` with 100 policies (the library plus generated ones),
globally paused (every sample is parsed, audited per input batch, routed,
put in its window and evaluated; no executor runs):

1. **single-sample records**: N records (default 200,000), one sample each,
   for G series (default 2,000 pods of 500 deployments; GPU utilisation and
   request latency, the library's metric policies). Healer's rate against a
   bare Faust agent reading the same topic (``bench/bare_faust.py``:
   ``take_events(1000)``, raw serializer, each value parsed). And the Kafka
   records the worker produced and consumed per sample, counted from the
   broker's end offsets of every topic it writes or reads.
2. **batched records**: M samples (default 400,000) in records of 200 samples.
   Healer's samples/s against a bare aiokafka consumer that JSON-parses the
   same records.

Healer's time window: from the first record any stage wrote (earliest producer
timestamp on signals / audit-log / targets changelog) to the last one (latest
on signals / audit / targets changelog), i.e. its own clock, polling
granularity excluded. Prints a table with each ratio against its target and
writes bench/results/pipeline.json. ``--profile`` records the worker of phase
1 with py-spy and prints its hottest functions.

    .venv/bin/python bench/bench_pipeline.py [--n 200000] [--batched 400000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402
from bench.bench_throughput import profile_worker, raw_consume  # noqa: E402
from healer.ingest import partition_key  # noqa: E402

PARTITIONS = 6
TARGET_VS_FAUST = 0.8
TARGET_VS_AIOKAFKA = 0.5
TARGET_RECORDS_PER_SAMPLE = 1.2


def series(groups: int) -> list[tuple[str, dict[str, str]]]:
    """(metric name, labels) of ``groups`` pods: 4 pods per deployment, two metrics each."""
    out = []
    for g in range(groups // 2):
        dep = f"triton-m{g // 4}"
        pod = {"namespace": "llm-prod", "deployment": dep, "pod": f"{dep}-{g % 4}"}
        out.append(("DCGM_FI_DEV_GPU_UTIL", {**pod, "gpu": "0"}))
        out.append(("nv_inference_request_summary_us", {**pod, "model": "llama", "quantile": "0.99"}))
    return out


def samples(n: int, groups: int, seed: int = 3) -> list[tuple[bytes, dict[str, Any]]]:
    """``n`` samples round-robin over the series, event time 15 s apart per series (a scrape)."""
    rnd = random.Random(seed)
    ss = series(groups)
    out = []
    for k in range(n):
        name, labels = ss[k % len(ss)]
        t = h.T0 + timedelta(seconds=15 * (k // len(ss)))
        v = rnd.uniform(20, 95) if name.startswith("DCGM") else rnd.choice([1e6, 2e6, 3e6])
        out.append((partition_key(labels), {"name": name, "value": round(v, 3), "labels": labels,
                                            "timestamp": t.timestamp()}))
    return out


def single_records(topic: str, ss: list[tuple[bytes, dict[str, Any]]]) -> list[h.Rec]:
    return [h.Rec(topic, key, json.dumps(s, separators=(",", ":")).encode(), None) for key, s in ss]


def batched_records(topic: str, ss: list[tuple[bytes, dict[str, Any]]], per: int) -> list[h.Rec]:
    """Records of ``per`` samples, each record's samples from one partition key (as a
    remote-write receiver or a batching exporter groups them)."""
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    out = []
    for key, s in ss:
        group = by_key.setdefault(key, [])
        group.append(s)
        if len(group) == per:
            out.append(h.Rec(topic, key, json.dumps(group, separators=(",", ":")).encode(), None))
            by_key[key] = []
    out += [h.Rec(topic, k, json.dumps(g, separators=(",", ":")).encode(), None) for k, g in by_key.items() if g]
    return out


def healer_window(bs: str, app: str) -> float:
    """Seconds from the worker's first output record to its last (producer timestamps)."""
    edges = {t: h.edge_timestamps(bs, [t]) for t in
             (f"{app}.signals", f"{app}.audit-log", f"{app}-targets-changelog", f"{app}.audit")}
    first = min(e[0] for t, e in edges.items() if not t.endswith(".audit"))
    last = max(e[1] for t, e in edges.items() if not t.endswith(".audit-log"))
    print("  output edges (s after the first):", {t.rsplit(".", 1)[-1]: (round((a - first) / 1000, 2),
          round((b - first) / 1000, 2)) for t, (a, b) in edges.items()}, file=sys.stderr)
    return (last - first) / 1000.0


def records_per_sample(bs: str, app: str, inputs: int, n_samples: int) -> tuple[float, float, dict[str, int]]:
    """(produced, consumed) Kafka records per sample, from the broker's end offsets."""
    produced_topics = [f"{app}.{t}" for t in ("signals", "audit-log", "audit", "deadletter", "actions",
                                              "approval-requests", "approvals")]
    produced_topics += [f"{app}-{t}-changelog" for t in ("targets", "ledger", "pending")]
    ends = h.end_offsets(bs, produced_topics)
    per_topic: dict[str, int] = {}
    for (t, _p), end in ends.items():
        per_topic[t] = per_topic.get(t, 0) + end
    produced = sum(per_topic.values())
    # the stages read the input, signals, actions, approval topics; the sealer reads the audit-log
    consumed = inputs + sum(per_topic.get(f"{app}.{t}", 0)
                            for t in ("signals", "actions", "approval-requests", "approvals", "audit-log"))
    return produced / n_samples, consumed / n_samples, per_topic


def bare_faust(bs: str, topic: str, n: int) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "bench.bare_faust", "--bootstrap", bs, "--topic", topic,
                          "--n", str(n)], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            got: dict[str, Any] = json.loads(line)
            return got
    raise SystemExit(f"bare Faust agent failed ({res.returncode}):\n{res.stderr[-3000:]}")


def run_healer(bs: str, tmp: Path, app: str, label: str, args: argparse.Namespace, idle_cpu: float,
               profile: bool = False) -> dict[str, Any]:
    with h.workers(bs, tmp) as wf:
        w = wf.start(tmp / "policies", app, partitions=PARTITIONS, HEALER_PAUSED="true",
                     HEALER_LOG_LEVEL=args.log_level, **h.worker_env(args.worker_env))
        cpu0, rss0 = idle_cpu, h.rss_kb(w.proc.pid)
        top: list[tuple[str, float]] = []
        if profile:
            time.sleep(2)
            top = profile_worker(w.proc.pid, args.profile_seconds, tmp / f"pyspy-{label}.txt")
        ok, lag = h.wait_drained(bs, app, timeout=args.timeout, progress=15, workers=[w],
                                 signals_committed=True)
        if not ok:
            raise SystemExit(f"{label}: worker did not drain within {args.timeout}s: lag {lag}\n{w.log_tail()}")
        cpu, rss1 = h.cpu_seconds(w.proc.pid) - cpu0, h.rss_kb(w.proc.pid)
        w.stop()
    return {"seconds": healer_window(bs, app), "cpu_s": cpu, "rss_kib": [rss0, rss1], "profile": top}


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "pipeline", "machine": h.machine(), "time": h.now_iso()}
    with h.broker(args.bootstrap, "pipeline") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        n_pol = h.hundred_policies(tmp / "policies", 100)
        idle_cpu = h.startup_cpu(bs, tmp, tmp / "policies", PARTITIONS, HEALER_PAUSED="true",
                                 HEALER_LOG_LEVEL=args.log_level, **h.worker_env(args.worker_env))
        rows = []

        # ---- phase 1: single-sample records
        app1 = h.unique_app("p1")
        h.create_input_topics(bs, app1, PARTITIONS)
        ss = samples(args.n, args.groups)
        h.produce(bs, single_records(f"{app1}.metrics", ss))
        print(f"phase 1: {args.n:,} single-sample records, {args.groups} series, {n_pol} policies",
              file=sys.stderr)
        r1 = run_healer(bs, tmp, app1, "single", args, idle_cpu, profile=args.profile)
        rate1 = args.n / r1["seconds"]
        produced, consumed, per_topic = records_per_sample(bs, app1, args.n, args.n)
        bare = bare_faust(bs, f"{app1}.metrics", args.n)
        bare_rate = bare["records"] / bare["seconds"]
        rows += [
            {"run": "healer, single-sample records", "samples": args.n, "seconds": r1["seconds"],
             "per_s": rate1, "cpu_s": r1["cpu_s"], "per_cpu_s": args.n / r1["cpu_s"]},
            {"run": "bare Faust agent, same topic", "samples": bare["samples"], "seconds": bare["seconds"],
             "per_s": bare_rate, "cpu_s": bare["cpu_seconds"], "per_cpu_s": bare["samples"] / bare["cpu_seconds"]},
        ]

        # ---- phase 2: batched records
        app2 = h.unique_app("p2")
        h.create_input_topics(bs, app2, PARTITIONS)
        ss2 = samples(args.batched, args.groups, seed=4)
        recs2 = batched_records(f"{app2}.metrics", ss2, args.per_record)
        h.produce(bs, recs2)
        print(f"phase 2: {args.batched:,} samples in {len(recs2):,} records", file=sys.stderr)
        r2 = run_healer(bs, tmp, app2, "batched", args, idle_cpu)
        rate2 = args.batched / r2["seconds"]
        dec_s, dec_cpu = asyncio.run(raw_consume(bs, [f"{app2}.metrics"], len(recs2), decode=True))
        aio_rate = args.batched / dec_s
        rows += [
            {"run": f"healer, {args.per_record}-sample records", "samples": args.batched,
             "seconds": r2["seconds"], "per_s": rate2, "cpu_s": r2["cpu_s"], "per_cpu_s": args.batched / r2["cpu_s"]},
            {"run": "bare aiokafka + json.loads, same records", "samples": args.batched, "seconds": dec_s,
             "per_s": aio_rate, "cpu_s": dec_cpu, "per_cpu_s": args.batched / dec_cpu},
        ]

    h.print_table(rows, [("run", "run"), ("samples", "samples"), ("seconds", "seconds"),
                         ("per_s", "samples/s"), ("cpu_s", "cpu s"), ("per_cpu_s", "samples/cpu-s")])
    ratio1, ratio2 = rate1 / bare_rate, rate2 / aio_rate
    checks = [
        h.check("single-sample records: healer / bare Faust agent", ratio1, ">=", TARGET_VS_FAUST),
        h.check(f"{args.per_record}-sample records: healer / bare aiokafka+JSON", ratio2, ">=", TARGET_VS_AIOKAFKA),
        h.check("Kafka records produced per sample (single-sample)", produced, "<=", TARGET_RECORDS_PER_SAMPLE),
        h.check("Kafka records consumed per sample (single-sample)", consumed, "<=", TARGET_RECORDS_PER_SAMPLE),
    ]
    h.print_checks(checks)
    print(f"records written per topic (phase 1): {per_topic}")
    for label, r in (("single", r1), ("batched", r2)):
        print(f"worker RSS ({label}): {r['rss_kib'][0] // 1024} -> {r['rss_kib'][1] // 1024} MiB")
    if r1["profile"]:
        print("py-spy (phase 1): hottest functions (own samples, %; then 'incl': healer's own, inclusive):")
        for f, pct in r1["profile"]:
            print(f"  {pct:5.1f}  {f}")
    result.update({
        "policies": n_pol, "groups": args.groups, "rows": rows,
        "ratio_single_vs_bare_faust": round(ratio1, 4), "ratio_batched_vs_aiokafka_json": round(ratio2, 4),
        "produced_per_sample": round(produced, 4), "consumed_per_sample": round(consumed, 4),
        "records_per_topic_single": per_topic, "checks": checks,
        "rss_kib": {"single": r1["rss_kib"], "batched": r2["rss_kib"]}, "profile_single": r1["profile"],
    })
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="single-sample records")
    ap.add_argument("--batched", type=int, default=400_000, help="samples in batched records")
    ap.add_argument("--quick", action="store_true", help="50,000 single-sample records, 100,000 batched samples")
    ap.add_argument("--per-record", type=int, default=200)
    ap.add_argument("--groups", type=int, default=2000, help="metric series")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-seconds", type=float, default=20.0)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.batched = 50_000, 100_000
    h.exit_on_sigterm()
    h.write_result("pipeline", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
