"""The action lifecycle's rules (pure): the ledger entry and what may happen to it.

The execute stage keeps one :class:`LedgerEntry` per action id in its
changelog-backed ``ledger`` table and asks these functions what to do:

- :func:`admit`: a request arrives. No entry: **run** it (write the ``running``
  mark, durable, before the executor may change anything). An entry still
  ``running``: the worker that ran it died mid-action, its effect is unknown:
  **interrupted**, audited ``action.failed`` and never run again. Any other
  entry: a **duplicate** (a redelivery), audited and skipped. A request the
  execution guards refuse: **refused**, audited, nothing runs.
- :func:`finish` / :func:`timed_out`: the run ended (the runner's outcome).
- :func:`rollback_refusal`: whether an operator's rollback may run, and
  :func:`rolled_back`: the entry after it.

No clock, no I/O: ``now`` is passed in. Table-driven tests in
tests/unit/test_ledger.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from healer.audit import AuditEntry, for_action, for_event
from healer.models import ActionRequest, EventRef
from healer.timeutil import format_time

State = Literal["running", "succeeded", "verified", "failed", "rolled_back", "rollback_failed"]
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]
INTERRUPTED = (
    "interrupted: the worker stopped while this action was running; not re-run (no action runs "
    "twice); check the target, then roll back or re-run"
)


@dataclass(frozen=True)
class LedgerEntry:
    state: State
    request: dict[str, Any]  # healer.models.ActionRequest, JSON form
    started: str | None = None
    finished: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    reversible: bool = False
    rolled_back_by: str | None = None
    rollback_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LedgerEntry:
        def text(k: str) -> str | None:
            v = d.get(k)
            return None if v is None else str(v)

        def obj(k: str) -> dict[str, Any] | None:
            v = d.get(k)
            return v if isinstance(v, dict) else None

        state = d.get("state")
        return cls(
            state=state if state in STATES else "failed",
            request=obj("request") or {},
            started=text("started"), finished=text("finished"),
            before=obj("before"), after=obj("after"), reason=text("reason"),
            reversible=bool(d.get("reversible", False)),
            rolled_back_by=text("rolled_back_by"), rollback_reason=text("rollback_reason"),
        )

    @property
    def dry_run(self) -> bool:
        return bool(self.request.get("dry_run"))


@dataclass(frozen=True)
class Run:
    entry: LedgerEntry  # the running mark, to make durable before the executor runs


@dataclass(frozen=True)
class Duplicate:
    audit: AuditEntry


@dataclass(frozen=True)
class Interrupted:
    entry: LedgerEntry
    audit: AuditEntry


@dataclass(frozen=True)
class Refused:
    audit: AuditEntry


Admission = Run | Duplicate | Interrupted | Refused


def admit(
    entry: LedgerEntry | None,
    req: ActionRequest,
    now: datetime,
    *,
    delivery: str,
    refusal: str | None = None,
    running_here: bool = False,
) -> Admission:
    """What to do with a ``run`` request (see the module docstring).

    ``delivery``: the request record's coordinates (``topic:partition:offset``),
    which make the audit entry of each redelivery distinct. ``refusal``: why the
    execution guards refuse it (None: allowed); a known action is reported by
    its ledger state whatever the guards say. ``running_here``: this worker is
    running the action right now (a second copy of the request is a duplicate,
    not an interruption).
    """
    if running_here:
        note = for_event(
            "event.duplicate", req.event or EventRef(id=req.action_id), now,
            reason=f"action {req.action_id} is running on this worker: not run again",
            nonce=f"{req.action_id}:{delivery}",
        )
        return Duplicate(note.model_copy(update={"action_id": req.action_id}))
    if entry is not None and entry.state == "running":
        failed = replace(entry, state="failed", reason="interrupted", finished=format_time(now))
        return Interrupted(failed, for_action(
            "action.failed", req, now, reason=INTERRUPTED, detail={"interrupted": True},
            nonce="interrupted",
        ))
    if entry is not None:
        note = for_event(
            "event.duplicate", req.event or EventRef(id=req.action_id), now,
            reason=f"action {req.action_id} already {entry.state}: not run again",
            nonce=f"{req.action_id}:{delivery}",
        )
        return Duplicate(note.model_copy(update={"action_id": req.action_id}))
    if refusal is not None:
        note = for_event(
            "event.rejected", req.event or EventRef(id=req.action_id), now,
            reason=f"refused at execution: {refusal}", nonce=delivery,
            detail={"actor": req.actor, "use": req.use, "delivery": delivery},
        )
        return Refused(note.model_copy(update={"action_id": req.action_id}))
    return Run(LedgerEntry("running", req.model_dump(mode="json", by_alias=True), started=format_time(now)))


def finish(
    entry: LedgerEntry,
    status: State,
    now: datetime,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None,
    reversible: bool,
) -> LedgerEntry:
    """The entry once the runner's lifecycle ended."""
    return replace(entry, state=status, before=before, after=after, reason=reason,
                   reversible=reversible, finished=format_time(now))


def timed_out(entry: LedgerEntry, req: ActionRequest, now: datetime, timeout: float) -> tuple[LedgerEntry, AuditEntry]:
    """The action outlived ``action_timeout``: failed, effect unknown (never re-run)."""
    audit = for_action(
        "action.failed", req, now,
        reason=f"timed out: the action did not finish within {timeout:g}s (action_timeout); "
               "its effect is unknown",
        detail={"timeout_seconds": timeout}, nonce="timeout",
    )
    return replace(entry, state="failed", reason="timeout", finished=format_time(now)), audit


def rollback_refusal(entry: LedgerEntry | None, action_id: str, use: str) -> str | None:
    """Why an operator's rollback of ``action_id`` may not run (None: it may)."""
    if entry is None:
        return f"no record of action {action_id} on this worker's ledger: nothing to roll back"
    if entry.state == "rolled_back":
        return f"action {action_id} is already rolled back: nothing to do"
    if entry.state == "running":
        return f"action {action_id} is still running: roll back after it ends"
    if not entry.reversible:
        return f"{use} is not reversible: nothing was recorded to restore"
    if entry.dry_run:
        return f"action {action_id} was a dry run: it changed nothing"
    return None


def rollback_refused(req: ActionRequest, refusal: str, now: datetime, delivery: str) -> AuditEntry:
    note = for_event("event.rejected", req.event or EventRef(id=req.action_id), now,
                     reason=f"rollback refused: {refusal}", nonce=delivery,
                     detail={"actor": req.actor, "op": "rollback"})
    return note.model_copy(update={"action_id": req.action_id})


def rolled_back(entry: LedgerEntry, status: str, actor: str, reason: str | None) -> LedgerEntry:
    """The entry after an operator's rollback; a rollback that failed before acting keeps the state."""
    new_state: State = entry.state
    if status == "rolled_back":
        new_state = "rolled_back"
    elif status == "rollback_failed":
        new_state = "rollback_failed"
    return replace(entry, state=new_state, rolled_back_by=actor, rollback_reason=reason)
