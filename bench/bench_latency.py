"""Benchmark: alert -> action latency of a real worker at a steady input rate, two scenarios.

One ``healer run`` (6 partitions) with one policy: alerts ``BenchLatency`` on a
Deployment named by the alert's labels, action ``healer.noop``, guard
``cooldown: 1h``. Not a dry run: ``healer.noop`` changes nothing anyway, so each
action takes the full path a real action takes (snapshot, execute, verify;
``action.running``, ``action.succeeded``, ``action.verified`` audited) and the
latency is measured under the execute stage's real load (a dry run would skip
execute and verify). ``--dry-run`` measures the dry run instead.

Scenarios (each on targets no earlier scenario used):

- ``new``: 200 alerts/s, every alert a new target, so every alert becomes an
  action request on ``{app}.actions``;
- ``repeat``: 1,000 alerts/s, one alert in ten a new target; the other nine
  name a target already acted on in this scenario (each alert has labels of its
  own, so none is a duplicate): decided ``suppressed`` (cooldown) and audited
  (``decision.suppressed``), no action.

A paced producer sends the alerts (``--seconds`` per scenario, default 30)
while one tail consumer in the same process reads ``{app}.actions`` and
``{app}.audit`` (assigned and positioned at the end before the first alert).
Latency = tail receive time - producer send time, both ``time.time()`` in this
one process (the alert record's timestamp is its send time): "alert -> action
record" (the request on ``{app}.actions``, the target), "alert -> sealed
action.succeeded" (visible to an audit consumer) and, in ``repeat``, "alert ->
sealed decision.suppressed". The worker's own producer timestamps of those
records are reported too (same host clock: that leaves out the tail's fetch
delay), and the time between the stages' audit-log records of each alert.
The producer's achieved rate and how late its sends were are reported: the
figures only mean something if it kept the pace.

Prints a table, one "target ... met/SHORT" line per scenario and writes
bench/results/latency.json.

    .venv/bin/python bench/bench_latency.py [--seconds 30] [--quick] [--dry-run]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
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
from healer.ingest import partition_key  # noqa: E402

PARTITIONS = 6
TARGET_P99_MS = 50.0
PACE_TOLERANCE = 0.98  # the producer kept the pace when it reached this share of the rate


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float
    new_every: int  # one alert in ``new_every`` names a new target; the others a target already acted on
    what: str


SCENARIOS = (
    Scenario("new", 200.0, 1, "every alert a new target"),
    Scenario("repeat", 1000.0, 10, "one alert in ten a new target, nine suppressed (cooldown)"),
)


def alerts(prefix: str, n: int, new_every: int, seed: int = 5) -> list[tuple[bytes, bytes, bool]]:
    """(key, value, new target?) of ``n`` alerts: alert ``i`` names a new target when
    ``i % new_every == 0``, else one of the targets this list created before it."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        new = i % new_every == 0
        target = i // new_every if new else rnd.randrange(i // new_every + 1)
        labels = {"alertname": "BenchLatency", "namespace": "bench", "deployment": f"{prefix}-{target}",
                  "seq": f"{prefix}-{i}"}
        value = json.dumps({"status": "firing", "labels": labels, "startsAt": "2026-03-02T10:00:00Z"},
                           separators=(",", ":")).encode()
        out.append((partition_key(labels), value, new))
    return out


@dataclass
class Tail:
    """Receive times and worker producer timestamps of the outputs, by input event id."""

    action_rx: dict[str, float] = field(default_factory=dict)
    action_ts: dict[str, float] = field(default_factory=dict)
    done_rx: dict[str, float] = field(default_factory=dict)
    done_ts: dict[str, float] = field(default_factory=dict)
    supp_rx: dict[str, float] = field(default_factory=dict)
    supp_ts: dict[str, float] = field(default_factory=dict)


async def start_tail(bootstrap: str, app: str) -> Any:
    """A consumer on ``{app}.actions`` and ``{app}.audit`` positioned at their ends now,
    so that nothing written after this call is missed."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=5, max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    tps = await h._tps(c, [f"{app}.actions", f"{app}.audit"])
    c.assign(tps)
    await c.seek_to_end(*tps)
    for tp in tps:
        await c.position(tp)  # resolve the end offset now, not at the first fetch
    return c


async def tail(c: Any, out: Tail, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batch = await c.getmany(timeout_ms=20, max_records=10_000)
        now = time.time()
        for tp, msgs in batch.items():
            actions = tp.topic.endswith(".actions")
            for m in msgs:
                raw = m.value or b""
                if actions:
                    rx, ts = out.action_rx, out.action_ts
                elif b"action.succeeded" in raw:
                    rx, ts = out.done_rx, out.done_ts
                elif b"decision.suppressed" in raw:
                    rx, ts = out.supp_rx, out.supp_ts
                else:
                    continue  # the other audit kinds: not timed here (cheap skip, no parse)
                v = json.loads(raw)
                if not actions and v.get("kind") not in ("action.succeeded", "decision.suppressed"):
                    continue
                eid = (v.get("event") or {}).get("id")
                if eid:
                    rx.setdefault(eid, now)
                    ts.setdefault(eid, m.timestamp / 1000.0)


@dataclass
class Paced:
    sent: dict[str, float]  # event id -> send time
    new: set[str]  # event ids of the alerts that name a new target
    rate: float  # achieved: (n - 1) / (last send - first send)
    late_p99_ms: float  # send time - due time
    late_max_ms: float


async def paced(bootstrap: str, app: str, rate: float, batch: list[tuple[bytes, bytes, bool]]) -> Paced:
    """Send ``batch`` at ``rate`` alerts/s (each on time, or at once when behind)."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await p.start()
    futs: list[tuple[asyncio.Future[Any], float, bool]] = []
    late: list[float] = []
    try:
        t0 = time.time() + 0.05
        for i, (key, value, new) in enumerate(batch):
            due = t0 + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            late.append(max(0.0, now - due))
            futs.append((await p.send(f"{app}.alerts", value, key=key, timestamp_ms=int(now * 1000)), now, new))
        sent: dict[str, float] = {}
        new_ids: set[str] = set()
        for fut, t, new in futs:
            md = await fut
            eid = f"{md.topic}:{md.partition}:{md.offset}"
            sent[eid] = t
            if new:
                new_ids.add(eid)
    finally:
        await p.stop()
    times = sorted(sent.values())
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    late.sort()
    return Paced(sent, new_ids, achieved, 1000 * h.percentile(late, 99), 1000 * (late[-1] if late else 0.0))


def stats(xs: list[float]) -> dict[str, float]:
    s = sorted(x * 1000.0 for x in xs)
    return {"n": len(s), "p50_ms": h.percentile(s, 50), "p99_ms": h.percentile(s, 99),
            "p999_ms": h.percentile(s, 99.9), "max_ms": s[-1] if s else float("nan")}


async def measure(bootstrap: str, app: str, sc: Scenario, prefix: str, seconds: float,
                  drain: float) -> dict[str, Any]:
    batch = alerts(prefix, int(sc.rate * seconds), sc.new_every)
    out = Tail()
    stop = asyncio.Event()
    consumer = await start_tail(bootstrap, app)
    task = asyncio.create_task(tail(consumer, out, stop))
    try:
        pc = await paced(bootstrap, app, sc.rate, batch)
        repeats = set(pc.sent) - pc.new
        deadline = time.time() + drain
        while time.time() < deadline and not (pc.new <= set(out.done_rx) and repeats <= set(out.supp_rx)):
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        await consumer.stop()
    row: dict[str, Any] = {
        "scenario": sc.name, "what": sc.what, "rate": sc.rate, "sent": len(pc.sent), "new_targets": len(pc.new),
        "achieved_rate": round(pc.rate, 1), "send_late_p99_ms": round(pc.late_p99_ms, 2),
        "send_late_max_ms": round(pc.late_max_ms, 2), "_sent": pc.sent,
        "actions": len(set(pc.sent) & set(out.action_rx)), "succeeded": len(pc.new & set(out.done_rx)),
        "suppressed": len(repeats & set(out.supp_rx)),
    }
    for name, d, ids in (("action_rx", out.action_rx, pc.new), ("action_ts", out.action_ts, pc.new),
                         ("done_rx", out.done_rx, pc.new), ("done_ts", out.done_ts, pc.new),
                         ("supp_rx", out.supp_rx, repeats), ("supp_ts", out.supp_ts, repeats)):
        row[name] = stats([d[e] - pc.sent[e] for e in ids if e in d])
    return row


# (stage, audit-log kind it starts at (None: the bench's send time), kind it ends at)
STAGES = (("ingest", None, "event.received"), ("decide", "event.received", "action.queued"),
          ("decide (suppressed)", "event.received", "decision.suppressed"),
          ("queued -> running", "action.queued", "action.running"),
          ("running -> succeeded", "action.running", "action.succeeded"))


def stages(bs: str, app: str, rows: list[dict[str, Any]]) -> None:
    """Where the time goes: per stage, the gap between the worker's audit-log records of one
    alert (their records' producer timestamps; ingest starts at the bench's send time)."""
    at: dict[str, dict[str, float]] = {}
    reasons: dict[str, str] = {}  # event id -> why it was suppressed
    for entry, ts_ms in h.audit_log_entries(bs, app):
        eid = (entry.get("event") or {}).get("id")
        if eid:
            at.setdefault(eid, {}).setdefault(str(entry.get("kind")), ts_ms / 1000.0)
            if entry.get("kind") == "decision.suppressed":
                reasons[eid] = str(entry.get("reason"))
    for row in rows:
        sent = row.pop("_sent")
        row["suppressed_reasons"] = dict(collections.Counter(reasons[e] for e in sent if e in reasons))
        row["stages"] = {}
        for name, a, b in STAGES:
            xs = [at[e][b] - (t if a is None else at[e][a]) for e, t in sent.items()
                  if e in at and b in at[e] and (a is None or a in at[e])]
            if xs:
                row["stages"][name] = stats(xs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    app = h.unique_app("lat")
    rates = {"new": args.rate_new, "repeat": args.rate_repeat}
    scenarios = [Scenario(s.name, rates[s.name], s.new_every if s.name == "new" else args.new_every, s.what)
                 for s in SCENARIOS if s.name in args.scenarios.split(",")]
    rows: list[dict[str, Any]] = []
    with h.broker(args.bootstrap, "latency") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "policies").mkdir()
        (tmp / "policies" / "latency.yaml").write_text(
            h.noop_alert_policy("bench-latency", "BenchLatency", {"cooldown": "1h", "dry_run": args.dry_run}))
        h.create_input_topics(bs, app, PARTITIONS)
        with h.workers(bs, tmp) as wf:
            w = wf.start(tmp / "policies", app, partitions=PARTITIONS, **h.worker_env(args.worker_env))
            warm = asyncio.run(measure(bs, app, Scenario("warm-up", 50, 1, ""), "warm", 2, drain=60))
            print(f"warm-up: {warm['succeeded']}/{warm['sent']} succeeded", file=sys.stderr)
            for sc in scenarios:
                print(f"scenario {sc.name}: {sc.rate:g} alerts/s for {args.seconds:g}s ({sc.what}); "
                      f"load {h.load_avg()}", file=sys.stderr)
                cpu0, t0 = h.cpu_seconds(w.proc.pid), time.monotonic()
                row = asyncio.run(measure(bs, app, sc, sc.name, args.seconds, drain=args.drain))
                cpu = h.cpu_seconds(w.proc.pid) - cpu0
                row["load_avg"] = h.load_avg()
                row["worker_cpu_share"] = round(cpu / (time.monotonic() - t0), 3)
                row["worker_cpu_ms_per_alert"] = round(1000 * cpu / max(1, row["sent"]), 3)
                rows.append(row)
                print(f"  sent {row['sent']:,} at {row['achieved_rate']:,.0f}/s; actions {row['actions']:,}/"
                      f"{row['new_targets']:,}, succeeded {row['succeeded']:,}, suppressed {row['suppressed']:,}",
                      file=sys.stderr)
            if w.proc.poll() is not None:
                raise SystemExit(f"worker died:\n{w.log_tail()}")
            w.stop()
        stages(bs, app, rows)
    return report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    table = []
    paths = (("action_rx", "alert -> action record (received)"), ("action_ts", "alert -> action record (worker ts)"),
             ("done_rx", "alert -> sealed action.succeeded (received)"),
             ("done_ts", "alert -> sealed action.succeeded (worker ts)"),
             ("supp_rx", "alert -> sealed decision.suppressed (received)"),
             ("supp_ts", "alert -> sealed decision.suppressed (worker ts)"))
    for r in rows:
        for key, label in paths:
            st = r[key]
            if st["n"]:
                table.append({"sc": r["scenario"], "rate": int(r["rate"]), "path": label, "n": st["n"],
                              "p50": st["p50_ms"], "p99": st["p99_ms"], "p99.9": st["p999_ms"], "max": st["max_ms"]})
    h.print_table(table, [("sc", "scenario"), ("rate", "alerts/s"), ("path", "path"), ("n", "n"), ("p50", "p50 ms"),
                          ("p99", "p99 ms"), ("p99.9", "p99.9 ms"), ("max", "max ms")])
    print("stages (worker audit-log timestamps):")
    h.print_table([{"sc": r["scenario"], "stage": k, "n": v["n"], "p50": v["p50_ms"], "p99": v["p99_ms"]}
                   for r in rows for k, v in r["stages"].items()],
                  [("sc", "scenario"), ("stage", "stage"), ("n", "n"), ("p50", "p50 ms"), ("p99", "p99 ms")])
    h.print_table([{k: r[k] for k in ("scenario", "rate", "achieved_rate", "send_late_p99_ms", "send_late_max_ms",
                                      "sent", "new_targets", "actions", "succeeded", "suppressed",
                                      "worker_cpu_ms_per_alert", "worker_cpu_share")} for r in rows],
                  [("scenario", "scenario"), ("rate", "asked/s"), ("achieved_rate", "sent/s"),
                   ("send_late_p99_ms", "late p99 ms"), ("send_late_max_ms", "late max ms"), ("sent", "alerts"),
                   ("new_targets", "new targets"), ("actions", "actions"), ("succeeded", "succeeded"),
                   ("suppressed", "suppressed"), ("worker_cpu_ms_per_alert", "cpu ms/alert"),
                   ("worker_cpu_share", "cpu share")])
    for r in rows:
        if r["suppressed_reasons"]:
            print(f"{r['scenario']}: suppressed decisions by reason {r['suppressed_reasons']}")
    checks = []
    for r in rows:
        label = f"latency, scenario {r['scenario']} ({int(r['rate']):,} alerts/s)"
        checks.append(h.check(f"{label}: producer rate", r["achieved_rate"], ">=", PACE_TOLERANCE * r["rate"], "/s"))
        checks.append(h.check(f"{label}: alerts with their action record", float(r["actions"]), ">=",
                              float(r["new_targets"])))
        checks.append(h.check(f"{label}: p99 alert -> action record", r["action_rx"]["p99_ms"], "<=",
                              TARGET_P99_MS, " ms"))
        checks.append(h.check(f"{label}: p99 alert -> sealed action.succeeded", r["done_rx"]["p99_ms"], None,
                              unit=" ms"))
    h.print_checks(checks)
    return {"bench": "latency", "seconds_per_scenario": args.seconds, "partitions": PARTITIONS,
            "dry_run": args.dry_run, "rows": rows, "checks": checks, "machine": h.machine(), "time": h.now_iso(),
            "target": f"p99 alert -> action record <= {TARGET_P99_MS:g} ms in both scenarios",
            "method": "producer send time -> tail consumer receive time, one process, time.time()"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="per scenario")
    ap.add_argument("--quick", action="store_true", help="5 s per scenario")
    ap.add_argument("--scenarios", default="new,repeat")
    ap.add_argument("--rate-new", type=float, default=200.0, help="alerts/s of scenario new")
    ap.add_argument("--rate-repeat", type=float, default=1000.0, help="alerts/s of scenario repeat")
    ap.add_argument("--new-every", type=int, default=10, help="scenario repeat: one new target per N alerts")
    ap.add_argument("--dry-run", action="store_true", help="the policy as a dry run (no execute, no verify)")
    ap.add_argument("--drain", type=float, default=120.0, help="max wait for stragglers per scenario")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE",
                    help="extra environment for the worker (repeatable), e.g. HEALER_LOG_LEVEL=WARNING")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    h.exit_on_sigterm()
    h.write_result("latency", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
