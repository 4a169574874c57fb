"""``healer audit tail|show|verify``: read and check the audit trail."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from healer.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_kafka_options,
    settings_from,
    target_text,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="read and verify the audit trail")
    ps = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    t = ps.add_parser("tail", help="print audit records (readable or --json)")
    t.add_argument("--follow", "-f", action="store_true", help="keep reading new records")
    t.add_argument("--action", help="only records of this action id")
    t.add_argument("--policy", help="only records of this policy")
    t.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    t.add_argument("--json", action="store_true", help="one JSON record per line")
    add_kafka_options(t)
    t.set_defaults(func=tail)
    s = ps.add_parser("show", help="the full lifecycle of one action")
    s.add_argument("action_id")
    s.add_argument("--json", action="store_true")
    add_kafka_options(s)
    s.set_defaults(func=show)
    v = ps.add_parser("verify", help="verify the hash chains of the topic or an exported file")
    v.add_argument("--file", help="an export: JSON lines of audit records")
    v.add_argument("--checkpoint", help="a checkpoint from `healer audit checkpoint`: detects a truncated tail")
    v.add_argument("--allow-empty", action="store_true",
                   help="exit 0 on no records at all (by default that fails: wrong app id or broker?)")
    v.add_argument("--keyring", help="check the records' MACs with this keyring's audit keys "
                   "(default: HEALER_KEYRING_FILE or the app id's keyring on this machine)")
    v.add_argument("--inputs", action="store_true",
                   help="also read every input.batch range back from its input topic and recompute "
                        "its digest (while retention keeps the records)")
    add_kafka_options(v)
    v.set_defaults(func=verify)
    c = ps.add_parser("checkpoint", help="write the chain heads (store them outside Kafka)")
    c.add_argument("--out", help="file to write (default stdout)")
    c.add_argument("--file", help="take the heads from an export instead of the topic")
    add_kafka_options(c)
    c.set_defaults(func=checkpoint)
    e = ps.add_parser("export", help="write the audit topic as JSON lines")
    e.add_argument("--out", help="file to write (default stdout)")
    add_kafka_options(e)
    e.set_defaults(func=export)
    sc = ps.add_parser("schema", help="print the JSON Schema of audit records")
    sc.set_defaults(func=schema)


def readable(rec: dict[str, Any]) -> str:
    t = rec.get("target") or {}
    target = target_text(t)
    pol = (rec.get("policy") or {}).get("name", "")
    parts = [rec.get("time", ""), f"{rec.get('chain')}:{rec.get('seq')}", rec.get("kind", "")]
    if (rec.get("detail") or {}).get("dry_run"):
        parts.append("dry-run")  # decided or run as a dry run: nothing was changed
    if pol:
        parts.append(f"policy={pol}")
    if target:
        parts.append(f"target={target}")
    if rec.get("use"):
        parts.append(f"use={rec['use']}")
    if rec.get("action_id"):
        parts.append(f"action={rec['action_id']}")
    if rec.get("actor") and rec.get("actor") != "healer":
        parts.append(f"actor={rec['actor']}")
    if rec.get("reason"):
        parts.append(f"reason={rec['reason']!r}")
    ev = rec.get("event") or {}
    if ev.get("id") and not rec.get("action_id"):
        parts.append(f"event={ev['id']}")
    return "  ".join(str(p) for p in parts)


def _records(args: argparse.Namespace, follow: bool = False, annotate: bool = False) -> Iterable[dict[str, Any]]:
    import asyncio
    import queue
    import threading

    from streams.client import BrokerUnavailable, read_topic

    settings = settings_from(args)
    topic = settings.topic("audit")
    q: queue.Queue[Any] = queue.Queue(maxsize=10_000)
    done = object()

    async def pump() -> None:
        try:
            async for m in read_topic(settings.bootstrap(), topic, follow=follow):
                q.put((m.partition, m.offset, m.value))
        except BrokerUnavailable as exc:
            q.put(CliError(str(exc)))
        finally:
            q.put(done)

    th = threading.Thread(target=lambda: asyncio.run(pump()), daemon=True)
    th.start()
    while True:
        item = q.get()
        if item is done:
            return
        if isinstance(item, CliError):
            raise item
        partition, offset, value = item
        try:
            rec = json.loads(value)
        except (TypeError, ValueError):
            rec = None
        if not isinstance(rec, dict):
            if not annotate:
                print(f"healer: skipping a record that is not an audit record ({topic}[{partition}]"
                      f"@{offset})", file=sys.stderr)
                continue
            rec = {"__raw__": True}
        if annotate:
            rec["__at__"] = f"{topic}[{partition}]@{offset}"
        yield rec


def _match(rec: dict[str, Any], args: argparse.Namespace) -> bool:
    if getattr(args, "action", None) and rec.get("action_id") != args.action:
        return False
    if getattr(args, "policy", None) and (rec.get("policy") or {}).get("name") != args.policy:
        return False
    return not (getattr(args, "kind", None) and rec.get("kind") not in args.kind)


def topic_note(args: argparse.Namespace) -> tuple[str, bool]:
    """Why the audit topic gave nothing: ("topic T on B is empty", True) or "... does not
    exist" (False), naming the app id so that a wrong one is plain to see."""
    import asyncio

    from streams.client import BrokerUnavailable, topic_exists

    settings = settings_from(args)
    bootstrap, topic = settings.bootstrap(), settings.topic("audit")
    try:
        exists = asyncio.run(topic_exists(bootstrap, topic))
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc
    if exists:
        return f"topic {topic} on {bootstrap} is empty (app id {settings.app_id!r})", True
    return (f"topic {topic} does not exist on {bootstrap}: no worker of app id "
            f"{settings.app_id!r} has run against this broker (wrong --app-id or "
            "--bootstrap-servers? env HEALER_APP_ID, HEALER_BOOTSTRAP_SERVERS)"), False


def tail(args: argparse.Namespace) -> int:
    """Without --follow: a snapshot, ordered by time across chains.
    With --follow: records as they arrive. Nothing to show is said on stderr."""
    recs: Iterable[dict[str, Any]] = _records(args, follow=args.follow)
    if not args.follow:
        recs = sorted(recs, key=lambda r: (str(r.get("time", "")), str(r.get("chain")), r.get("seq", 0)))
    read = shown = 0
    for rec in recs:
        read += 1
        if _match(rec, args):
            shown += 1
            print(json.dumps(rec, ensure_ascii=False) if args.json else readable(rec), flush=True)
    if read == 0:
        note, exists = topic_note(args)
        print(f"healer: no audit records: {note}", file=sys.stderr)
        return EXIT_OK if exists else EXIT_FAIL
    if shown == 0:
        print(f"healer: none of the {read} audit records matched --action/--policy/--kind",
              file=sys.stderr)
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    recs = [r for r in _records(args) if r.get("action_id") == args.action_id]
    if not recs:
        settings = settings_from(args)
        print(f"healer: no audit records for action {args.action_id} on topic "
              f"{settings.topic('audit')} at {settings.bootstrap()}", file=sys.stderr)
        return EXIT_FAIL
    recs.sort(key=lambda r: (r.get("time", ""), r.get("seq", 0)))
    for r in recs:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            print(readable(r))
            for k in ("before", "after", "detail"):
                if r.get(k):
                    print(f"    {k}: {json.dumps(r[k], ensure_ascii=False)[:500]}")
    return EXIT_OK


def _load(args: argparse.Namespace, annotate: bool = False) -> list[dict[str, Any]]:
    if getattr(args, "file", None):
        try:
            with open(args.file, encoding="utf-8") as fh:
                lines = [(n, json.loads(x)) for n, x in enumerate(fh, 1) if x.strip()]
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {args.file}: {exc}") from exc
        out = []
        for n, rec in lines:
            rec = rec if isinstance(rec, dict) else {"__raw__": True}
            if annotate:
                rec["__at__"] = f"{args.file}:{n}"
            out.append(rec)
        return out
    return list(_records(args, annotate=annotate))


def _verify_inputs(args: argparse.Namespace, recs: list[dict[str, Any]]) -> list[str]:
    """Recompute every ``input.batch`` digest from its input topic; the problems, one line each.
    Ranges retention already deleted are reported on stderr, not as failures."""
    import asyncio

    from healer.ingest import records_digest
    from streams.client import BrokerUnavailable, read_range

    settings = settings_from(args)
    batches = [r["detail"] for r in recs if r.get("kind") == "input.batch" and isinstance(r.get("detail"), dict)]
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for d in batches:
        k = (str(d["topic"]), int(d["partition"]))
        lo, hi = spans.get(k, (d["first_offset"], d["last_offset"]))
        spans[k] = (min(lo, d["first_offset"]), max(hi, d["last_offset"]))

    async def read() -> dict[tuple[str, int], dict[int, bytes | None]]:
        out = {}
        for (topic, p), (lo, hi) in spans.items():
            out[(topic, p)] = {r.offset: r.value for r in
                               await read_range(settings.bootstrap(), topic, p, lo, hi + 1, timeout=300)}
        return out

    try:
        values = asyncio.run(read())
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc
    problems, gone, ok = [], 0, 0
    for d in batches:
        have = values[(str(d["topic"]), int(d["partition"]))]
        offsets = range(d["first_offset"], d["last_offset"] + 1)
        if any(o not in have for o in offsets):
            gone += 1
            continue
        if records_digest(have[o] for o in offsets) != d.get("sha256"):
            problems.append(f"input.batch {d['topic']}:{d['partition']}:{d['first_offset']}-{d['last_offset']}: "
                            "the input records differ from their digest (changed after ingest?)")
        else:
            ok += 1
    print(f"healer: input.batch digests: {ok} match, {len(problems)} differ, {gone} no longer in the input "
          "topic (retention)", file=sys.stderr)
    return problems


def _keyring(args: argparse.Namespace) -> Any:
    """The audit keys to check MACs with: ``--keyring``, else the settings' keyring if there is
    one (None, with a note on stderr, when there is none)."""
    from healer.keys import KeyringError

    settings = settings_from(args, keyring_file=getattr(args, "keyring", None))
    try:
        ring = settings.keyring()
    except KeyringError as exc:
        if getattr(args, "keyring", None):
            raise CliError(str(exc)) from None
        print(f"healer: MACs not checked: no keyring ({settings.keyring_path()}; --keyring FILE "
              "or HEALER_KEYRING_FILE): a forged record with a valid hash link would pass", file=sys.stderr)
        return None
    if not ring.with_role("audit"):
        print(f"healer: MACs not checked: {settings.keyring_path()} has no audit key", file=sys.stderr)
        return None
    return ring


def _sign(body: dict[str, Any]) -> str | None:
    import hashlib
    import hmac
    import os

    key = os.environ.get("HEALER_AUDIT_KEY")
    if not key:
        return None
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.encode(), blob, hashlib.sha256).hexdigest()


def checkpoint(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from healer.chain import checkpoint_of

    recs = _load(args)
    body = {**checkpoint_of(recs).to_json(), "records": len(recs),
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    sig = _sign(body)
    if sig:
        body["hmac_sha256"] = sig
    text = json.dumps(body, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return EXIT_OK


def export(args: argparse.Namespace) -> int:
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        for rec in _records(args):
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            out.close()
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    from healer.schema import audit_schema

    print(json.dumps(audit_schema(), indent=2))
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    from healer.chain import ChainProblem, Checkpoint
    from healer.chain import verify as verify_chain

    cp = None
    if args.checkpoint:
        try:
            with open(args.checkpoint, encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read checkpoint {args.checkpoint}: {exc}") from exc
        sig = raw.pop("hmac_sha256", None)
        want = _sign(raw)
        if want is not None and sig != want:
            print("FAIL checkpoint signature does not match (HEALER_AUDIT_KEY)")
            return EXIT_FAIL
        cp = Checkpoint.from_json(raw)
    recs = _load(args, annotate=True)
    if not recs:
        where = f"file {args.file} has none" if args.file else topic_note(args)[0]
        hint = "" if args.allow_empty else "; nothing was verified (--allow-empty accepts that)"
        print(f"healer: no audit records: {where}{hint}", file=sys.stderr)
        if not args.allow_empty:
            print("FAILED: 0 records, chains -")
            return EXIT_FAIL
    report = verify_chain(recs, checkpoint=cp, keyring=_keyring(args))
    for prob in report.problems:
        print(f"FAIL {prob}")
    chains = ", ".join(f"{c}:{n}" for c, n in sorted(report.chains.items()))
    if getattr(args, "inputs", False):
        bad_inputs = _verify_inputs(args, recs)
        for line in bad_inputs:
            print(f"FAIL {line}")
        if bad_inputs:
            report.problems.append(ChainProblem("-", None, f"{len(bad_inputs)} input.batch digest(s) differ"))
    macs = "MACs checked" if report.macs_checked else "MACs not checked"
    if report.unkeyed:
        macs += f" ({report.unkeyed} records sealed before the audit key)"
    print(f"{'ok' if report.ok else 'FAILED'}: {report.records} records, chains {chains or '-'}; {macs}")
    return EXIT_OK if report.ok else EXIT_FAIL
