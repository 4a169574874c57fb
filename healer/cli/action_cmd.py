"""``healer action run`` and ``healer rollback``: operator actions through the
worker's runner (same executors, verification and audit; actor = user)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from healer.audit import AuditEntry, for_action, for_event
from healer.catalog import default_catalog
from healer.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_kafka_options,
    require_worker,
    settings_from,
    signed,
    signing_key,
    target_text,
)
from healer.keys import Key
from healer.models import ActionRequest, EventRef, Target
from healer.policy import FIELD_KINDS, TARGET_FIELDS
from healer.templating import valid_for

TERMINAL = {"action.verified", "action.failed", "action.rolled_back", "action.rollback_failed"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("action", help="run an action by hand (same runner, verify and audit)")
    ps = p.add_subparsers(dest="action_command", metavar="SUBCOMMAND", required=True)
    r = ps.add_parser("run", help="run USE on a target")
    r.add_argument("use", help="catalog action, e.g. kubernetes.scale")
    r.add_argument("--target", action="append", default=[], metavar="KEY=VALUE", required=True,
                   help="kind=Deployment namespace=... name=... (repeatable; kind may be left out "
                        "when the action takes one kind, e.g. triton.reload: TritonModel)")
    r.add_argument("--with", dest="with_", action="append", default=[], metavar="KEY=VALUE",
                   help="action parameter; values are JSON when they parse, else strings")
    r.add_argument("--dry-run", action="store_true", help="snapshot and plan only")
    r.add_argument("--actor", help="run it as this identity: the keyring's key of it signs "
                   "(default: HEALER_SIGNING_KEY or your only key)")
    r.add_argument("--no-wait", action="store_true")
    r.add_argument("--wait-timeout", type=float, default=600.0)
    add_kafka_options(r)
    r.set_defaults(func=run)
    rb = sub.add_parser("rollback", help="roll back an executed action (restore its snapshot)")
    rb.add_argument("action_id")
    rb.add_argument("--reason", help="why (recorded in the audit)")
    rb.add_argument("--actor", help="roll back as this identity (its key signs; default as for run)")
    rb.add_argument("--no-wait", action="store_true")
    rb.add_argument("--wait-timeout", type=float, default=600.0)
    add_kafka_options(rb)
    rb.set_defaults(func=rollback)


def _kv(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--{what} wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def infer_kind(use: str, kinds: frozenset[str]) -> str:
    """The target kind when ``--target kind=...`` is left out: the action's only kind."""
    if len(kinds) == 1:
        return next(iter(kinds))
    raise CliError(f"{use} acts on {', '.join(sorted(kinds))}: say which with --target kind=...")


def build_target(raw: dict[str, Any]) -> Target:
    kind = raw.get("kind")
    if kind not in TARGET_FIELDS:
        raise CliError(f"--target kind=... must be one of {', '.join(TARGET_FIELDS)}")
    allowed, required = TARGET_FIELDS[str(kind)]
    fields = {k: v for k, v in raw.items() if k != "kind"}
    if "servers" in fields and isinstance(fields["servers"], str):
        fields["servers"] = [s for s in fields["servers"].split(",") if s]
    extra = set(fields) - allowed
    if extra:
        raise CliError(f"{kind} targets take {sorted(allowed)}; remove {sorted(extra)}")
    missing = required - set(fields)
    if missing:
        raise CliError(f"{kind} targets need {sorted(missing)}")
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            why = valid_for(FIELD_KINDS[k], str(item))
            if why:
                raise CliError(f"--target {k}={item!r}: {why}")
    if "version" in fields:
        fields["version"] = str(fields["version"])
    if "servers" in fields:
        fields["servers"] = tuple(fields["servers"])
    return Target(kind=kind, **fields)


def _send(settings: Any, req: ActionRequest, entries: list[AuditEntry]) -> None:
    import asyncio

    from streams.client import BrokerUnavailable, produce

    key = signing_key(settings, "operate", req.actor.removeprefix("user:"))

    async def go() -> None:
        if entries:
            await produce(settings.bootstrap(), settings.topic("audit-log"),
                          [_audit_record(key, entries)])
        value = req.model_dump_json(by_alias=True).encode()
        await produce(settings.bootstrap(), settings.topic("actions"),
                      [signed(key, "actions", req.target.key().encode(), value)])

    try:
        asyncio.run(go())
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc


def _audit_record(key: Key, entries: list[AuditEntry]) -> Any:
    """Entries as one audit-log record, as the worker writes them (healer.wire.AuditBatch), signed."""
    from healer.wire import AuditBatch, encode

    # keyed by the first entry's routing key, as the worker keys its own (healer.partitioner):
    # an action's records share one chain
    return signed(key, "audit-log", entries[0].routing_key().encode(),
                  encode(AuditBatch(entries=[e.body() for e in entries])))


def _wait(args: argparse.Namespace, action_id: str, since: str, done: set[str]) -> dict[str, Any] | None:
    from healer.cli.audit_cmd import _records, readable

    deadline = time.monotonic() + args.wait_timeout
    shown: set[tuple[Any, Any]] = set()
    while time.monotonic() < deadline:
        for r in _records(args):
            if r.get("action_id") != action_id or r.get("time", "") < since:
                continue
            key = (r.get("chain"), r.get("seq"))
            if key not in shown:
                shown.add(key)
                print(readable(r), flush=True)
            if r.get("kind") in done:
                return r
        time.sleep(1.0)
    return None


def _audit_refusal(settings: Any, action_id: str, reason: str, actor: str) -> None:
    import asyncio

    from streams.client import produce

    e = for_event("event.rejected", EventRef(id=f"cli:{uuid.uuid4().hex[:12]}"), datetime.now(UTC),
                  reason=reason, detail={"actor": actor}).model_copy(update={"action_id": action_id})
    try:
        key = signing_key(settings, "operate", actor.removeprefix("user:"))
        asyncio.run(produce(settings.bootstrap(), settings.topic("audit-log"), [_audit_record(key, [e])]))
    except Exception as exc:  # the refusal itself stands even if it cannot be recorded
        print(f"healer: could not audit the refusal: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    actor = f"user:{signing_key(settings, 'operate', args.actor).identity}"
    catalog = default_catalog()
    spec = catalog.get(args.use)
    if spec is None:
        print(f"healer: unknown action {args.use!r}; known: {', '.join(catalog.names())}", file=sys.stderr)
        return EXIT_USAGE
    raw_target = _kv(args.target, "target")
    if "kind" not in raw_target:
        raw_target["kind"] = infer_kind(args.use, spec.target_kinds)
    target = build_target(raw_target)
    if target.kind not in spec.target_kinds:
        raise CliError(f"{args.use} cannot act on a {target.kind} (it takes {', '.join(sorted(spec.target_kinds))})")
    params = _kv(args.with_, "with")
    try:
        spec.parse(params)
    except ValueError as exc:
        raise CliError(f"bad --with for {args.use}: {exc}") from exc
    from healer.guards import namespace_denied

    refusal = None
    if settings.paused:
        refusal = "paused: healer is paused (HEALER_PAUSED)"
    elif target.namespace and namespace_denied(target.namespace, settings.allowed_namespaces,
                                               tuple(settings.protected_namespaces)):
        refusal = f"namespace_denied: {target.namespace} is protected or not allowed"
    action_id = "m-" + uuid.uuid4().hex[:24]
    if refusal:
        _audit_refusal(settings, action_id, refusal, actor)
        print(f"healer: refused: {refusal}", file=sys.stderr)
        return EXIT_FAIL
    require_worker(settings)
    now = datetime.now(UTC)
    req = ActionRequest(action_id=action_id, use=args.use, target=target, with_=params,
                        dry_run=args.dry_run or settings.dry_run, actor=actor, requested_at=now,
                        event=EventRef(id=f"cli:{action_id}"))
    since = now.strftime("%Y-%m-%dT%H:%M:%S")
    _send(settings, req, [for_action("action.queued", req, now, actor=actor)])
    print(f"queued {action_id}: {args.use} on {target_text(target.brief())}"
          + (" (dry run)" if req.dry_run else ""))
    if args.no_wait:
        return EXIT_OK
    done = TERMINAL | {"event.rejected"} | ({"action.succeeded"} if req.dry_run else set())
    last = _wait(args, action_id, since, done)
    if last is None:
        print("healer: no worker finished it in time (is a worker running for this app id?)", file=sys.stderr)
        return EXIT_FAIL
    if last["kind"] == "event.rejected":  # the worker refused it: say why
        print(f"healer: {last.get('reason')}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK if last["kind"] in ("action.verified", "action.succeeded") else EXIT_FAIL


def rollback(args: argparse.Namespace) -> int:
    from healer.cli.audit_cmd import _records

    settings = settings_from(args)
    actor = f"user:{signing_key(settings, 'operate', args.actor).identity}"
    recs = [r for r in _records(args) if r.get("action_id") == args.action_id]
    first = next((r for r in recs if r.get("target") and r.get("use")), None)
    if first is None:
        print(f"healer: no audit records for action {args.action_id}: nothing to roll back", file=sys.stderr)
        return EXIT_FAIL
    kinds = [r["kind"] for r in recs]
    if "action.rolled_back" in kinds:
        print(f"{args.action_id} is already rolled back: nothing to do")
        return EXIT_OK
    spec = default_catalog().get(first["use"])
    if spec is None or not spec.reversible:
        reason = f"rollback refused: {first['use']} is not reversible (nothing was recorded to restore)"
        _audit_refusal(settings, args.action_id, reason, actor)
        print(f"healer: {reason}", file=sys.stderr)
        return EXIT_FAIL
    if not any(k in kinds for k in ("action.succeeded", "action.verified", "action.failed")):
        print(f"healer: {args.action_id} has not run (its lifecycle: {', '.join(kinds)})", file=sys.stderr)
        return EXIT_FAIL
    require_worker(settings)
    now = datetime.now(UTC)
    t = dict(first["target"])
    if t.get("servers"):
        t["servers"] = tuple(t["servers"])
    req = ActionRequest(action_id=args.action_id, use=first["use"], target=Target(**t),
                        with_=first.get("with") or {}, actor=actor, op="rollback", reason=args.reason,
                        requested_at=now, event=EventRef(id=f"cli:rollback:{uuid.uuid4().hex[:12]}"))
    since = now.strftime("%Y-%m-%dT%H:%M:%S")
    _send(settings, req, [])
    print(f"rollback of {args.action_id} requested")
    if args.no_wait:
        return EXIT_OK
    last = _wait(args, args.action_id, since, {"action.rolled_back", "action.rollback_failed", "event.rejected"})
    if last is None:
        print("healer: no worker answered in time", file=sys.stderr)
        return EXIT_FAIL
    if last["kind"] == "event.rejected":
        print(f"healer: {last.get('reason')}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK if last["kind"] == "action.rolled_back" else EXIT_FAIL
