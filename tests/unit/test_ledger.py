"""The action lifecycle's rules (healer.ledger), table-driven, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from healer.ledger import (
    INTERRUPTED,
    Duplicate,
    Interrupted,
    LedgerEntry,
    Refused,
    Run,
    admit,
    finish,
    rollback_refusal,
    rolled_back,
    timed_out,
)
from healer.models import ActionRequest, Target

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
REQ = ActionRequest(action_id="a-1", use="healer.noop",
                    target=Target(kind="Deployment", namespace="llm", name="vllm"))


def entry(state: str, **kw: Any) -> LedgerEntry:
    return LedgerEntry(state, REQ.model_dump(mode="json", by_alias=True), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("existing", "refusal", "running_here", "want"),
    [
        (None, None, False, Run),  # new: run it
        (None, "namespace kube-system is protected", False, Refused),  # the guards say no
        (entry("running"), None, False, Interrupted),  # the worker died mid-action
        (entry("running"), None, True, Duplicate),  # a second copy while it runs here
        (entry("verified"), None, False, Duplicate),
        (entry("failed"), None, False, Duplicate),
        (entry("rolled_back"), None, False, Duplicate),
        (entry("verified"), "anything", False, Duplicate),  # a known action: its state, not the guard
        (entry("running"), "anything", False, Interrupted),
    ],
)
def test_admit(existing: LedgerEntry | None, refusal: str | None, running_here: bool, want: type) -> None:
    got = admit(existing, REQ, NOW, delivery="h.actions:0:5", refusal=refusal, running_here=running_here)
    assert type(got) is want
    if isinstance(got, Run):
        assert got.entry.state == "running" and got.entry.started == "2026-11-21T10:00:00Z"
        assert got.entry.request["action_id"] == "a-1"
    if isinstance(got, Interrupted):
        assert got.entry.state == "failed" and got.entry.reason == "interrupted"
        assert got.audit.kind == "action.failed" and got.audit.reason == INTERRUPTED
        assert got.audit.detail == {"interrupted": True}
    if isinstance(got, Duplicate):
        assert got.audit.kind == "event.duplicate" and got.audit.action_id == "a-1"
    if isinstance(got, Refused):
        assert got.audit.kind == "event.rejected" and "refused at execution" in (got.audit.reason or "")


def test_redeliveries_are_audited_once_each() -> None:
    a = admit(entry("verified"), REQ, NOW, delivery="h.actions:0:5")
    b = admit(entry("verified"), REQ, NOW, delivery="h.actions:0:9")
    again = admit(entry("verified"), REQ, NOW, delivery="h.actions:0:5")
    assert isinstance(a, Duplicate) and isinstance(b, Duplicate) and isinstance(again, Duplicate)
    assert a.audit.id != b.audit.id and a.audit.id == again.audit.id  # a replay of one delivery: one entry


def test_interrupted_is_the_same_entry_on_every_replay() -> None:
    a, b = (admit(entry("running"), REQ, NOW, delivery=d) for d in ("x:0:1", "x:0:2"))
    assert isinstance(a, Interrupted) and isinstance(b, Interrupted) and a.audit.id == b.audit.id


def test_finish_and_timeout() -> None:
    done = finish(entry("running", started="s"), "verified", NOW, before={"r": 1}, after={"r": 2},
                  reason=None, reversible=True)
    assert (done.state, done.before, done.after, done.reversible, done.started) == (
        "verified", {"r": 1}, {"r": 2}, True, "s")
    failed, audit = timed_out(entry("running"), REQ, NOW, 90)
    assert failed.state == "failed" and failed.reason == "timeout"
    assert audit.kind == "action.failed" and "90s" in (audit.reason or "")


@pytest.mark.parametrize(
    ("existing", "want"),
    [
        (None, "no record of action a-1"),
        (entry("rolled_back", reversible=True), "already rolled back"),
        (entry("running", reversible=True), "still running"),
        (entry("verified", reversible=False), "not reversible"),
        (LedgerEntry("verified", {**REQ.model_dump(mode="json", by_alias=True), "dry_run": True},
                     reversible=True), "dry run"),
        (entry("verified", reversible=True), None),
        (entry("failed", reversible=True), None),  # failed verification, not rolled back: may be
        (entry("rollback_failed", reversible=True), None),  # try again
    ],
)
def test_rollback_refusal(existing: LedgerEntry | None, want: str | None) -> None:
    got = rollback_refusal(existing, "a-1", "healer.noop")
    assert got is None if want is None else (got is not None and want in got)


@pytest.mark.parametrize(
    ("status", "state"),
    [("rolled_back", "rolled_back"), ("rollback_failed", "rollback_failed"), ("failed", "verified")],
)
def test_rolled_back(status: str, state: str) -> None:
    got = rolled_back(entry("verified", reversible=True), status, "user:ann", "bad canary")
    assert (got.state, got.rolled_back_by, got.rollback_reason) == (state, "user:ann", "bad canary")


def test_entries_round_trip_and_tolerate_old_rows() -> None:
    e = entry("verified", before={"a": 1}, reversible=True, finished="f")
    assert LedgerEntry.from_json(e.to_json()) == e
    old = {"state": "weird", "request": REQ.model_dump(mode="json", by_alias=True)}
    assert LedgerEntry.from_json(old).state == "failed"  # an unknown state never reads as runnable
