"""Approvals (pure): the worker's rule and the view from the audit trail.

:func:`apply` is the approvals stage's rule: what one decision message
(approve / deny / expire) does to one row of the worker's ``pending`` table,
and what to audit and run; :func:`admit_request` records a new request.

``healer approvals list|approve|deny`` and the HTTP approvals API read the
audit topic and fold it with :func:`fold`: an action is pending after
``action.pending_approval`` until ``action.approved``, ``action.denied`` or
``action.expired``. The worker's ``pending`` table is authoritative for its
own partitions; the audit view works from any machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

TERMINAL = {"action.approved": "approved", "action.denied": "denied", "action.expired": "expired"}


@dataclass
class Approval:
    action_id: str
    state: str  # pending | approved | denied | expired
    requested_at: str
    policy: str | None = None
    target: dict[str, Any] | None = None
    use: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None
    reason: str | None = None
    decided_at: str | None = None
    event: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "state": self.state,
            "requested_at": self.requested_at,
            "policy": self.policy,
            "target": self.target,
            "use": self.use,
            "with": self.with_,
            "actor": self.actor,
            "reason": self.reason,
            "decided_at": self.decided_at,
        }


def fold(records: Iterable[dict[str, Any]]) -> dict[str, Approval]:
    out: dict[str, Approval] = {}
    for r in records:
        aid = r.get("action_id")
        kind = r.get("kind")
        if not aid or not isinstance(aid, str):
            continue
        if kind == "action.pending_approval":
            if aid not in out:
                out[aid] = Approval(
                    action_id=aid,
                    state="pending",
                    requested_at=str(r.get("time", "")),
                    policy=(r.get("policy") or {}).get("name"),
                    target=r.get("target"),
                    use=r.get("use"),
                    with_=r.get("with") or {},
                    event=r.get("event"),
                )
        elif kind in TERMINAL and aid in out and out[aid].state == "pending":
            a = out[aid]
            a.state = TERMINAL[kind]
            a.actor = r.get("actor")
            a.reason = r.get("reason")
            a.decided_at = r.get("time")
    return out


class ApprovalError(ValueError):
    """Approving or denying is not possible; the message says why."""


def check_decidable(approvals: dict[str, Approval], action_id: str) -> Approval:
    a = approvals.get(action_id)
    if a is None:
        raise ApprovalError(
            f"no pending approval for action {action_id}: check the id with `healer approvals list`"
        )
    if a.state != "pending":
        by = f" by {a.actor}" if a.actor else ""
        when = f" at {a.decided_at}" if a.decided_at else ""
        raise ApprovalError(f"action {action_id} is already {a.state}{by}{when}; nothing to do")
    return a


# ------------------------------------------------------------------ the worker's rule

MAX_ACTOR = 200
MAX_REASON = 2000
DECISIONS = ("approve", "deny", "expire")


@dataclass(frozen=True)
class Pending:
    """One row of the worker's ``pending`` table: an action waiting for a human."""

    state: str  # pending | approved | denied | expired
    request: dict[str, Any]  # healer.models.ActionRequest, JSON form
    expires_at: float  # epoch seconds (wall clock)
    by: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "request": self.request, "expires_at": self.expires_at}
        if self.by is not None:
            out["by"] = self.by
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Pending:
        return cls(str(d["state"]), dict(d["request"]), float(d.get("expires_at", 0)), d.get("by"))

    def due(self, now: datetime) -> bool:
        """Still pending at or after its expiry: the worker sends itself an ``expire``."""
        return self.state == "pending" and now.timestamp() >= self.expires_at


@dataclass(frozen=True)
class Message:
    """A decision on ``{app}.approvals``: approve | deny (a human) or expire (the worker's timer)."""

    action_id: str
    decision: str
    actor: str
    reason: str | None


def parse_message(body: Any) -> Message | str:
    """A decision message, or why it is not one (bounded, never echoing huge values)."""
    if not isinstance(body, dict) or not isinstance(body.get("action_id"), str) or not body["action_id"]:
        return "approval message needs action_id and decision"
    decision = body.get("decision")
    if decision not in DECISIONS:
        return f"decision must be approve or deny, not {str(decision)[:40]!r}"
    actor = str(body.get("actor") or "unknown")[:MAX_ACTOR]
    reason = str(body.get("reason") or "")[:MAX_REASON] or None
    return Message(body["action_id"][:200], str(decision), actor, reason)


@dataclass(frozen=True)
class Outcome:
    """What the approvals stage does with one message.

    ``pending``: the new row (None: leave the table alone); ``run``: the request
    to put on ``{app}.actions``; ``audit``: entries to write first; ``refusal``:
    why nothing happened (audited as ``event.rejected`` by the stage);
    ``forward``: the message belongs to another partition (resend keyed by id).
    """

    pending: Pending | None = None
    run: dict[str, Any] | None = None
    audit: tuple[tuple[str, str, str | None], ...] = ()  # (kind, actor, reason) for the action
    refusal: str | None = None
    forward: bool = False
    ignored: bool = False


def apply(pending: Pending | None, msg: Message, now: datetime, *, keyed_by_action: bool) -> Outcome:
    """The approval rule: what one decision message does to one pending row.

    ``keyed_by_action``: the record's key is its action id, so this partition
    owns the action (a message keyed otherwise is forwarded to its owner first).
    A forged early ``expire`` (before ``expires_at``) is ignored; a decision on
    an action that is no longer pending is refused with its state.
    """
    if pending is None:
        if not keyed_by_action:
            return Outcome(forward=True)
        return Outcome(refusal=f"unknown action id {msg.action_id[:80]!r}: no pending approval")
    if pending.state != "pending":
        return Outcome(refusal=f"action {msg.action_id} is already {pending.state}")
    if msg.decision == "expire":
        if now.timestamp() < pending.expires_at:
            return Outcome(ignored=True)  # not due (or forged): the timer sends it again when due
        return Outcome(
            pending=replace(pending, state="expired"),
            audit=(("action.expired", "healer", "approval_timeout passed without a decision"),),
        )
    actor = f"user:{msg.actor}"
    if msg.decision == "approve":
        return Outcome(
            pending=replace(pending, state="approved", by=msg.actor),
            run=pending.request,
            audit=(("action.approved", actor, msg.reason), ("action.queued", actor, None)),
        )
    return Outcome(
        pending=replace(pending, state="denied", by=msg.actor),
        audit=(("action.denied", actor, msg.reason),),
    )


def admit_request(pending: Pending | None, request: dict[str, Any], expires_at: float) -> Pending | None:
    """A new approval request: the row to write, or None when the action is known already
    (a replayed request never resets a decision)."""
    if pending is not None:
        return None
    return Pending("pending", request, expires_at)
