"""Benchmark: actions one worker executes per second with the ``healer.noop`` executor.

N alerts (default 20,000), each naming a target of its own, are produced to
``{app}.alerts`` (6 partitions) before one real ``healer run`` starts with one
policy: ``healer.noop``, not a dry run, so every alert becomes one action
request and one action that runs snapshot, execute and verify
(``action.running``, ``action.succeeded``, ``action.verified`` audited; the
ledger entry written twice). Nothing is paused.

Rate = verified actions / (first ``action.running`` -> last ``action.verified``),
the producer timestamps of the sealed records on ``{app}.audit`` (the worker's
clock, at the end of the pipeline). Reported beside it: the same span on
``{app}.audit-log`` (the runner's group commits, before sealing), and when
decide had put the last request on ``{app}.actions``: when that is long before
the last action ran, the execute stage is what limits the rate. Actions per
worker CPU-second: verified actions / the worker's CPU over the whole run
minus what a worker spends starting up (measured on an idle worker), so the
ingest, decisions and sealing of the alerts are in it: the end-to-end cost.

``--profile``: once every request is on ``{app}.actions`` (decide is done),
py-spy records the worker for ``--profile-seconds``: what it samples is the
execute stage and the sealer. ``--concurrency K`` runs the worker with
``HEALER_MAX_CONCURRENT_ACTIONS=K`` (default: the worker's default, 16).
Prints a table and a "target ... met/SHORT" line, writes bench/results/actions.json.

    .venv/bin/python bench/bench_actions.py [--n 20000] [--quick] [--profile] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402
from bench.bench_throughput import profile_worker  # noqa: E402
from healer.ingest import partition_key  # noqa: E402

PARTITIONS = 6
TARGET_ACTIONS_PER_S = 1000.0


def written_topics(app: str) -> list[str]:
    """The topics the worker writes while it runs the actions."""
    return [f"{app}.{t}" for t in ("signals", "actions", "audit-log", "audit")] + [f"{app}-ledger-changelog",
                                                                                   f"{app}-targets-changelog"]


def alerts(app: str, n: int) -> list[h.Rec]:
    """``n`` firing alerts, each on a Deployment of its own (so each one becomes an action)."""
    out = []
    for i in range(n):
        labels = {"alertname": "BenchActions", "namespace": "bench", "deployment": f"svc-{i}"}
        value = json.dumps({"status": "firing", "labels": labels, "startsAt": "2026-03-02T10:00:00Z"},
                           separators=(",", ":")).encode()
        out.append(h.Rec(f"{app}.alerts", partition_key(labels), value, None))
    return out


def span(times: dict[str, list[int]], first: str, last: str) -> tuple[float, int, int]:
    """(seconds, first ms, last ms) from the earliest ``first`` record to the latest ``last``."""
    a, b = min(times.get(first) or [0]), max(times.get(last) or [0])
    return (b - a) / 1000.0, a, b


def wait_queued(bs: str, app: str, n: int, timeout: float, w: Any) -> float:
    """Wait until ``n`` requests are on ``{app}.actions``; seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if w.proc.poll() is not None:
            raise SystemExit(f"worker exited with {w.proc.returncode}:\n{w.log_tail()}")
        if sum(h.end_offsets(bs, [f"{app}.actions"]).values()) >= n:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = h.unique_app("act")
    env = dict(h.worker_env(args.worker_env))
    if args.concurrency:
        env["HEALER_MAX_CONCURRENT_ACTIONS"] = str(args.concurrency)
    with h.broker(args.bootstrap, "actions") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "policies").mkdir()
        (tmp / "policies" / "actions.yaml").write_text(h.noop_alert_policy("bench-actions", "BenchActions"))
        idle_cpu = h.startup_cpu(bs, tmp, tmp / "policies", PARTITIONS, **env)
        h.create_input_topics(bs, app, PARTITIONS)
        h.produce(bs, alerts(app, args.n))
        print(f"produced {args.n:,} alerts, each a new target; load {h.load_avg()}", file=sys.stderr)
        top: list[tuple[str, float]] = []
        with h.workers(bs, tmp) as wf:
            w = wf.start(tmp / "policies", app, partitions=PARTITIONS, **env)
            if args.profile:
                waited = wait_queued(bs, app, args.n, args.timeout, w)
                print(f"  every request on {app}.actions {waited:.1f}s after the worker was ready; "
                      f"profiling {args.profile_seconds:g}s", file=sys.stderr)
                raw = Path(args.profile_raw) if args.profile_raw else tmp / "pyspy-actions.txt"
                top = profile_worker(w.proc.pid, args.profile_seconds, raw)
            ok, lag = h.wait_drained(bs, app, timeout=args.timeout, progress=15, workers=[w],
                                     signals_committed=True)
            if not ok:
                raise SystemExit(f"worker did not drain within {args.timeout}s: lag {lag}\n{w.log_tail()}")
            cpu = h.cpu_seconds(w.proc.pid) - idle_cpu
            rss = h.rss_kb(w.proc.pid)
            w.stop()
        sealed: dict[str, list[int]] = {}
        for r in h.read_topic(bs, f"{app}.audit"):
            sealed.setdefault(str(r.value.get("kind")), []).append(r.timestamp_ms)
        logged: dict[str, list[int]] = {}
        for entry, ts in h.audit_log_entries(bs, app):
            logged.setdefault(str(entry.get("kind")), []).append(ts)
        queued_first, queued_last = h.edge_timestamps(bs, [f"{app}.actions"])
        written: dict[str, int] = {}
        for (t, _p), end in h.end_offsets(bs, written_topics(app)).items():
            written[t.removeprefix(app).lstrip(".-")] = written.get(t.removeprefix(app).lstrip(".-"), 0) + end

    verified = len(sealed.get("action.verified", []))
    failed = len(sealed.get("action.failed", []))
    seal_s, _, run_last = span(sealed, "action.running", "action.verified")
    log_s, _, _ = span(logged, "action.running", "action.verified")
    rate = verified / seal_s if seal_s > 0 else 0.0
    rows = [
        {"span": "sealed on audit: first action.running -> last action.verified", "seconds": seal_s,
         "actions": verified, "per_s": rate},
        {"span": "audit-log: first action.running -> last action.verified", "seconds": log_s,
         "actions": verified, "per_s": verified / log_s if log_s > 0 else 0.0},
        {"span": "actions topic: first request -> last request (decide)", "seconds": (queued_last - queued_first) / 1000,
         "actions": args.n, "per_s": args.n / max(0.001, (queued_last - queued_first) / 1000)},
    ]
    h.print_table(rows, [("span", "span (producer timestamps)"), ("seconds", "seconds"), ("actions", "actions"),
                         ("per_s", "actions/s")])
    behind = (run_last - queued_last) / 1000.0
    print(f"verified {verified:,} of {args.n:,} (failed {failed:,}); the last request was queued "
          f"{behind:.1f}s before the last action was verified; worker CPU {cpu:.1f}s "
          f"({verified / cpu if cpu > 0 else 0:,.0f} actions per CPU-second, {1000 * cpu / max(1, verified):.2f} ms "
          f"per action end to end); RSS {rss // 1024} MiB")
    print("Kafka records the worker wrote, per action: "
          + ", ".join(f"{t} {n / max(1, args.n):.2f}" for t, n in written.items())
          + f"; audit-log entries per record {sum(len(v) for v in logged.values()) / max(1, written.get('audit-log', 0)):.1f}")
    checks = [
        h.check("actions verified (every alert a new target)", float(verified), ">=", float(args.n)),
        h.check("actions/s, one worker, healer.noop", rate, ">=", TARGET_ACTIONS_PER_S, "/s"),
        h.check("actions per worker CPU-second (end to end)", verified / cpu if cpu > 0 else 0.0, None),
    ]
    h.print_checks(checks)
    if top:
        print("py-spy (execute + seal, after decide was done): hottest functions (own samples, %; "
              "then 'incl': healer's own, inclusive):")
        for f, pct in top:
            print(f"  {pct:5.1f}  {f}")
    return {"bench": "actions", "n": args.n, "partitions": PARTITIONS, "concurrency": args.concurrency or 16,
            "rows": rows, "verified": verified, "failed": failed, "actions_per_s": round(rate, 1),
            "worker_cpu_s": round(cpu, 2), "actions_per_cpu_s": round(verified / cpu, 1) if cpu > 0 else None,
            "last_request_before_last_verified_s": round(behind, 2), "audit_kinds": {k: len(v) for k, v in sealed.items()},
            "rss_kib": rss, "records_written": written, "checks": checks, "profile": top, "machine": h.machine(), "time": h.now_iso(),
            "method": "verified / (first action.running -> last action.verified), sealed-record producer timestamps"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="alerts, each one action")
    ap.add_argument("--quick", action="store_true", help="5,000 alerts")
    ap.add_argument("--concurrency", type=int, default=0, help="HEALER_MAX_CONCURRENT_ACTIONS (0: the default)")
    ap.add_argument("--profile", action="store_true", help="py-spy the worker once decide is done")
    ap.add_argument("--profile-seconds", type=float, default=15.0)
    ap.add_argument("--profile-raw", default=None, help="keep py-spy's raw stacks in this file")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 5000
    h.exit_on_sigterm()
    h.write_result("actions", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
