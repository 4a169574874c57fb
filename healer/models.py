"""Wire and domain models: alerts, metric samples, signals, targets, decisions,
action requests.

Everything that crosses a topic or the plan format is defined here, with
pydantic v2, so ``streams`` (live) and ``healer policy test`` (replay) parse
input the same way.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from healer.timeutil import format_time, parse_time

MAX_LABELS = 128
MAX_LABEL_NAME = 256
MAX_LABEL_VALUE = 16 * 1024

TargetKind = Literal[
    "Deployment", "StatefulSet", "Pod", "Node", "Service", "HTTPRoute", "TritonModel"
]
DecisionKind = Literal["execute", "pending_approval", "suppressed"]


def _check_labels(v: dict[str, Any]) -> dict[str, str]:
    if len(v) > MAX_LABELS:
        raise ValueError(f"too many labels ({len(v)} > {MAX_LABELS})")
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k or len(k) > MAX_LABEL_NAME:
            raise ValueError(f"bad label name {str(k)[:40]!r}")
        if not isinstance(val, str):
            raise ValueError(f"label {k!r} must be a string")
        if len(val) > MAX_LABEL_VALUE:
            raise ValueError(f"label {k!r} is {len(val)} chars (max {MAX_LABEL_VALUE})")
        out[k] = val
    return out


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable fingerprint from sorted labels, for alerts sent without one."""
    canon = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


class Alert(BaseModel):
    """One Alertmanager alert object (the element of ``alerts[]``)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("must be an object of string values")
        return _check_labels(v)

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            parsed = parse_time(v)
            # Alertmanager uses 0001-01-01 for "unset" endsAt.
            return None if parsed.year <= 1 else parsed
        raise ValueError("must be an RFC 3339 time")

    def effective_fingerprint(self) -> str:
        return self.fingerprint or fingerprint_of(self.labels)


class AlertmanagerPayload(BaseModel):
    """Alertmanager webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    receiver: str = ""
    status: str = ""
    alerts: list[Alert] = Field(max_length=10_000)
    groupKey: str = ""


class MetricSample(BaseModel):
    """One metric sample; ``timestamp`` absent means the Kafka record time."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_LABEL_NAME)
    value: float
    labels: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("must be an object of string values")
        return _check_labels(v)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError("value must be a number")
        return v

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError("timestamp must be RFC 3339 or epoch seconds")
        return parse_time(v)


class EventRef(BaseModel):
    """What an audit record says about the input that caused it."""

    id: str
    fingerprint: str | None = None


class Signal(BaseModel):
    """One normalised input: an alert delivery or a metric sample, at event time."""

    kind: Literal["alert", "metric"]
    time: datetime
    event_id: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    # alerts
    status: Literal["firing", "resolved"] | None = None
    fingerprint: str | None = None
    starts_at: datetime | None = None
    # metrics
    name: str | None = None
    value: float | None = None

    @property
    def ref(self) -> EventRef:
        return EventRef(id=self.event_id, fingerprint=self.fingerprint)

    def match_labels(self) -> dict[str, str]:
        """Labels matchers see: metrics add ``__name__``."""
        if self.kind == "metric" and self.name is not None:
            return {**self.labels, "__name__": self.name}
        return self.labels


def alert_signal(alert: Alert, time: datetime, event_id: str) -> Signal:
    return Signal(
        kind="alert",
        time=time,
        event_id=event_id,
        labels=alert.labels,
        annotations=alert.annotations,
        status=alert.status,
        fingerprint=alert.effective_fingerprint(),
        starts_at=alert.startsAt,
    )


def metric_signal(sample: MetricSample, record_time: datetime, event_id: str) -> Signal:
    return Signal(
        kind="metric",
        time=sample.timestamp or record_time,
        event_id=event_id,
        labels=sample.labels,
        name=sample.name,
        value=sample.value,
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
        """The JSON object ``healer policy test`` prints (DESIGN.md plan format)."""
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
