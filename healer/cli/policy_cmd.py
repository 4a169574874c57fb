"""``healer policy validate|test|schema``: the policy author's tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from healer.cli.common import EXIT_FAIL, EXIT_OK, CliError, target_text


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="validate, replay and describe policies")
    ps = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    v = ps.add_parser("validate", help="load policies and report every error with file and line")
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.set_defaults(func=validate)
    t = ps.add_parser("test", help="replay events through the engine and print the plan")
    t.add_argument("paths", nargs="+", metavar="PATH")
    t.add_argument("--events", required=True, help="events JSON lines ({time, alert|webhook|metric})")
    t.add_argument("--expect", help="expected plan (JSON lines); exit 1 on any difference")
    t.add_argument("--format", choices=["json", "table"], default="json")
    t.add_argument("--show-all", action="store_true",
                   help="also list each input that got no decision, and why (duplicate, no policy "
                        "matched, resolved, late sample, rejected input, ...)")
    t.add_argument("--dry-run", action="store_true", help="global dry run")
    t.add_argument("--paused", action="store_true", help="global pause")
    t.add_argument("--rate-limit", help="global rate limit MAX/PER, e.g. 10/1m")
    t.add_argument("--dedup-window", default="60s")
    t.set_defaults(func=test)
    s = ps.add_parser("schema", help="print the JSON Schema of the policy language")
    s.set_defaults(func=schema)


def validate(args: argparse.Namespace) -> int:
    from healer.loader import load_paths

    res = load_paths(args.paths)
    for err in res.errors:
        print(str(err), file=sys.stderr)
    if res.errors:
        print(f"{len(res.errors)} error(s) in {len(res.files)} file(s)", file=sys.stderr)
        return EXIT_FAIL
    print(f"ok: {len(res.policies)} policies, {len(res.silences)} silences in {len(res.files)} file(s)")
    for p in res.policies:
        print(f"  {p.name}@{p.revision}  priority={p.priority}  {p.source}")
    return EXIT_OK


def _engine_settings(args: argparse.Namespace) -> Any:
    from healer.durations import parse_duration
    from healer.engine import EngineSettings
    from healer.policy import Budget

    rl = None
    if args.rate_limit:
        try:
            n, per = args.rate_limit.split("/", 1)
            rl = Budget(int(n), parse_duration(per))
        except ValueError as exc:
            raise CliError(f"--rate-limit wants MAX/PER like 10/1m: {exc}") from exc
    return EngineSettings(
        paused=args.paused, dry_run=args.dry_run, rate_limit=rl,
        dedup_window=parse_duration(args.dedup_window),
    )


def test(args: argparse.Namespace) -> int:
    from healer.loader import PolicyLoadError, load_policy_set
    from healer.replay import Replayer, ReplayError, read_lines

    try:
        policies = load_policy_set(args.paths)
    except PolicyLoadError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAIL
    replayer = Replayer(policies, _engine_settings(args))
    try:
        with open(args.events, encoding="utf-8") as fh:
            decisions = replayer.run(read_lines(fh))
    except OSError as exc:
        raise CliError(f"cannot read events: {exc}") from exc
    except ReplayError as exc:
        raise CliError(f"{args.events}: {exc}") from exc
    plan = [d.plan_line() for d in decisions]
    for n, reason in replayer.rejected:
        print(f"{args.events}:{n}: rejected: {reason}", file=sys.stderr)
    # --show-all: the plan's lines in input order, with a "none" line for each input that got
    # no decision; --expect still compares the plan alone
    shown = [e.plan_line() for _, e in replayer.entries] if args.show_all else plan
    if args.format == "table":
        _table(shown)
    else:
        for line in shown:
            print(json.dumps(line, ensure_ascii=False))
    if args.expect:
        return _compare(plan, Path(args.expect))
    return EXIT_OK


def _table(plan: list[dict[str, Any]]) -> None:
    rows = [("TIME", "POLICY", "TARGET", "USE", "DECISION", "REASON", "ACTION")]
    for p in plan:
        if p["decision"] == "none":  # --show-all: an input that got no decision
            rows.append((p["time"], "-", "-", "-", "none", f"{p['reason']} ({p['event']}, line {p['line']})", ""))
            continue
        t = p["target"] or {}
        target = target_text(t) or "-"
        decision = p["decision"] + (" (dry-run)" if p["dry_run"] else "")
        rows.append((p["time"], p["policy"], target, p["use"] or "-", decision, p["reason"] or "", p["action_id"] or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _compare(plan: list[dict[str, Any]], expect_path: Path) -> int:
    try:
        expected = [json.loads(x) for x in expect_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read expected plan {expect_path}: {exc}") from exc
    diffs = []
    for i in range(max(len(plan), len(expected))):
        got = plan[i] if i < len(plan) else None
        want = expected[i] if i < len(expected) else None
        if got == want:
            continue
        if got is None or want is None:
            diffs.append(f"decision {i + 1}: expected {json.dumps(want)}\n  got {json.dumps(got)}")
            continue
        fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        detail = "; ".join(f"{k}: expected {json.dumps(want.get(k))}, got {json.dumps(got.get(k))}" for k in fields)
        diffs.append(f"decision {i + 1} ({got.get('policy')} at {got.get('time')}): {detail}")
    if diffs:
        print(f"plan differs from {expect_path} ({len(diffs)} difference(s)):", file=sys.stderr)
        for d in diffs[:50]:
            print("  " + d, file=sys.stderr)
        return EXIT_FAIL
    print(f"plan matches {expect_path} ({len(plan)} decisions)", file=sys.stderr)
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    from healer.schema import policy_schema

    print(json.dumps(policy_schema(), indent=2))
    return EXIT_OK
