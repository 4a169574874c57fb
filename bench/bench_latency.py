"""Benchmark: alert-to-action latency of a real worker at a steady input rate.

One ``healer run`` (6 partitions) with a dry-run policy on ``healer.noop``: every
alert (unique labels, 200 target deployments) gets an ``execute`` decision, an
action request on ``{app}.actions``, and the runner's snapshot -> plan ->
``action.succeeded`` (dry run: nothing changes). A paced producer sends alerts at
100 and then 1,000 per second (``--seconds`` each, default 15) while two tail
consumers in the same process read ``{app}.actions`` and ``{app}.audit``.

Latency = consumer receive time - producer send time, both ``time.time()`` in
this one process (the alert record's timestamp is that send time): "alert ->
action record" (receipt of the request on ``{app}.actions``) and "alert ->
action.succeeded" (receipt of the sealed audit record, i.e. visible to an audit
consumer). The worker's own producer timestamps of those records are reported
as well (same host clock), which leaves out the tail consumers' fetch delay.
Prints p50/p99/p99.9 per rate and writes bench/results/latency.json.

    .venv/bin/python bench/bench_latency.py [--rates 100,1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402

PARTITIONS = 6
TARGETS = 200
POLICY = """\
apiVersion: healer/v1
kind: Policy
metadata: {name: bench-latency}
spec:
  trigger:
    alert:
      matchers: ['alertname="BenchLatency"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: bench}}
  guards: {dry_run: true}
"""


@dataclass
class Tail:
    """Receive times and producer timestamps of the outputs, by input event id."""

    action_rx: dict[str, float] = field(default_factory=dict)
    action_ts: dict[str, float] = field(default_factory=dict)
    done_rx: dict[str, float] = field(default_factory=dict)
    done_ts: dict[str, float] = field(default_factory=dict)


async def tail(bootstrap: str, app: str, out: Tail, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(f"{app}.actions", f"{app}.audit", bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=5)
    await c.start()
    try:
        await asyncio.sleep(0.5)
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for tp, msgs in batch.items():
                for m in msgs:
                    v = json.loads(m.value)
                    eid = (v.get("event") or {}).get("id")
                    if not eid:
                        continue
                    if tp.topic.endswith(".actions"):
                        out.action_rx.setdefault(eid, now)
                        out.action_ts.setdefault(eid, m.timestamp / 1000.0)
                    elif v.get("kind") == "action.succeeded":
                        out.done_rx.setdefault(eid, now)
                        out.done_ts.setdefault(eid, m.timestamp / 1000.0)
    finally:
        await c.stop()


async def paced(bootstrap: str, app: str, rate: float, seconds: float, start_seq: int) -> dict[str, float]:
    """Send ``rate`` alerts/s for ``seconds``; event id -> send time."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await p.start()
    sent: dict[str, float] = {}
    futs: list[tuple[asyncio.Future[Any], float]] = []
    try:
        n = int(rate * seconds)
        t0 = time.time()
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = start_seq + i
            labels = {"alertname": "BenchLatency", "namespace": "bench",
                      "deployment": f"svc-{seq % TARGETS}", "seq": str(seq)}
            value = json.dumps({"status": "firing", "labels": labels,
                                "startsAt": "2026-03-02T10:00:00Z"}).encode()
            key = f"bench/deployment={labels['deployment']}".encode()
            now = time.time()
            futs.append((await p.send(f"{app}.alerts", value, key=key, timestamp_ms=int(now * 1000)), now))
        for fut, t in futs:
            md = await fut
            sent[f"{md.topic}:{md.partition}:{md.offset}"] = t
        return sent
    finally:
        await p.stop()


def stats(xs: list[float]) -> dict[str, float]:
    s = sorted(x * 1000.0 for x in xs)
    return {"n": len(s), "p50_ms": h.percentile(s, 50), "p99_ms": h.percentile(s, 99),
            "p999_ms": h.percentile(s, 99.9), "max_ms": s[-1] if s else float("nan")}


async def measure(bootstrap: str, app: str, rate: float, seconds: float, seq: int,
                  drain: float) -> dict[str, Any]:
    out = Tail()
    stop = asyncio.Event()
    task = asyncio.create_task(tail(bootstrap, app, out, stop))
    await asyncio.sleep(1.0)
    sent = await paced(bootstrap, app, rate, seconds, seq)
    deadline = time.time() + drain
    while time.time() < deadline and not set(sent) <= set(out.done_rx):
        await asyncio.sleep(0.2)
    stop.set()
    await task
    row: dict[str, Any] = {"rate": rate, "sent": len(sent), "_sent": sent,
                           "actions": len(set(sent) & set(out.action_rx)),
                           "succeeded": len(set(sent) & set(out.done_rx))}
    for name, d in (("action_rx", out.action_rx), ("action_ts", out.action_ts),
                    ("done_rx", out.done_rx), ("done_ts", out.done_ts)):
        row[name] = stats([d[e] - t for e, t in sent.items() if e in d])
    return row


STAGES = (("ingest", None, "event.received"), ("decide", "event.received", "action.queued"),
          ("queue", "action.queued", "action.running"), ("run", "action.running", "action.succeeded"))


def stages(bs: str, app: str, rows: list[dict[str, Any]]) -> None:
    """Where the time goes: per stage, the gap between the worker's audit-log records of one
    alert (producer timestamps; ingest starts at the bench's send time)."""
    at: dict[str, dict[str, float]] = {}
    for r in h.read_topic(bs, f"{app}.audit-log"):
        eid = (r.value.get("event") or {}).get("id")
        if eid:
            at.setdefault(eid, {}).setdefault(r.value.get("kind"), r.timestamp_ms / 1000.0)
    for row in rows:
        sent = row.pop("_sent")
        row["stages"] = {}
        for name, a, b in STAGES:
            xs = [at[e][b] - (t if a is None else at[e][a]) for e, t in sent.items()
                  if e in at and b in at[e] and (a is None or a in at[e])]
            row["stages"][name] = stats(xs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = h.unique_app("lat")
    rates = [float(r) for r in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    with h.broker(args.bootstrap, "latency") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "policies").mkdir()
        (tmp / "policies" / "latency.yaml").write_text(POLICY)
        with h.workers(bs, tmp) as wf:
            w = wf.start(tmp / "policies", app, partitions=PARTITIONS, **h.worker_env(args.worker_env))
            warm = asyncio.run(measure(bs, app, 50, 2, 10_000_000, drain=60))
            print(f"warm-up: {warm['succeeded']}/{warm['sent']} succeeded", file=sys.stderr)
            seq = 0
            for rate in rates:
                print(f"rate {rate:g}/s for {args.seconds:g}s; load {h.load_avg()}", file=sys.stderr)
                cpu0, t0 = h.cpu_seconds(w.proc.pid), time.monotonic()
                row = asyncio.run(measure(bs, app, rate, args.seconds, seq, drain=args.drain))
                row["load_avg"] = h.load_avg()
                row["worker_cpu_share"] = round((h.cpu_seconds(w.proc.pid) - cpu0)
                                                / (time.monotonic() - t0), 3)
                row["worker_cpu_ms_per_alert"] = round(
                    1000 * (h.cpu_seconds(w.proc.pid) - cpu0) / max(1, row["sent"]), 2)
                rows.append(row)
                seq += row["sent"]
            if w.proc.poll() is not None:
                raise SystemExit(f"worker died:\n{w.log_tail()}")
            w.stop()
        stages(bs, app, rows)
    table = []
    for r in rows:
        for key, label in (("action_rx", "alert -> action record (received)"),
                           ("action_ts", "alert -> action record (worker ts)"),
                           ("done_rx", "alert -> action.succeeded (received)"),
                           ("done_ts", "alert -> action.succeeded (worker ts)")):
            st = r[key]
            table.append({"rate": int(r["rate"]), "path": label, "n": st["n"], "p50": st["p50_ms"],
                          "p99": st["p99_ms"], "p99.9": st["p999_ms"], "max": st["max_ms"]})
    h.print_table(table, [("rate", "events/s"), ("path", "path"), ("n", "n"), ("p50", "p50 ms"),
                          ("p99", "p99 ms"), ("p99.9", "p99.9 ms"), ("max", "max ms")])
    print("stages (worker audit-log timestamps):")
    h.print_table([{"rate": int(r["rate"]), "stage": k, "p50": v["p50_ms"], "p99": v["p99_ms"]}
                   for r in rows for k, v in r["stages"].items()],
                  [("rate", "events/s"), ("stage", "stage"), ("p50", "p50 ms"), ("p99", "p99 ms")])
    top = next((r for r in rows if r["rate"] == 1000), None)
    if top:
        p99 = top["done_rx"]["p99_ms"]
        print(f"worker CPU per alert {top['worker_cpu_ms_per_alert']} ms "
              f"(share of one core {top['worker_cpu_share']})")
        print(f"p99 alert -> action.succeeded at 1,000/s: {p99:.1f} ms (target < 50 ms); "
              f"alert -> action record p99 {top['action_rx']['p99_ms']:.1f} ms")
    return {"bench": "latency", "seconds_per_rate": args.seconds, "targets": TARGETS,
            "partitions": PARTITIONS, "rows": rows, "machine": h.machine(), "time": h.now_iso(),
            "target": "p99 < 50 ms at 1,000 events/s",
            "method": "producer send time -> tail consumer receive time, one process, time.time()"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--drain", type=float, default=120.0, help="max wait for stragglers per rate")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE",
                    help="extra environment for the worker (repeatable), e.g. PRODUCER_LINGER=0.002")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    h.exit_on_sigterm()
    h.write_result("latency", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
