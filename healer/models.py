"""Wire and domain models: alerts, metric samples, signals, targets, decisions,
action requests.

Everything that crosses a topic or the plan format is defined here, so
``streams`` (live) and ``healer policy test`` (replay) parse input the same
way: the input shapes (alerts, samples) as msgspec structs for the hot path,
the rest with pydantic v2. The internal topics' envelopes are in
``healer.wire``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pydantic import BaseModel, ConfigDict, Field

from healer.timeutil import epoch_of, format_time, parse_time

MAX_LABELS = 128
MAX_LABEL_NAME = 256
MAX_LABEL_VALUE = 16 * 1024
MAX_ALERTS_PER_PAYLOAD = 10_000

TargetKind = Literal[
    "Deployment", "StatefulSet", "Pod", "Node", "Service", "HTTPRoute", "TritonModel"
]
DecisionKind = Literal["execute", "pending_approval", "suppressed"]


# Input shapes are msgspec structs: the ingest hot path decodes and validates a
# record in one C call (about 0.4 us per sample), and the HTTP receiver, the
# replay harness and the worker share these exact rules.
LabelName = Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_NAME)]
LabelValue = Annotated[str, Meta(max_length=MAX_LABEL_VALUE)]
Labels = Annotated[dict[LabelName, LabelValue], Meta(max_length=MAX_LABELS)]
TimeValue = float | str | None


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable fingerprint from sorted labels, for alerts sent without one."""
    canon = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


class Alert(msgspec.Struct, kw_only=True):
    """One Alertmanager alert object (the element of ``alerts[]``); unknown keys are ignored."""

    status: Literal["firing", "resolved"] = "firing"
    labels: Labels
    annotations: Labels = msgspec.field(default_factory=dict)
    startsAt: TimeValue = None
    endsAt: TimeValue = None
    generatorURL: str = ""
    fingerprint: str = ""

    def effective_fingerprint(self) -> str:
        return self.fingerprint or fingerprint_of(self.labels)

    def starts_at(self) -> datetime | None:
        return _alert_time(self.startsAt)

    def check_times(self) -> None:
        """Raise ValueError when startsAt or endsAt is not a time."""
        _alert_time(self.startsAt)
        _alert_time(self.endsAt)


def _alert_time(v: TimeValue) -> datetime | None:
    if v is None or v == "":
        return None
    parsed = parse_time(v)
    # Alertmanager uses 0001-01-01 for "unset" times.
    return None if parsed.year <= 1 else parsed


class AlertmanagerPayload(msgspec.Struct, kw_only=True):
    """Alertmanager webhook payload, version 4."""

    version: str
    receiver: str = ""
    status: str = ""
    alerts: Annotated[list[Alert], Meta(max_length=MAX_ALERTS_PER_PAYLOAD)]
    groupKey: str = ""


class MetricSample(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One metric sample; ``timestamp`` absent means the Kafka record time."""

    name: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_NAME)]
    value: float | str
    labels: Labels = msgspec.field(default_factory=dict)
    timestamp: TimeValue = None

    def number(self) -> float:
        """``value`` as a float (numeric strings are accepted, as Prometheus' JSON writes them)."""
        v = self.value
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                raise ValueError(f"value must be a number, not {v[:40]!r}") from None
        return v


class EventRef(BaseModel):
    """What an audit record says about the input that caused it."""

    id: str
    fingerprint: str | None = None


SignalKind = Literal["alert", "metric"]


class Signal:
    """One normalised input: an alert delivery or a metric sample, at event time.

    A plain slotted class (the decide stage makes one per sample): ``t`` is the
    event time in epoch seconds; ``time`` gives it as a datetime.
    """

    __slots__ = (
        "annotations", "event_id", "fingerprint", "kind", "labels", "name", "starts_at",
        "status", "t", "value",
    )

    def __init__(
        self,
        *,
        kind: SignalKind,
        event_id: str,
        labels: dict[str, str],
        time: datetime | None = None,
        t: float | None = None,
        annotations: dict[str, str] | None = None,
        status: Literal["firing", "resolved"] | None = None,
        fingerprint: str | None = None,
        starts_at: datetime | None = None,
        name: str | None = None,
        value: float | None = None,
    ) -> None:
        if t is None:
            if time is None:
                raise ValueError("a signal needs its event time (time or t)")
            t = time.timestamp()
        self.kind = kind
        self.t = t
        self.event_id = event_id
        self.labels = labels
        self.annotations = annotations if annotations is not None else {}
        self.status = status
        self.fingerprint = fingerprint
        self.starts_at = starts_at
        self.name = name
        self.value = value

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)

    @property
    def ref(self) -> EventRef:
        return EventRef(id=self.event_id, fingerprint=self.fingerprint)

    def match_labels(self) -> dict[str, str]:
        """Labels matchers see: metrics add ``__name__``."""
        if self.kind == "metric" and self.name is not None:
            return {**self.labels, "__name__": self.name}
        return self.labels

    def __repr__(self) -> str:
        return f"Signal({self.kind} {self.event_id} t={self.t} {self.labels})"


def alert_signal(alert: Alert, time: datetime, event_id: str) -> Signal:
    return Signal(
        kind="alert",
        time=time,
        event_id=event_id,
        labels=alert.labels,
        annotations=alert.annotations,
        status=alert.status,
        fingerprint=alert.effective_fingerprint(),
        starts_at=alert.starts_at(),
    )


def metric_signal(sample: MetricSample, record_time: float, event_id: str) -> Signal:
    ts = sample.timestamp
    return Signal(
        kind="metric",
        t=record_time if ts is None else epoch_of(ts),
        event_id=event_id,
        labels=sample.labels,
        name=sample.name,
        value=sample.number(),
    )


class Target(BaseModel):
    """A rendered target. Which fields apply depends on ``kind``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    namespace: str | None = None
    name: str | None = None
    cluster: str | None = None
    server: str | None = None
    servers: tuple[str, ...] | None = None
    model: str | None = None
    version: str | None = None

    def key(self) -> str:
        """Canonical routing key: one partition owns each target."""
        if self.kind == "TritonModel":
            servers = ",".join(self.servers or (() if self.server is None else (self.server,)))
            return f"TritonModel/{servers}/{self.model}/{self.version or ''}"
        parts = [self.cluster or "", self.kind, self.namespace or "", self.name or ""]
        return "/".join(parts)

    def brief(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


class VerifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float = 300.0
    rollback: bool = True


class Decision(BaseModel):
    """One decision of one policy on one signal; the plan-format line."""

    time: datetime
    policy: str
    revision: str
    target: Target | None
    use: str | None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    decision: DecisionKind
    reason: str | None = None
    dry_run: bool = False
    action_id: str | None = None
    event: EventRef | None = None
    priority: int = 0
    approval_timeout_seconds: float | None = None
    verify: VerifySpec = Field(default_factory=VerifySpec)
    incident: str | None = None
    step: int | None = None

    model_config = ConfigDict(populate_by_name=True)

    @property
    def acted(self) -> bool:
        return self.decision in ("execute", "pending_approval")

    def plan_line(self) -> dict[str, Any]:
        """The JSON object ``healer policy test`` prints (the plan format, docs/design.md)."""
        return {
            "time": format_time(self.time),
            "policy": self.policy,
            "revision": self.revision,
            "target": self.target.brief() if self.target else None,
            "use": self.use,
            "with": self.with_,
            "decision": self.decision,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "action_id": self.action_id,
        }


class ActionRequest(BaseModel):
    """An approved action on ``{app_id}.actions``, keyed by target."""

    action_id: str
    use: str
    target: Target
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    dry_run: bool = False
    actor: str = "healer"
    policy: str | None = None
    revision: str | None = None
    event: EventRef | None = None
    verify: VerifySpec = Field(default_factory=VerifySpec)
    requested_at: datetime | None = None
    # wall-clock time of the triggering record, for alert-to-action latency
    signal_time: datetime | None = None
    # "run" executes; "rollback" restores the ledger's snapshot of action_id
    op: Literal["run", "rollback"] = "run"
    reason: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def from_decision(cls, d: Decision, actor: str = "healer") -> ActionRequest:
        assert d.target is not None and d.use is not None and d.action_id is not None
        return cls(
            action_id=d.action_id,
            use=d.use,
            target=d.target,
            with_=d.with_,
            dry_run=d.dry_run,
            actor=actor,
            policy=d.policy,
            revision=d.revision,
            event=d.event,
            verify=d.verify,
            requested_at=d.time,
        )
