"""The interrupted-action rule of tests/streamcheck.py can fail: a second run after an
interrupted report is caught, an outcome before it (a crash between the outcome and the
ledger write) is reported, not mistaken for a second run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.streamcheck import finished_then_interrupted, interrupted_actions


def rec(kind: str, interrupted: bool = False, aid: str = "a-1") -> dict[str, Any]:
    return {"action_id": aid, "kind": kind, "detail": {"interrupted": True} if interrupted else None}


RUN = [rec("action.queued"), rec("action.running")]
STOPPED = [*RUN, rec("action.failed", interrupted=True)]


def test_an_interrupted_action_that_never_ran_again() -> None:
    assert interrupted_actions(STOPPED) == {"a-1"}
    assert finished_then_interrupted(STOPPED) == set()
    assert interrupted_actions([*RUN, rec("action.succeeded"), rec("action.verified")]) == set()


@pytest.mark.parametrize("later", [
    [rec("action.succeeded"), rec("action.verified")],
    [rec("action.running"), rec("action.succeeded")],
    [rec("action.failed")],
])
def test_a_run_after_the_interrupted_report_fails(later: list[dict[str, Any]]) -> None:
    with pytest.raises(AssertionError):
        interrupted_actions([*STOPPED, *later])


def test_an_outcome_before_the_interrupted_report_is_reported() -> None:
    audit = [*RUN, rec("action.succeeded"), rec("action.verified"), rec("action.failed", interrupted=True),
             *[rec(k, aid="a-2") for k in ("action.queued", "action.running", "action.succeeded")]]
    assert interrupted_actions(audit) == {"a-1"}
    assert finished_then_interrupted(audit) == {"a-1"}
