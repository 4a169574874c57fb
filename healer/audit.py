"""Audit records (``healer.audit/v1``): building unsealed entries.

Agents and the runner build an :class:`AuditEntry` for every decision and
every lifecycle step; the sealing agent (one per audit partition) gives it its
``chain``, ``seq``, ``prev_hash`` and ``hash`` (see ``healer.chain``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from healer.models import ActionRequest, Decision, EventRef, Target
from healer.timeutil import format_time

SCHEMA = "healer.audit/v1"

AuditKind = Literal[
    "event.received",
    "input.batch",
    "event.rejected",
    "event.duplicate",
    "decision.suppressed",
    "action.pending_approval",
    "action.approved",
    "action.denied",
    "action.expired",
    "action.queued",
    "action.running",
    "action.succeeded",
    "action.failed",
    "action.verified",
    "action.rolled_back",
    "action.rollback_failed",
]
AUDIT_KINDS: tuple[str, ...] = AuditKind.__args__  # type: ignore[attr-defined]


class PolicyRef(BaseModel):
    name: str
    revision: str


class AuditEntry(BaseModel):
    """An audit record before sealing (no chain, seq or hashes yet)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    time: str
    kind: AuditKind
    action_id: str | None = None
    event: EventRef | None = None
    policy: PolicyRef | None = None
    target: dict[str, Any] | None = None
    use: str | None = None
    with_: dict[str, Any] | None = Field(default=None, alias="with")
    actor: str = "healer"
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """The record fields in the order of docs/design.md ("Audit record"), ready for sealing."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "action_id": self.action_id,
            "event": self.event.model_dump() if self.event else None,
            "policy": self.policy.model_dump() if self.policy else None,
            "target": self.target,
            "use": self.use,
            "with": self.with_,
            "actor": self.actor,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "detail": self.detail,
        }

    def routing_key(self) -> str:
        """Audit records of one action (or one event) share a partition, so a chain."""
        return self.action_id or (self.event.id if self.event else "") or self.kind


def entry_id(*parts: object) -> str:
    """Deterministic entry id: a replayed input yields the same id, so the sealer
    can drop the repeat instead of writing it twice."""
    raw = "\x00".join("" if p is None else str(p) for p in parts)
    return "e-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def _target(t: Target | None) -> dict[str, Any] | None:
    return t.brief() if t is not None else None


def for_decision(d: Decision, at: datetime) -> AuditEntry:
    """The audit entry for a decision: suppressed, pending approval or queued."""
    kind: AuditKind
    if d.decision == "suppressed":
        kind = "decision.suppressed"
    elif d.decision == "pending_approval":
        kind = "action.pending_approval"
    else:
        kind = "action.queued"
    detail: dict[str, Any] = {"event_time": format_time(d.time), "priority": d.priority}
    if d.dry_run:
        detail["dry_run"] = True
    if d.incident is not None:
        detail["incident"] = d.incident
        detail["step"] = d.step
    return AuditEntry(
        id=entry_id(kind, d.event.id if d.event else None, d.policy, d.target.key() if d.target else None),
        time=format_time(at),
        kind=kind,
        action_id=d.action_id,
        event=d.event,
        policy=PolicyRef(name=d.policy, revision=d.revision),
        target=_target(d.target),
        use=d.use,
        with_=d.with_ if d.use else None,
        reason=d.reason,
        detail=detail,
    )


def for_action(
    kind: AuditKind,
    req: ActionRequest,
    at: datetime,
    *,
    actor: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    nonce: str = "",
) -> AuditEntry:
    """The audit entry for one lifecycle step of an action.

    ``nonce`` distinguishes legitimate repeats of one kind (e.g. a second
    operator rollback attempt); replays of the same step share an id.
    """
    d = dict(detail or {})
    if req.dry_run:
        d.setdefault("dry_run", True)
    return AuditEntry(
        id=entry_id(kind, req.action_id, actor or req.actor, nonce),
        time=format_time(at),
        kind=kind,
        action_id=req.action_id,
        event=req.event,
        policy=PolicyRef(name=req.policy, revision=req.revision or "") if req.policy else None,
        target=_target(req.target),
        use=req.use,
        with_=req.with_,
        actor=actor or req.actor,
        before=before,
        after=after,
        reason=reason,
        detail=d or None,
    )


def for_event(
    kind: AuditKind,
    event: EventRef,
    at: datetime,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    nonce: str = "",
) -> AuditEntry:
    """The audit entry for an input: received, rejected or duplicate."""
    return AuditEntry(
        id=entry_id(kind, event.id, nonce),
        time=format_time(at), kind=kind, event=event, reason=reason, detail=detail,
    )
