"""Approval state from the audit trail (pure).

``healer approvals list|approve|deny`` and the HTTP approvals API read the
audit topic and fold it with :func:`fold`: an action is pending after
``action.pending_approval`` until ``action.approved``, ``action.denied`` or
``action.expired``. The worker's ``pending`` table is authoritative for its
own partitions; the audit view works from any machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
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
