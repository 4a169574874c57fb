"""The decide stage's rule for one batch of signal batches (pure).

For every signal, in order: skip it when its target has already applied that
input (a replay: the target's row holds, per input partition, the position of
the last input it applied), else run :func:`healer.engine.decide` on the
target's state and collect what to send: an audit entry per decision (and
per duplicate alert), an action request per ``execute``, an approval request
per ``pending_approval``. Each touched row is returned once, to be written
once per batch after the outputs are acknowledged.

Rows come from ``load(key)``, which must hand out a row private to this call
(the worker decodes it from its table): nothing here mutates state the caller
keeps, so a failed batch leaves nothing to undo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from healer.audit import AuditEntry, for_decision, for_event
from healer.engine import EngineSettings, Route, decide
from healer.index import PolicySet
from healer.models import ActionRequest, Decision, Signal, Target
from healer.state import GlobalState, TargetRow
from healer.wire import ApprovalRequest, SignalBatch, WireAlert, WireSignal, event_id

DEFAULT_APPROVAL_TIMEOUT = 1800.0
DUPLICATE_REASON = "same fingerprint, startsAt and status within dedup_window"


@dataclass
class DecideOutputs:
    audit: list[AuditEntry] = field(default_factory=list)
    actions: list[ActionRequest] = field(default_factory=list)
    approvals: list[ApprovalRequest] = field(default_factory=list)
    rows: dict[str, TargetRow] = field(default_factory=dict)  # rows that applied a signal, by target key
    decisions: list[Decision] = field(default_factory=list)
    queued: list[tuple[str, float]] = field(default_factory=list)  # (signal kind, event time)
    duplicates: list[Signal] = field(default_factory=list)
    replayed: int = 0  # signals skipped because their target had applied them
    signals: int = 0


def signal_of(w: WireSignal, source: str) -> Signal:
    """The engine's signal for one wire signal."""
    eid = event_id(source, w.offset, w.index)
    if isinstance(w, WireAlert):
        return Signal(
            kind="alert", t=w.t, event_id=eid, labels=w.labels, annotations=w.annotations,
            status="resolved" if w.status == "resolved" else "firing",
            fingerprint=w.fingerprint or None,
            starts_at=datetime.fromtimestamp(w.starts_at, tz=UTC) if w.starts_at is not None else None,
        )
    return Signal(kind="metric", t=w.t, event_id=eid, labels=w.labels, name=w.name, value=w.value)


def _routes(batch: SignalBatch) -> list[Route]:
    return [
        Route(
            key=r.key,
            target=Target.model_validate(r.target) if r.target else None,
            policies=tuple(r.policies),
            failures=tuple((a, b) for a, b in r.failures),
        )
        for r in batch.routes
    ]


def decide_batch(
    batches: Iterable[SignalBatch],
    load: Callable[[str], TargetRow],
    policies: PolicySet,
    gstate: GlobalState,
    settings: EngineSettings,
    now: datetime,
) -> DecideOutputs:
    out = DecideOutputs()
    rows: dict[str, TargetRow] = {}  # loaded this call, by target key
    for batch in batches:
        routes = _routes(batch)
        sources = batch.sources
        for w in batch.signals:
            out.signals += 1
            rt = routes[w.route]
            row = rows.get(rt.key)
            if row is None:
                row = rows[rt.key] = load(rt.key)
            source = sources[w.source]
            pos = (w.offset, w.index)
            if row.seen(source, pos):
                out.replayed += 1
                continue
            row.mark(source, pos)
            out.rows[rt.key] = row
            sig = signal_of(w, source)
            res = decide(sig, rt, policies, row.state, gstate, settings)
            if res.duplicate:
                out.duplicates.append(sig)
                out.audit.append(for_event("event.duplicate", sig.ref, now, nonce=rt.key,
                                           detail={"route": rt.key, "reason": DUPLICATE_REASON}))
            for d in res.decisions:
                out.decisions.append(d)
                out.audit.append(for_decision(d, now))
                if d.decision == "execute":
                    out.queued.append((sig.kind, sig.t))
                    out.actions.append(ActionRequest.from_decision(d))
                elif d.decision == "pending_approval":
                    req = ActionRequest.from_decision(d)
                    out.approvals.append(ApprovalRequest(
                        action_id=req.action_id,
                        request=req.model_dump(mode="json", by_alias=True),
                        expires_at=now.timestamp() + (d.approval_timeout_seconds or DEFAULT_APPROVAL_TIMEOUT),
                    ))
    return out
