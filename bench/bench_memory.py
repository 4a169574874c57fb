"""Benchmark: worker memory (RSS) with many metric groups and bounded windows.

One ``healer run`` with a metric policy grouped by (namespace, deployment) over
a 5-minute window, globally paused (so the run measures state, not executors).
N samples (default 1,000,000) for 10,000 groups (each its own target, so its
own engine state: window, breach run, dedup) are produced in chunks, with event
time advancing 1 s per 10,000 samples so each group keeps only its last 5
minutes of samples. RSS (VmRSS from /proc/<pid>/status) is read at start,
after each quarter of the input, and at the end; a bounded window shows as a
flat RSS once every group exists. Prints a table, writes bench/results/memory.json.

    .venv/bin/python bench/bench_memory.py [--n 1000000] [--groups 10000]
"""

from __future__ import annotations

import argparse
import json
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
from healer.ingest import partition_key  # noqa: E402

PARTITIONS = 6
POLICY = """\
apiVersion: healer/v1
kind: Policy
metadata: {name: bench-memory}
spec:
  trigger:
    metric:
      name: llm_request_latency_p99_seconds
      group_by: [namespace, deployment]
      aggregate: avg
      window: 5m
      op: ">"
      threshold: 5
      for: 1m
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}}
"""


def samples(app: str, start: int, count: int, groups: int) -> list[h.Rec]:
    out = []
    for k in range(start, start + count):
        g = k % groups
        t = h.T0 + timedelta(seconds=k // groups)
        labels = {"namespace": f"ns-{g % 50}", "deployment": f"svc-{g}", "pod": f"svc-{g}-0"}
        v = 6.0 if (k // groups) % 7 == 0 else 1.0 + (k % 5)
        sample = {"name": "llm_request_latency_p99_seconds", "value": v, "labels": labels,
                  "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
        out.append(h.Rec(f"{app}.metrics", partition_key(labels),
                         json.dumps(sample, separators=(",", ":")).encode(),
                         int(t.timestamp() * 1000)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = h.unique_app("mem")
    rows: list[dict[str, Any]] = []
    with h.broker(args.bootstrap, "memory") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "policies").mkdir()
        (tmp / "policies" / "memory.yaml").write_text(POLICY)
        with h.workers(bs, tmp) as wf:
            w = wf.start(tmp / "policies", app, partitions=PARTITIONS, HEALER_PAUSED="true")
            pid = w.proc.pid
            t0 = time.monotonic()
            rows.append({"samples": 0, "groups": 0, "rss_mib": h.rss_kb(pid) / 1024, "seconds": 0.0})
            quarter = max(1, args.n // 4)
            done = 0
            while done < args.n:
                step = min(quarter, args.n - done)
                for off in range(0, step, 50_000):
                    h.produce(bs, samples(app, done + off, min(50_000, step - off), args.groups))
                done += step
                ok, lag = h.wait_drained(bs, app, timeout=args.timeout, progress=30, workers=[w])
                if not ok:
                    raise SystemExit(f"not drained after {done} samples: {lag}")
                rows.append({"samples": done, "groups": min(done, args.groups),
                             "rss_mib": h.rss_kb(pid) / 1024, "seconds": time.monotonic() - t0})
                print(f"  {done:,} samples: RSS {rows[-1]['rss_mib']:.0f} MiB; load {h.load_avg()}",
                      file=sys.stderr)
            w.stop()
    h.print_table(rows, [("samples", "samples"), ("groups", "groups"), ("rss_mib", "RSS MiB"),
                         ("seconds", "elapsed s")])
    growth = rows[-1]["rss_mib"] - rows[1]["rss_mib"] if len(rows) > 2 else 0.0
    print(f"RSS at start {rows[0]['rss_mib']:.0f} MiB, after {args.n:,} samples "
          f"{rows[-1]['rss_mib']:.0f} MiB; growth after the first quarter {growth:.0f} MiB")
    return {"bench": "memory", "n": args.n, "groups": args.groups, "window": "5m", "rows": rows,
            "rss_start_mib": rows[0]["rss_mib"], "rss_end_mib": rows[-1]["rss_mib"],
            "growth_after_first_quarter_mib": growth, "machine": h.machine(), "time": h.now_iso()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    h.exit_on_sigterm()
    h.write_result("memory", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
