"""``healer approvals list | approve ID | deny ID --reason TEXT``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from healer.approvals import ApprovalError, check_decidable, fold
from healer.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CliError,
    add_kafka_options,
    settings_from,
    signed,
    signing_key,
    target_text,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("approvals", help="list, approve or deny actions waiting for a human")
    ps = p.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND", required=True)
    ls = ps.add_parser("list", help="pending approvals (--all: decided ones too)")
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    add_kafka_options(ls)
    ls.set_defaults(func=list_)
    for name, helptext in (("approve", "approve a pending action"), ("deny", "deny a pending action")):
        c = ps.add_parser(name, help=helptext)
        c.add_argument("action_id")
        c.add_argument("--reason", required=(name == "deny"), help="why (required for deny)")
        c.add_argument("--actor", help="decide as this identity: the keyring's key of it signs "
                       "(default: HEALER_SIGNING_KEY or your only key)")
        c.add_argument("--no-wait", action="store_true", help="do not wait for the worker to confirm")
        c.add_argument("--wait-timeout", type=float, default=30.0)
        add_kafka_options(c)
        c.set_defaults(func=decide, decision=name)


def _audit(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The audit records to fold: with the keyring's audit key, only those a sealer MAC'd (a
    forged pending approval is never shown or decided); without one, all, with a warning."""
    from healer.chain import authentic
    from healer.cli.audit_cmd import _records
    from healer.keys import KeyringError

    records = list(_records(args))
    try:
        ring = settings_from(args).keyring()
    except KeyringError:
        ring = None
    if ring is None or not ring.with_role("audit"):
        print("healer: no audit key (HEALER_KEYRING_FILE): approval records are not checked for "
              "forgery", file=sys.stderr)
        return records
    return [r for r in records if authentic(r, ring)]


def list_(args: argparse.Namespace) -> int:
    approvals = fold(_audit(args))
    rows = [a for a in approvals.values() if args.all or a.state == "pending"]
    if args.json:
        for a in rows:
            print(json.dumps(a.to_json(), ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no pending approvals" if not args.all else "no approvals")
        return EXIT_OK
    for a in rows:
        t = a.target or {}
        target = target_text(t)
        print(f"{a.action_id}  {a.state:8}  {a.requested_at}  {a.policy}  {a.use}  {target}"
              + (f"  by {a.actor}: {a.reason}" if a.state != "pending" and a.reason else ""))
    return EXIT_OK


def decide(args: argparse.Namespace) -> int:
    import asyncio

    from streams.client import BrokerUnavailable, produce

    settings = settings_from(args)
    try:
        check_decidable(fold(_audit(args)), args.action_id)
    except ApprovalError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return EXIT_FAIL
    key = signing_key(settings, "approve", args.actor)
    actor = key.identity  # the worker audits the signing key's identity, whatever the message says
    body = {"action_id": args.action_id, "decision": args.decision, "actor": actor, "reason": args.reason}
    try:
        asyncio.run(produce(settings.bootstrap(), settings.topic("approvals"),
                            [signed(key, "approvals", args.action_id.encode(), json.dumps(body).encode())]))
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc
    if args.no_wait:
        print(f"{args.decision} sent for {args.action_id}")
        return EXIT_OK
    want = "approved" if args.decision == "approve" else "denied"
    deadline = time.monotonic() + args.wait_timeout
    while time.monotonic() < deadline:
        a = fold(_audit(args)).get(args.action_id)
        if a is not None and a.state != "pending":
            if a.state == want:
                print(f"{args.action_id} {a.state} by {a.actor}")
                return EXIT_OK
            print(f"healer: {args.action_id} ended {a.state}, not {want}", file=sys.stderr)
            return EXIT_FAIL
        time.sleep(1.0)
    print(f"healer: sent, but no worker confirmed within {args.wait_timeout:g}s "
          "(is a worker running for this app id?)", file=sys.stderr)
    return EXIT_FAIL
