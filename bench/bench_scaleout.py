"""Benchmark: scale-out, 1 vs 2 worker processes on 12-partition topics.

For each worker count, a fresh app id (its own topics, ``HEALER_TOPIC_PARTITIONS=12``)
and the same 100 policies as the throughput bench, globally paused (every input
is parsed, audited, routed, decided and sealed; no executor runs). The workers
start on empty topics and the bench waits until each is ready, so the consumer
group is settled; then N inputs (default 60,000) are produced at once. Rate =
N / (first audit-log record -> last sealed audit record), producer timestamps of
the workers' own output (see bench_throughput.py). On 2 cores two workers also
share the CPU with the broker and the producer, so the ratio says how much of a
second worker a 2-core box can use, not the scaling on a real cluster.
Prints a table, writes bench/results/scaleout.json.

    .venv/bin/python bench/bench_scaleout.py [--n 60000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402
from bench.chaos.common import audit_view  # noqa: E402

PARTITIONS = 12


def one(bs: str, tmp: Path, n_workers: int, n: int, timeout: float) -> dict[str, Any]:
    app = h.unique_app(f"so{n_workers}w")
    recs = h.fleet_inputs(app, n, seed=11)
    with h.workers(bs, tmp) as wf:
        ws = [wf.start(tmp / "policies", app, wait=False, partitions=PARTITIONS, HEALER_PAUSED="true")
              for _ in range(n_workers)]
        for w in ws:
            w.wait_ready(timeout=180)
        time.sleep(3.0)  # let a late rebalance settle
        for w in ws:
            w.wait_ready(timeout=120)
        cpu0 = [h.cpu_seconds(w.proc.pid) for w in ws]
        load0 = h.load_avg()
        h.produce(bs, recs)
        ok, lag = h.wait_drained(bs, app, timeout=timeout, progress=20, workers=ws, signals_committed=True)
        cpu = [h.cpu_seconds(w.proc.pid) - c for w, c in zip(ws, cpu0, strict=True)]
        if not ok:
            raise SystemExit(f"{n_workers} worker(s) did not drain in {timeout}s: {lag}")
        first, last = h.worker_window(bs, app)
        for w in ws:
            w.stop()
    view = audit_view(bs, app)  # alerts by event.received, metric records by input.batch
    window = (last - first) / 1000.0
    return {"workers": n_workers, "events": n, "received": len(view.received), "seconds": window,
            "per_s": n / window, "cpu_s": sum(cpu), "per_cpu_s": n / sum(cpu) if sum(cpu) else 0.0,
            "chain_ok": view.chain_ok, "load_before": load0, "load_after": h.load_avg()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with h.broker(args.bootstrap, "scaleout") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        n_pol = h.hundred_policies(tmp / "policies", 100)
        for k in (1, 2):
            print(f"{k} worker(s), {args.n:,} events; load {h.load_avg()}", file=sys.stderr)
            rows.append(one(bs, tmp, k, args.n, args.timeout))
    h.print_table(rows, [("workers", "workers"), ("events", "events"), ("received", "received"),
                         ("seconds", "seconds"), ("per_s", "events/s"), ("cpu_s", "worker cpu s"),
                         ("per_cpu_s", "events/cpu-s"), ("chain_ok", "chain ok")])
    ratio = rows[1]["per_s"] / rows[0]["per_s"]
    print(f"(2 cores shared with the broker and the producer; load {h.load_avg()})")
    checks = [h.check("scale-out: 2 workers / 1 worker, events/s", ratio, None, unit="x")]
    h.print_checks(checks)
    return {"bench": "scaleout", "partitions": PARTITIONS, "policies": n_pol, "rows": rows,
            "ratio_2_vs_1": round(ratio, 3), "checks": checks, "machine": h.machine(), "time": h.now_iso()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--quick", action="store_true", help="20,000 inputs")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 20_000
    h.exit_on_sigterm()
    h.write_result("scaleout", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
