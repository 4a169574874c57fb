"""Run the fault-injection scenarios and print what each did to the invariants.

    python -m bench.chaos.run [--short] [--only sigkill,poison] [--bootstrap HOST:PORT]

``--short`` is the CI mode (smaller numbers, same checks; tests/integration/
test_chaos_short.py runs it). Without ``--bootstrap`` (or ``KAFKA_BOOTSTRAP_SERVERS``)
an embedded broker is started for the run; the broker-restart scenario always
starts its own. Prints one row per scenario (events in/out, actions executed,
duplicates, losses, audit chain status) and the failed checks, writes
bench/results/chaos.json (``chaos_short.json`` with ``--short``) and exits 1 when
a scenario fails (a skipped scenario, e.g. no kube toolchain, does not fail).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness as h  # noqa: E402
from bench.chaos.common import Ctx, Result, Skip  # noqa: E402

SCENARIOS = ("sigkill", "broker_restart", "kube_faults", "triton_kill", "alert_storm", "poison")


def run_one(name: str, ctx: Ctx) -> Result:
    mod = importlib.import_module(f"bench.chaos.{name}")
    t0 = time.monotonic()
    print(f"== {name} ({'short' if ctx.short else 'full'}); load {h.load_avg()}", file=sys.stderr,
          flush=True)
    try:
        res: Result = mod.run(ctx)
    except Skip as exc:
        res = Result(name, skipped=str(exc))
    except Exception as exc:  # a scenario that crashes is a failed scenario, with its traceback
        res = Result(name, error=f"{type(exc).__name__}: {exc}"[:2000])
        res.detail["traceback"] = traceback.format_exc()[-4000:]
    res.seconds = time.monotonic() - t0
    why = res.skipped or res.error or "; ".join(res.failed_checks())
    print(f"   {res.status} in {res.seconds:.0f}s {why}", file=sys.stderr, flush=True)
    return res


def run(short: bool, only: list[str], bootstrap: str | None, keep: str | None = None) -> list[Result]:
    results = []
    with h.broker(bootstrap, "chaos") as bs, tempfile.TemporaryDirectory(prefix="healer-chaos-") as tmp:
        ctx = Ctx(bootstrap=bs, tmp=Path(keep or tmp), short=short)
        for name in only:
            results.append(run_one(name, ctx))
    return results


def report(results: list[Result]) -> None:
    rows: list[dict[str, Any]] = []
    for r in results:
        rows.append({
            "scenario": r.scenario, "status": r.status, "in": r.events_in, "out": r.events_out,
            "executed": r.actions_executed,
            "expected": "" if r.actions_expected is None else r.actions_expected,
            "dups": r.duplicates, "lost": r.losses,
            "chain": "-" if r.skipped else ("ok" if r.chain_ok else "BROKEN"),
            "records": r.chain_records, "secs": round(r.seconds),
        })
    h.print_table(rows, [("scenario", "scenario"), ("status", "status"), ("in", "events in"),
                         ("out", "events out"), ("executed", "actions run"),
                         ("expected", "planned"), ("dups", "duplicates"), ("lost", "losses"),
                         ("chain", "audit chain"), ("records", "audit recs"), ("secs", "s")])
    for r in results:
        if r.skipped:
            print(f"{r.scenario}: skipped: {r.skipped}")
        if r.error:
            print(f"{r.scenario}: error: {r.error}")
        for c in r.failed_checks():
            print(f"{r.scenario}: FAILED check: {c}")
        keep = {k: v for k, v in r.detail.items() if k != "traceback"}
        if keep:
            print(f"{r.scenario}: {keep}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--short", action="store_true", help="CI mode: smaller numbers")
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenario names")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="scratch dir to keep (worker logs, broker data) instead of a temp dir")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    h.exit_on_sigterm()
    t0 = time.monotonic()
    results = run(args.short, only, args.bootstrap, args.keep)
    report(results)
    ok = all(r.ok for r in results)
    print(f"chaos {'short' if args.short else 'full'}: {'PASS' if ok else 'FAIL'} "
          f"in {time.monotonic() - t0:.0f}s; load {h.load_avg()}")
    h.write_result("chaos_short" if args.short else "chaos", {
        "bench": "chaos", "short": args.short, "ok": ok, "machine": h.machine(), "time": h.now_iso(),
        "results": [{**dataclasses.asdict(r), "status": r.status} for r in results],
    }, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
