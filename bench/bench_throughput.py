"""Benchmark: healer worker throughput (events/s per worker) against two plain consumers.

N input records (default 200,000; about 45 % alerts, 55 % metric samples of a
fleet, with noise) are produced to ``{app}.alerts`` / ``{app}.metrics`` (6
partitions) before one real ``healer run`` starts with 100 policies (the
library plus generated ones on unrelated signals). The worker runs globally
paused (``HEALER_PAUSED``): every input is parsed, audited (``event.received``
per alert, ``input.batch`` per run of metric records), routed, decided (paused
decisions are audited too) and sealed into the hash chain, but no executor runs
(executors are the subject of bench_actions.py and bench_latency.py).

How the worker's rate is measured: from its own output. The window opens at the
first record the worker wrote (earliest Kafka timestamp on ``audit-log``) and
closes at the last sealed record on ``{app}.audit`` (the end of the pipeline),
both stamped by the worker's producer, i.e. one clock; the bench polls the
consumer groups' lag only to know when the pipeline is drained, so polling
granularity does not enter the number. events/s = N / window. The worker's CPU
seconds over the run (minus what a worker spends starting up, measured on an
idle one) are recorded too (events per CPU-second is less sensitive to other
load on the machine).

Then, in the same run and on the same topics: a raw aiokafka consumer (no
group, bytes only; and once more with ``json.loads`` per record) and Kafka's
``org.apache.kafka.tools.ConsumerPerformance`` (kafka-tools jar of the same
Kafka version, fetched once by bench/kafka_tools.py; its ``fetch.time.ms``).
Prints a table, writes bench/results/throughput.json. ``--profile`` records the
worker with py-spy and prints its hottest functions.

    .venv/bin/python bench/bench_throughput.py [--n 200000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
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

PARTITIONS = 6
TARGET_VS_RAW = 0.5


async def raw_consume(bootstrap: str, topics: list[str], n: int, decode: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for a plain aiokafka consumer to read ``n`` records."""
    import json

    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = 0
        c0, t0 = time.process_time(), time.perf_counter()
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                got += len(msgs)
                if decode:
                    for m in msgs:
                        json.loads(m.value)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await c.stop()


def profile_worker(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """py-spy the worker for ``seconds``; in % of the samples: the top functions by own
    (self) samples, then healer's own functions by inclusive samples (``incl`` prefix), then
    the libraries' (``lib`` prefix: Faust, aiokafka, tenacity, pydantic... without the event
    loop's and the process's roots). Inclusive shares are per function (all its lines), each
    counted once per stack."""
    cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-d", str(int(seconds)),
           "-r", "50", "-f", "raw", "-o", str(out), "--nonblocking"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if res.returncode != 0 or not out.exists():
        print(f"py-spy failed: {res.stderr[-500:]}", file=sys.stderr)
        return []
    return summarize_profile(out.read_text())


OWN_CODE = ("(healer/", "(streams/", "(actions/")
# frames every sample has (the process and the event loop): no information in their share
ROOT_FRAMES = ("(asyncio/base_events.py", "(asyncio/events.py", "(<frozen runpy>", "(mode/worker.py",
               "(threading.py", "(mode/threads.py", "(healer/cli/", "(streams/worker.py")


def summarize_profile(raw: str, top: int = 25) -> list[tuple[str, float]]:
    """py-spy's raw stacks (``frame;frame;... count`` per line) -> see profile_worker."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    lib: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            if any(c in f for c in OWN_CODE):
                if not any(r in f for r in ROOT_FRAMES):
                    incl[f] += n
            elif not any(r in f for r in ROOT_FRAMES):
                lib[f] += n
        total += n
    if not total:
        return []
    return ([(f, 100.0 * c / total) for f, c in own.most_common(top)]
            + [(f"incl {f}", 100.0 * c / total) for f, c in incl.most_common(top)]
            + [(f"lib  {f}", 100.0 * c / total) for f, c in lib.most_common(top)])


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    app = h.unique_app("tp")
    result: dict[str, Any] = {"bench": "throughput", "n": n, "partitions": PARTITIONS,
                              "machine": h.machine(), "time": h.now_iso()}
    with h.broker(args.bootstrap, "throughput") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        n_pol = h.hundred_policies(tmp / "policies", 100)
        h.create_input_topics(bs, app, PARTITIONS)
        recs = h.fleet_inputs(app, n)
        t0 = time.perf_counter()
        h.produce(bs, recs)
        produce_s = time.perf_counter() - t0
        by_topic = collections.Counter(r.topic for r in recs)
        print(f"produced {n:,} records in {produce_s:.1f}s ({n / produce_s:,.0f}/s); "
              f"{n_pol} policies; load {h.load_avg()}", file=sys.stderr)

        env = {"HEALER_PAUSED": "true", "HEALER_LOG_LEVEL": args.log_level, **h.worker_env(args.worker_env)}
        # the worker starts with the input waiting: its CPU minus what starting up alone costs
        cpu0 = h.startup_cpu(bs, tmp, tmp / "policies", PARTITIONS, **env)
        with h.workers(bs, tmp) as wf:
            w = wf.start(tmp / "policies", app, partitions=PARTITIONS, **env)
            rss0 = h.rss_kb(w.proc.pid)
            top: list[tuple[str, float]] = []
            if args.profile:
                time.sleep(3)
                top = profile_worker(w.proc.pid, args.profile_seconds,
                                     Path(args.profile_raw) if args.profile_raw else tmp / "pyspy.txt")
            ok, lag = h.wait_drained(bs, app, timeout=args.timeout, progress=15, workers=[w],
                                     signals_committed=True)
            cpu = h.cpu_seconds(w.proc.pid) - cpu0
            rss1 = h.rss_kb(w.proc.pid)
            if not ok:
                raise SystemExit(f"worker did not drain within {args.timeout}s: lag {lag}\n{w.log_tail()}")
            first, last = h.worker_window(bs, app)
            w.stop()
        window = (last - first) / 1000.0
        # alerts by their event.received, metric records by the input.batch ranges covering them
        view = audit_view(bs, app)
        kinds = collections.Counter(str(r.get("kind")) for r in view.records)
        healer_rate = n / window
        print(f"healer: {n:,} events in {window:.2f}s = {healer_rate:,.0f}/s "
              f"(worker CPU {cpu:.1f}s); audit {len(view.records):,} records, chain ok={view.chain_ok}",
              file=sys.stderr)
        if len(view.received) != n:
            raise SystemExit(f"only {len(view.received)} of {n} inputs are audited as received")

        topics = [f"{app}.alerts", f"{app}.metrics"]
        raw_s, raw_cpu = asyncio.run(raw_consume(bs, topics, n, decode=False))
        dec_s, dec_cpu = asyncio.run(raw_consume(bs, topics, n, decode=True))
        from bench.kafka_tools import consumer_performance, ensure_tools

        _libs, fetch_s = ensure_tools()
        perf_msgs, perf_fetch = 0, 0.0
        perf_error = None
        try:
            for t in topics:
                pr = consumer_performance(bs, t, by_topic[t], group=f"{app}-perf-{t.rsplit('.', 1)[1]}")
                perf_msgs += pr.messages
                perf_fetch += pr.fetch_seconds
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            perf_error = str(exc)[-500:]
        perf_rate = perf_msgs / perf_fetch if perf_fetch else 0.0

    rows = [
        {"consumer": "healer worker (1 process)", "events": n, "seconds": window,
         "per_s": healer_rate, "cpu_s": cpu, "per_cpu_s": n / cpu if cpu else 0.0},
        {"consumer": "aiokafka raw (bytes)", "events": n, "seconds": raw_s, "per_s": n / raw_s,
         "cpu_s": raw_cpu, "per_cpu_s": n / raw_cpu if raw_cpu else 0.0},
        {"consumer": "aiokafka + json.loads", "events": n, "seconds": dec_s, "per_s": n / dec_s,
         "cpu_s": dec_cpu, "per_cpu_s": n / dec_cpu if dec_cpu else 0.0},
        {"consumer": "Kafka ConsumerPerformance", "events": perf_msgs, "seconds": perf_fetch,
         "per_s": perf_rate, "cpu_s": "", "per_cpu_s": ""},
    ]
    h.print_table(rows, [("consumer", "consumer"), ("events", "events"), ("seconds", "seconds"),
                         ("per_s", "events/s"), ("cpu_s", "cpu s"), ("per_cpu_s", "events/cpu-s")])
    ratio_raw = healer_rate / (n / raw_s)
    ratio_perf = healer_rate / perf_rate if perf_rate else None
    checks = [h.check("mixed fleet input: healer events/s / raw aiokafka (bytes)", ratio_raw, ">=", TARGET_VS_RAW)]
    if ratio_perf is not None:
        checks.append(h.check("mixed fleet input: healer events/s / Kafka ConsumerPerformance", ratio_perf, None))
    h.print_checks(checks)
    print(f"worker RSS {rss0 // 1024} MiB at start, {rss1 // 1024} MiB after; load {h.load_avg()}")
    if top:
        print("py-spy: hottest functions (own samples, %; then 'incl': healer's own functions, inclusive):")
        for f, pct in top:
            print(f"  {pct:5.1f}  {f}")
    result.update({
        "policies": n_pol, "produce_seconds": round(produce_s, 2), "rows": rows,
        "ratio_vs_aiokafka_raw": round(ratio_raw, 4),
        "ratio_vs_consumer_performance": None if ratio_perf is None else round(ratio_perf, 5),
        "consumer_performance_error": perf_error, "kafka_tools_fetch_seconds": round(fetch_s, 1),
        "audit_records": len(view.records), "audit_kinds": dict(kinds), "chain_ok": view.chain_ok,
        "worker_rss_kib": {"start": rss0, "end": rss1}, "profile_top": top,
        "load_avg_end": h.load_avg(), "target": "healer >= 0.5 x raw aiokafka", "checks": checks,
        "method": "window = first worker output record -> last sealed audit record (producer timestamps)",
    })
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="40,000 inputs")
    ap.add_argument("--bootstrap", default=None, help="use this broker instead of an embedded one")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--profile", action="store_true", help="py-spy the worker while it works")
    ap.add_argument("--profile-seconds", type=float, default=30.0)
    ap.add_argument("--profile-raw", default=None, help="keep py-spy's raw stacks in this file")
    ap.add_argument("--log-level", default="INFO", help="the worker's HEALER_LOG_LEVEL")
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE",
                    help="extra environment for the worker (repeatable), e.g. PRODUCER_LINGER=0.002")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 40_000
    h.exit_on_sigterm()
    h.write_result("throughput", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
