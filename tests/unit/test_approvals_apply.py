"""The approvals stage's rule (healer.approvals.apply and friends), table-driven, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from healer.approvals import Message, Pending, admit_request, apply, parse_message

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
REQ: dict[str, Any] = {"action_id": "a-1", "use": "healer.noop",
                       "target": {"kind": "Node", "name": "gpu-a"}}
PENDING = Pending("pending", REQ, NOW.timestamp() + 600)


def msg(decision: str, actor: str = "ann", reason: str | None = None) -> Message:
    return Message("a-1", decision, actor, reason)


@pytest.mark.parametrize(
    ("pending", "message", "keyed", "state", "runs", "kinds", "refusal"),
    [
        (PENDING, msg("approve"), True, "approved", True, ["action.approved", "action.queued"], None),
        (PENDING, msg("deny", reason="no"), True, "denied", False, ["action.denied"], None),
        # a forged (or early) expire is ignored: nothing changes, nothing is audited
        (PENDING, msg("expire", "healer"), True, None, False, [], None),
        (Pending("pending", REQ, NOW.timestamp() - 1), msg("expire", "healer"), True, "expired", False,
         ["action.expired"], None),
        (Pending("approved", REQ, 0, "bob"), msg("approve"), True, None, False, [], "already approved"),
        (Pending("expired", REQ, 0), msg("approve"), True, None, False, [], "already expired"),
        (Pending("denied", REQ, 0, "bob"), msg("deny"), True, None, False, [], "already denied"),
        (None, msg("approve"), True, None, False, [], "no pending approval"),
    ],
)
def test_apply(pending: Pending | None, message: Message, keyed: bool, state: str | None, runs: bool,
               kinds: list[str], refusal: str | None) -> None:
    out = apply(pending, message, NOW, keyed_by_action=keyed)
    assert (out.pending.state if out.pending else None) == state
    assert (out.run is not None) == runs
    assert [k for k, _, _ in out.audit] == kinds
    assert (out.refusal is None) if refusal is None else (refusal in (out.refusal or ""))
    if runs:
        assert out.run == REQ and out.pending is not None and out.pending.by == "ann"
        assert [a for _, a, _ in out.audit] == ["user:ann", "user:ann"]


def test_a_message_keyed_elsewhere_is_forwarded_not_refused() -> None:
    out = apply(None, msg("approve"), NOW, keyed_by_action=False)
    assert out.forward and out.refusal is None and not out.audit


def test_a_replayed_request_never_resets_a_decision() -> None:
    assert admit_request(None, REQ, 5.0) == Pending("pending", REQ, 5.0)
    assert admit_request(Pending("denied", REQ, 5.0, "bob"), REQ, 9.0) is None


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"action_id": "a-1", "decision": "approve", "actor": "ann"}, Message("a-1", "approve", "ann", None)),
        ({"action_id": "a-1", "decision": "deny", "reason": "r"}, Message("a-1", "deny", "unknown", "r")),
        ({"action_id": "a-1", "decision": "approve", "actor": "x" * 500}, Message("a-1", "approve", "x" * 200, None)),
        ({"decision": "approve"}, "needs action_id"),
        ({"action_id": "", "decision": "approve"}, "needs action_id"),
        ({"action_id": "a-1", "decision": "maybe"}, "approve or deny"),
        ([1, 2], "needs action_id"),
        (None, "needs action_id"),
    ],
)
def test_parse_message(body: Any, want: Message | str) -> None:
    got = parse_message(body)
    assert got == want if isinstance(want, Message) else (isinstance(got, str) and want in got)


def test_due_and_round_trip() -> None:
    assert not PENDING.due(NOW)
    assert Pending("pending", REQ, NOW.timestamp()).due(NOW)
    assert not Pending("approved", REQ, 0).due(NOW)
    assert Pending.from_json(PENDING.to_json()) == PENDING
    approved = Pending("approved", REQ, 1.0, "ann")
    assert Pending.from_json(approved.to_json()) == approved
