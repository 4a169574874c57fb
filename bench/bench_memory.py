"""Benchmark: worker memory (RSS) with many metric groups whose windows are full.

One ``healer run`` (6 partitions, globally paused, so the run measures state,
not executors) with one metric policy grouped by (namespace, deployment) over
a 5-minute window. G groups (default 10,000), each its own target, get one
sample per second of event time: a window then holds at most 300 samples
(the engine drops points at or before ``latest - 5m``), so the windows are full
once every group has 300 seconds of samples, i.e. after G x 300 samples
(3,000,000 for 10,000 groups). No spacing needs fewer: every held sample was
produced once, so 300 held samples per group always take G x 300 samples; a
shorter window with a finer spacing only changes the event-time span they
cover. After the fill, one more quarter of input (default: 3,750,000 samples
in all) moves every window on without adding points: the held samples stay at
G x 300 (the proof that the windows are full and bounded), and RSS over that
quarter says whether the worker's memory follows its state (it also moves with
batch sizes and allocator fragmentation, so it is reported, not inferred from).

Input in the recommended producer format: records of 200 samples (a JSON
array), one record per 200 groups of one event second that share an input
partition (as a remote-write receiver or a batching exporter sends them),
keyed by the first sample's ``namespace/deployment`` (the partition every
sample in it belongs to). Two modes, each with a worker and topics of its own:
``backlog`` produces each quarter at once (the worker reads it as a backlog,
in its largest batches), ``paced`` produces at ``--rate`` samples/s (default
25,000: a worker that keeps up, in small batches, each target's row rewritten
more often). RSS (VmRSS from /proc/<pid>/status) is read at start, after each
quarter of the fill, and after the extra quarter, each once the worker has
drained it: ingest committed every input and decide every signal batch
(``harness.wait_drained(signals_committed=True)``; decide can work through
signal batches for seconds after ingest is done, writing only table rows).

At the end, the worker's ``targets`` changelog is read back: the newest record
of every key (the table's live content; the topic's size on disk depends on
when compaction last ran, so it is not used) is decoded, which gives the held
samples (``TargetRow.state.held_samples``: measured, not inferred from the
spacing) and the changelog bytes per held sample. Prints a table and
"target ... met/SHORT" lines, writes bench/results/memory.json.

    .venv/bin/python bench/bench_memory.py [--groups 10000] [--modes backlog,paced] [--rate 25000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402
from healer.ingest import partition_key  # noqa: E402
from healer.partitioner import partition_for  # noqa: E402
from healer.state import decode_row  # noqa: E402

PARTITIONS = 6
WINDOW_S = 300  # the policy's window: 5m
SPACING_S = 1  # event time between two samples of one group
HELD_PER_GROUP = WINDOW_S // SPACING_S
TARGET_RSS_MIB = 300.0
TARGET_BYTES_PER_SAMPLE = 64.0  # issue 12: compact target state, in memory and in the changelog
METRIC = "llm_request_latency_p99_seconds"
POLICY = f"""\
apiVersion: healer/v1
kind: Policy
metadata: {{name: bench-memory}}
spec:
  trigger:
    metric:
      name: {METRIC}
      group_by: [namespace, deployment]
      aggregate: avg
      window: {WINDOW_S}s
      op: ">"
      threshold: 5
      for: 1m
  target: {{kind: Deployment, namespace: "{{{{ labels.namespace }}}}", name: "{{{{ labels.deployment }}}}"}}
  actions:
    - {{use: healer.noop, with: {{message: scale}}}}
"""


def group_labels(groups: int) -> list[tuple[int, bytes, dict[str, str]]]:
    """(input partition, key, labels) of every group, sorted by partition."""
    out = []
    for g in range(groups):
        labels = {"namespace": f"ns-{g % 50}", "deployment": f"svc-{g}"}
        key = partition_key(labels)
        out.append((partition_for(key, PARTITIONS), key, labels))
    return sorted(out, key=lambda x: x[0])


def second_records(app: str, second: int, groups: list[tuple[int, bytes, dict[str, str]]],
                   per_record: int) -> list[h.Rec]:
    """One sample per group at event time ``T0 + second``, ``per_record`` a record, each
    record's samples on one input partition."""
    t = (h.T0 + timedelta(seconds=second * SPACING_S)).timestamp()
    out: list[h.Rec] = []
    chunk: list[dict[str, Any]] = []
    key, part = b"", -1
    for i, (p, k, labels) in enumerate(groups):
        if chunk and (p != part or len(chunk) == per_record):
            out.append(h.Rec(f"{app}.metrics", key, orjson.dumps(chunk), None))
            chunk = []
        if not chunk:
            key, part = k, p
        # a value that never breaches: the windows fill without incidents or actions
        chunk.append({"name": METRIC, "value": 1.0 + (i + second) % 4, "labels": labels, "timestamp": t})
    if chunk:
        out.append(h.Rec(f"{app}.metrics", key, orjson.dumps(chunk), None))
    return out


async def produce_seconds(bs: str, app: str, first: int, last: int, groups: list[tuple[int, bytes, dict[str, str]]],
                          per_record: int, rate: float) -> int:
    """Produce event seconds ``first`` .. ``last - 1``, 10 at a time (the bench process stays
    small); at most ``rate`` samples/s when ``rate`` > 0. Returns the records sent."""
    p = h._producer(bs)
    await p.start()
    n, t0, sent = 0, time.monotonic(), 0
    try:
        for start in range(first, last, 10):
            recs = [r for s in range(start, min(last, start + 10)) for r in second_records(app, s, groups, per_record)]
            futs = [await p.send(r.topic, r.value, key=r.key) for r in recs]
            await asyncio.gather(*futs)
            n += len(recs)
            sent += (min(last, start + 10) - start) * len(groups)
            if rate > 0:
                await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    finally:
        await p.stop()
    return n


def changelog_state(bs: str, app: str) -> dict[str, Any]:
    """Held samples and bytes of the newest ``targets`` row of every key."""
    rows = h.latest_by_key(bs, f"{app}-targets-changelog")
    held = sum(decode_row(v).state.held_samples() for v in rows.values())
    value_bytes = sum(len(v) for v in rows.values())
    key_bytes = sum(len(k) for k in rows)
    end = sum(h.end_offsets(bs, [f"{app}-targets-changelog"]).values())
    return {"keys": len(rows), "held_samples": held, "value_bytes": value_bytes, "key_bytes": key_bytes,
            "records_written": end}


def one_mode(bs: str, tmp: Path, mode: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """One worker fed the whole input in ``mode`` (``backlog``: each quarter at once; ``paced``:
    at ``rate`` samples/s); RSS per quarter, then the changelog state."""
    app = h.unique_app(f"mem{mode[0]}")
    groups = group_labels(args.groups)
    fill_s = HELD_PER_GROUP  # event seconds until every window is full
    quarter_s = fill_s // 4
    marks = [quarter_s, 2 * quarter_s, 3 * quarter_s, fill_s]
    marks += [fill_s + quarter_s * k for k in range(1, args.extra_quarters + 1)]
    rows: list[dict[str, Any]] = []
    h.create_input_topics(bs, app, PARTITIONS)
    with h.workers(bs, tmp) as wf:
        w = wf.start(tmp / "policies", app, partitions=PARTITIONS, HEALER_PAUSED="true",
                     **h.worker_env(args.worker_env))
        pid = w.proc.pid
        t0 = time.monotonic()
        rows.append({"phase": "start", "samples": 0, "per_group": 0, "rss_mib": h.rss_kb(pid) / 1024,
                     "seconds": 0.0, "records": 0})
        done_s, records = 0, 0
        for i, mark in enumerate(marks):
            tp = time.monotonic()
            records += asyncio.run(produce_seconds(bs, app, done_s, mark, groups, args.per_record, rate))
            produced = time.monotonic() - tp
            done_s = mark
            ok, lag = h.wait_drained(bs, app, timeout=args.timeout, progress=30, workers=[w],
                                     signals_committed=True)
            if not ok:
                raise SystemExit(f"{mode}: not drained after {done_s} event seconds: {lag}\n{w.log_tail()}")
            phase = f"quarter {i + 1}" if i < 4 else f"extra quarter {i - 3}"
            rows.append({"phase": phase, "samples": done_s * args.groups,
                         "per_group": min(done_s, HELD_PER_GROUP), "rss_mib": h.rss_kb(pid) / 1024,
                         "seconds": time.monotonic() - t0, "records": records})
            print(f"  {mode}, {phase}: {done_s * args.groups:,} samples in {records:,} records (produced in "
                  f"{produced:.0f}s): RSS {rows[-1]['rss_mib']:.0f} MiB; load {h.load_avg()}", file=sys.stderr)
        cpu = h.cpu_seconds(pid)
        w.stop()
    return {"mode": mode, "rate": rate, "rows": rows, "changelog": changelog_state(bs, app), "cpu_s": cpu}


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with h.broker(args.bootstrap, "memory") as bs, tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "policies").mkdir()
        (tmp / "policies" / "memory.yaml").write_text(POLICY)
        for mode in args.modes.split(","):
            if mode not in ("backlog", "paced"):
                raise SystemExit(f"--modes: backlog and/or paced, not {mode!r}")
            print(f"mode {mode}: {args.groups:,} groups" + (f", {args.rate:,.0f} samples/s" if mode == "paced" else
                  ", each quarter produced at once"), file=sys.stderr)
            runs.append(one_mode(bs, tmp, mode, args.rate if mode == "paced" else 0.0, args))
    checks: list[dict[str, Any]] = []
    for r in runs:
        checks += report(r, args)
    h.print_checks(checks)
    return {"bench": "memory", "groups": args.groups, "window_s": WINDOW_S, "spacing_s": SPACING_S,
            "per_record": args.per_record, "runs": runs, "checks": checks, "machine": h.machine(),
            "time": h.now_iso()}


def report(run: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Print one mode's table and summary; its checks."""
    rows, state, cpu, mode = run["rows"], run["changelog"], run["cpu_s"], run["mode"]
    print(f"mode {mode}" + (f" ({run['rate']:,.0f} samples/s)" if run["rate"] else " (each quarter at once)"))
    h.print_table(rows, [("phase", "after"), ("samples", "samples"), ("records", "records"),
                         ("per_group", "window bound per group"), ("rss_mib", "RSS MiB"), ("seconds", "elapsed s")])
    held = state["held_samples"]
    start, full, end = rows[0]["rss_mib"], rows[4]["rss_mib"], rows[-1]["rss_mib"]
    growth_b = (end - start) * 1024 * 1024 / held if held else float("nan")
    # the slope from quarter 1 (every group, its row and the worker's buffers exist) to full
    # windows: what one more held sample costs, without the start-up and per-group costs
    q1_held = args.groups * rows[1]["per_group"]
    slope_b = ((full - rows[1]["rss_mib"]) * 1024 * 1024 / (args.groups * HELD_PER_GROUP - q1_held)
               if args.groups * HELD_PER_GROUP > q1_held else float("nan"))
    log_b = state["value_bytes"] / held if held else float("nan")
    log_kb = (state["value_bytes"] + state["key_bytes"]) / held if held else float("nan")
    total = rows[-1]["samples"]
    print(f"held samples (decoded from the newest targets row of {state['keys']:,} keys): {held:,} "
          f"= {held / max(1, args.groups):.1f} per group, after {total:,} samples in; "
          f"RSS {start:.0f} -> {full:.0f} MiB (windows full) -> {end:.0f} MiB after the extra input "
          f"({end - full:+.1f} MiB); worker CPU {cpu:.0f}s ({total / cpu if cpu else 0:,.0f} samples/cpu-s)")
    print(f"targets changelog: {state['records_written']:,} records written; newest per key "
          f"{state['value_bytes'] / 1e6:.1f} MB values + {state['key_bytes'] / 1e6:.2f} MB keys")
    run.update({"held_samples": held, "rss_bytes_per_held_sample": growth_b,
                "rss_bytes_per_held_sample_slope": slope_b, "changelog_bytes_per_held_sample": log_b})
    label = f"{args.groups:,} groups x {HELD_PER_GROUP} samples, {mode}"
    return [
        h.check(f"held samples ({label})", float(held), ">=", float(args.groups * HELD_PER_GROUP)),
        h.check(f"worker RSS, windows full ({label}){'' if args.groups == 10_000 else '; target set for 10,000'}",
                end, "<=", TARGET_RSS_MIB, " MiB"),
        h.check(f"RSS over the extra input ({args.extra_quarters} quarter(s), windows full; {mode})", end - full,
                None, unit=" MiB"),
        h.check(f"RSS growth per held sample (quarter 1 -> windows full; {mode})", slope_b, "<=",
                TARGET_BYTES_PER_SAMPLE, " B"),
        h.check(f"RSS growth per held sample (start -> end, start-up and per-group costs included; {mode})",
                growth_b, None, unit=" B"),
        h.check(f"targets changelog bytes per held sample (newest row per key, values; {mode})", log_b, "<=",
                TARGET_BYTES_PER_SAMPLE, " B"),
        h.check(f"targets changelog bytes per held sample (keys + values; {mode})", log_kb, None, unit=" B"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 groups (375,000 samples per mode)")
    ap.add_argument("--per-record", type=int, default=200, help="samples per record")
    ap.add_argument("--modes", default="backlog,paced",
                    help="backlog: each quarter produced at once; paced: at --rate samples/s")
    ap.add_argument("--rate", type=float, default=25_000.0, help="samples/s of the paced mode")
    ap.add_argument("--extra-quarters", type=int, default=1, help="input after the windows are full, in quarters")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--worker-env", action="append", metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.groups = 1000
    h.exit_on_sigterm()
    h.write_result("memory", run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
