"""The guards the execute stage applies to every request, whoever wrote it (pure).

A request on ``{app}.actions`` is checked again right before it would run,
before any executor reads or changes anything (a refused request is not even
snapshotted): the action exists and takes the target's kind, its parameters
parse, every target field is valid for its kind, the namespace passes the
worker's protected and allowed namespaces and the loaded policy's own
allow-list, Triton servers and webhook URLs are on the worker's allow-lists
(credentials go only to listed hosts), and a worker in dry-run runs every
request as a dry run.

Called by ``streams.stages.execute`` through ``healer.ledger.admit``'s refusal.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import ValidationError

from healer.catalog import Catalog, WebhookParams
from healer.guards import namespace_denied
from healer.index import PolicySet
from healer.models import ActionRequest
from healer.policy import FIELD_KINDS, TARGET_FIELDS
from healer.templating import valid_for

DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 8001}


@dataclass(frozen=True)
class ExecutionRules:
    dry_run: bool = False
    protected_namespaces: tuple[str, ...] = ()
    allowed_namespaces: tuple[str, ...] | None = None
    triton_servers: tuple[str, ...] = ()  # URL patterns (host may hold * globs)
    webhook_urls: tuple[str, ...] = ()  # URL prefixes (host may hold * globs)


def url_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """``url`` matches one of ``allowed``: the same scheme and port, a host matching the
    entry's host (``*`` globs allowed), and a path under the entry's path."""
    try:
        u = urlsplit(url)
        port = u.port or DEFAULT_PORTS.get(u.scheme)
    except ValueError:
        return False
    if not u.hostname or u.username or u.password:
        return False
    for entry in allowed:
        try:
            e = urlsplit(entry)
            eport = e.port or DEFAULT_PORTS.get(e.scheme)
        except ValueError:
            continue
        if e.scheme != u.scheme or eport != port or not e.hostname:
            continue
        if not fnmatch.fnmatchcase(u.hostname, e.hostname):
            continue
        base = e.path.rstrip("/")
        if u.path == base or u.path.startswith(base + "/") or not base:
            return True
    return False


def refusal(req: ActionRequest, catalog: Catalog, policies: PolicySet, rules: ExecutionRules) -> str | None:
    """Why ``req`` may not run on this worker (None: it may)."""
    spec = catalog.get(req.use)
    if spec is None:
        return f"unknown action {req.use[:80]!r}"
    t = req.target
    if t.kind not in spec.target_kinds:
        return f"{req.use} cannot act on a {t.kind}"
    try:
        params = spec.parse(req.with_)
    except (ValidationError, ValueError) as exc:
        return f"bad params for {req.use}: {str(exc).splitlines()[0][:200]}"
    allowed_fields, required = TARGET_FIELDS[t.kind]
    given = {k for k in ("namespace", "name", "cluster", "server", "servers", "model", "version")
             if getattr(t, k) is not None}
    if given - allowed_fields or required - given:
        return f"a {t.kind} target takes {sorted(allowed_fields)} and needs {sorted(required)}"
    for fname in given:
        raw = getattr(t, fname)
        for value in raw if isinstance(raw, tuple) else (raw,):
            why = valid_for(FIELD_KINDS[fname], str(value))
            if why:
                return f"target {fname} {str(value)[:80]!r}: {why}"
    if t.namespace is not None:
        policy = policies.get(req.policy) if req.policy else None
        if rules.allowed_namespaces is not None and not any(
                fnmatch.fnmatchcase(t.namespace, g) for g in rules.allowed_namespaces):
            return f"namespace {t.namespace} is outside this worker's allowed namespaces"
        allowed = policy.guards.namespaces if policy is not None else rules.allowed_namespaces
        if namespace_denied(t.namespace, allowed, rules.protected_namespaces):
            return f"namespace {t.namespace} is protected or not allowed"
    if t.kind == "TritonModel":
        for server in t.servers or ((t.server,) if t.server else ()):
            if not url_allowed(server, rules.triton_servers):
                return (f"Triton server {server[:120]!r} is not in this worker's triton_servers "
                        "(HEALER_TRITON_SERVERS): its credentials go only to listed servers")
    if isinstance(params, WebhookParams) and not url_allowed(params.url, rules.webhook_urls):
        return f"webhook URL {params.url[:120]!r} is not in this worker's webhook_urls (HEALER_WEBHOOK_URLS)"
    return None


def effective(req: ActionRequest, rules: ExecutionRules) -> ActionRequest:
    """The request as this worker runs it: a dry run whenever the worker is in dry-run."""
    if rules.dry_run and not req.dry_run:
        return req.model_copy(update={"dry_run": True})
    return req
