"""healer.approvals.fold: the approval state the CLI and the HTTP API read from the audit trail.

Table-driven: each case is a list of audit records (only the fields fold reads) and the
expected state per action id. A decision only counts on a pending approval; later records for
a decided action, a second request and records without an action id change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from healer.approvals import ApprovalError, check_decidable, fold


def rec(kind: str, aid: Any = "a1", t: str = "2026-11-21T10:00:00Z", **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "action_id": aid, "time": t, **kw}


PENDING = rec("action.pending_approval", policy={"name": "gpu-drain", "revision": "r1"},
              target={"kind": "Node", "name": "gpu-1"}, use="kubernetes.drain", **{"with": {"grace": 30}})

CASES: list[tuple[str, list[dict[str, Any]], dict[str, str]]] = [
    ("pending", [PENDING], {"a1": "pending"}),
    ("approved", [PENDING, rec("action.approved", t="T1", actor="user:alice")], {"a1": "approved"}),
    ("denied", [PENDING, rec("action.denied", t="T1", actor="user:bob", reason="no")], {"a1": "denied"}),
    ("expired", [PENDING, rec("action.expired", t="T1", actor="healer")], {"a1": "expired"}),
    ("terminal for an unknown id is ignored",
     [rec("action.approved", aid="ghost"), rec("action.denied", aid="ghost"),
      rec("action.expired", aid="ghost")], {}),
    ("terminal before its request is ignored (the request still opens it)",
     [rec("action.approved"), PENDING], {"a1": "pending"}),
    ("a decision after approval is ignored", [PENDING, rec("action.approved"), rec("action.denied")],
     {"a1": "approved"}),
    ("a decision after denial is ignored", [PENDING, rec("action.denied"), rec("action.approved")],
     {"a1": "denied"}),
    ("approval after expiry is ignored", [PENDING, rec("action.expired"), rec("action.approved")],
     {"a1": "expired"}),
    ("a second request neither reopens nor resets",
     [PENDING, rec("action.approved"), rec("action.pending_approval", t="T9")], {"a1": "approved"}),
    ("records without action_id are ignored",
     [rec("action.pending_approval", aid=None), rec("action.pending_approval", aid=""),
      rec("action.pending_approval", aid=7), {"kind": "action.pending_approval"}], {}),
    ("other kinds change nothing",
     [PENDING, rec("action.queued"), rec("action.running"), rec("action.failed"), rec("event.rejected")],
     {"a1": "pending"}),
    ("actions are independent",
     [PENDING, rec("action.pending_approval", aid="a2"), rec("action.denied", aid="a2"),
      rec("action.approved", aid="a3")], {"a1": "pending", "a2": "denied"}),
]


@pytest.mark.parametrize(("records", "states"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fold_states(records: list[dict[str, Any]], states: dict[str, str]) -> None:
    assert {aid: a.state for aid, a in fold(records).items()} == states


def test_request_fields_come_from_the_first_request() -> None:
    second = rec("action.pending_approval", t="T9", use="other.thing", target={"kind": "Node", "name": "x"})
    a = fold([PENDING, second])["a1"]
    assert (a.requested_at, a.policy, a.use, a.target, a.with_) == (
        "2026-11-21T10:00:00Z", "gpu-drain", "kubernetes.drain", {"kind": "Node", "name": "gpu-1"}, {"grace": 30})
    assert (a.actor, a.reason, a.decided_at) == (None, None, None)


def test_the_first_decision_is_the_one_recorded() -> None:
    a = fold([PENDING, rec("action.denied", t="T1", actor="user:bob", reason="hardware team is on it"),
              rec("action.approved", t="T2", actor="user:mallory", reason="late")])["a1"]
    assert (a.state, a.actor, a.reason, a.decided_at) == ("denied", "user:bob", "hardware team is on it", "T1")
    assert a.to_json()["state"] == "denied" and a.to_json()["with"] == {"grace": 30}


def test_check_decidable_refuses_unknown_and_decided() -> None:
    approvals = fold([PENDING, rec("action.pending_approval", aid="a2"),
                      rec("action.approved", aid="a2", t="T1", actor="user:alice")])
    assert check_decidable(approvals, "a1").state == "pending"
    with pytest.raises(ApprovalError, match="no pending approval for action nope"):
        check_decidable(approvals, "nope")
    with pytest.raises(ApprovalError, match="a2 is already approved by user:alice at T1"):
        check_decidable(approvals, "a2")
