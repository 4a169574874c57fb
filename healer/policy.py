"""The policy language v1: spec models (what authors write) and compiled policies.

Spec models are pydantic with ``extra="forbid"``; :func:`compile_policy` turns a
validated spec into an immutable :class:`CompiledPolicy` the engine runs
(matchers and templates compiled once, durations parsed, params checked
against the action catalog, revision computed). Loading YAML with file/line
errors is ``healer.loader``'s job.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from healer.catalog import Catalog, Params
from healer.durations import parse_duration
from healer.matchers import Matcher, MatcherError, canonical
from healer.models import TargetKind, VerifySpec
from healer.templating import FieldKind, Template, TemplateError

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^(0|(\d+(\.\d+)?(ms|s|m|h|d|w))+)$"},
        {"type": "number", "minimum": 0},
    ],
    "description": 'a duration: "90s", "5m", "1h30m", or a number of seconds',
}
_MATCHER_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"""^[ \t\n\f\r]*[a-zA-Z_:][a-zA-Z0-9_:]*[ \t\n\f\r]*(=~|!~|!=|=)""",
    "description": "one Alertmanager matcher: "
    'name="value", name!="value", name=~"regex", name!~"regex" (RE2, fully anchored)',
}


def _matcher(v: str) -> str:
    try:
        Matcher.parse(v)
    except MatcherError as exc:
        # a custom error carries the hint to the loader's message
        raise PydanticCustomError(
            "matcher", "{message}", {"message": exc.message, "hint": exc.hint}
        ) from exc
    return v


Duration = Annotated[str | int | float, WithJsonSchema(_DURATION_SCHEMA)]
# validated per item, so a load error points at the line of the bad matcher
MatcherText = Annotated[str, AfterValidator(_matcher), WithJsonSchema(_MATCHER_SCHEMA)]


def _duration(v: Any) -> Any:
    if v is None:
        return v
    parse_duration(v)  # raises DurationError (a ValueError) with a hint
    return v


class Strict(BaseModel):
    # Only the YAML spelling is accepted ("for", "with"): with populate_by_name a
    # document could also say "for_" and "with_".
    model_config = ConfigDict(extra="forbid")


class Metadata(Strict):
    name: str = Field(
        max_length=63, description="unique name (DNS-1123 label); part of every action id"
    )
    description: str = Field(default="", description="free text shown by validate and in docs")
    labels: dict[str, str] = Field(default_factory=dict, description="free-form labels")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS1123.fullmatch(v):
            raise ValueError(
                f"name {v!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return v


class AlertTriggerSpec(Strict):
    matchers: list[MatcherText] = Field(
        min_length=1, description="all must match the alert's labels (absent label = empty)"
    )
    status: Literal["firing", "resolved", "any"] = Field(
        default="firing",
        description="which deliveries fire the policy; a resolved alert ends a `firing` "
        "policy's incident",
    )


Aggregate = Literal["avg", "min", "max", "sum", "count", "last", "rate"]
CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]


class MetricTriggerSpec(Strict):
    name: str = Field(min_length=1, description="metric name (samples' `name`)")
    matchers: list[MatcherText] = Field(
        default_factory=list, description="on the sample's labels plus __name__"
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="labels that split samples into groups, each with its own window; "
        "the target may use only these labels",
    )
    aggregate: Aggregate = Field(
        default="avg", description="over the samples in the window (rate: per-second increase)"
    )
    window: Duration = Field(default="5m", description="samples with time in (now - window, now]")
    op: CompareOp = Field(default=">", description="aggregate OP threshold is a breach")
    threshold: float
    for_: Duration = Field(
        default=0, alias="for", description="the breach must hold this long before firing"
    )

    _d = field_validator("window", "for_")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("window")
    @classmethod
    def _positive(cls, v: Duration) -> Duration:
        if parse_duration(v) <= timedelta(0):
            raise ValueError("window must be longer than 0")
        return v


class TriggerSpec(Strict):
    alert: AlertTriggerSpec | None = Field(default=None, description="fire on alerts")
    metric: MetricTriggerSpec | None = Field(default=None, description="fire on metric samples")

    @model_validator(mode="after")
    def _one(self) -> TriggerSpec:
        if (self.alert is None) == (self.metric is None):
            raise ValueError("give exactly one of trigger.alert or trigger.metric")
        return self


_TPL = "; may use {{ labels.X }}, {{ annotations.X }}, {{ value }}"


class TargetSpec(Strict):
    kind: TargetKind = Field(description="what the actions act on")
    namespace: str | None = Field(default=None, description="Kubernetes namespace" + _TPL)
    name: str | None = Field(default=None, description="object or node name" + _TPL)
    cluster: str | None = Field(default=None, description="kubeconfig context" + _TPL)
    server: str | None = Field(default=None, description="Triton HTTP URL" + _TPL)
    servers: list[str] | None = Field(default=None, description="several Triton URLs" + _TPL)
    model: str | None = Field(default=None, description="Triton model name" + _TPL)
    version: str | int | None = Field(default=None, description="Triton model version" + _TPL)

    @field_validator("namespace", "name", "cluster", "server", "model", "version")
    @classmethod
    def _template(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            Template.parse(str(v))  # TemplateError (a ValueError) says what is allowed
        return v

    @field_validator("servers")
    @classmethod
    def _templates(cls, v: list[str] | None) -> list[str] | None:
        for x in v or ():
            Template.parse(x)
        return v

    @model_validator(mode="after")
    def _fields(self) -> TargetSpec:
        given = {
            k
            for k in ("namespace", "name", "cluster", "server", "servers", "model", "version")
            if getattr(self, k) is not None
        }
        allowed, required = TARGET_FIELDS[self.kind]
        extra = given - allowed
        if extra:
            raise ValueError(f"{self.kind} targets take {sorted(allowed)}; remove {sorted(extra)}")
        missing = required - given
        if missing:
            raise ValueError(f"{self.kind} targets need {sorted(missing)}")
        if self.kind == "TritonModel" and (self.server is None) == (self.servers is None):
            raise ValueError("TritonModel targets need exactly one of server or servers")
        return self


_K8S = ({"namespace", "name", "cluster"}, {"namespace", "name"})
TARGET_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "Deployment": _K8S,
    "StatefulSet": _K8S,
    "Pod": _K8S,
    "Service": _K8S,
    "HTTPRoute": _K8S,
    "Node": ({"name", "cluster"}, {"name"}),
    "TritonModel": ({"server", "servers", "model", "version"}, {"model"}),
}
FIELD_KINDS: dict[str, FieldKind] = {
    "namespace": "namespace",
    "name": "name",
    "cluster": "context",
    "server": "url",
    "servers": "url",
    "model": "model",
    "version": "version",
}


def _catalog(info: ValidationInfo) -> Catalog | None:
    """The action catalog the loader passes as validation context (None: skip)."""
    ctx = info.context
    cat = ctx.get("catalog") if isinstance(ctx, dict) else None
    return cat if isinstance(cat, Catalog) else None


def params_error(use: str, exc: ValidationError, model: type[Params] | None = None) -> str:
    """One line per bad parameter, without pydantic's URLs; typos get a suggestion."""
    known = [f.alias or n for n, f in model.model_fields.items()] if model else []
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
            close = difflib.get_close_matches(where, known, n=1)
            also = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            parts.append(f"unknown parameter {where!r}{also}")
        else:
            parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return f"bad params for {use}: " + "; ".join(parts)


class StepSpec(Strict):
    use: str = Field(description="action name from the catalog, e.g. kubernetes.scale")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="the action's parameters (not templated)"
    )
    times: int = Field(
        default=1, ge=1, le=1000, description="acted decisions on this rung before the next"
    )

    # With the loader's catalog in the validation context, unknown actions and
    # bad params are reported together with every other error of the document.
    @field_validator("use")
    @classmethod
    def _use(cls, v: str, info: ValidationInfo) -> str:
        cat = _catalog(info)
        if cat is not None and cat.get(v) is None:
            close = difflib.get_close_matches(v, cat.names(), n=1)
            raise PydanticCustomError(
                "unknown_action",
                "unknown action '{use}'; known actions: {known}",
                {
                    "use": v,
                    "known": ", ".join(cat.names()),
                    "hint": f"did you mean {close[0]!r}?" if close else "",
                },
            )
        return v

    @field_validator("with_")
    @classmethod
    def _with(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        cat = _catalog(info)
        use = info.data.get("use")
        spec = cat.get(use) if cat is not None and isinstance(use, str) else None
        if spec is not None:
            try:
                spec.parse(v)
            except ValidationError as exc:
                raise ValueError(params_error(spec.name, exc, spec.params)) from exc
        return v


class BudgetSpec(Strict):
    max: int = Field(ge=1, description="acted decisions allowed per (policy, target)...")
    per: Duration = Field(description="...in this sliding window")

    _d = field_validator("per")(classmethod(lambda cls, v: _duration(v)))


class GuardsSpec(Strict):
    cooldown: Duration = Field(
        default=0, description="after an acted decision, refuse the next ones for this long"
    )
    budget: BudgetSpec | None = Field(default=None, description="at most max acted per window")
    approval: Literal["auto", "manual"] = Field(
        default="auto", description="manual: decisions wait for a human (pending_approval)"
    )
    approval_timeout: Duration = Field(
        default="30m", description="pending approvals expire after this (wall clock)"
    )
    namespaces: list[str] | None = Field(
        default=None, description="allow-list of target namespaces (shell globs, e.g. llm-*)"
    )
    dry_run: bool = Field(default=False, description="decide and audit, change nothing")

    _d = field_validator("cooldown", "approval_timeout")(classmethod(lambda cls, v: _duration(v)))


class VerifySpecYaml(Strict):
    timeout: Duration = Field(default="5m", description="how long verification may take")
    rollback: bool = Field(default=True, description="roll back when verification fails")

    _d = field_validator("timeout")(classmethod(lambda cls, v: _duration(v)))


class PolicySpec(Strict):
    priority: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="lower acts first when policies conflict on one target (ties: name)",
    )
    trigger: TriggerSpec = Field(description="exactly one of alert | metric")
    target: TargetSpec = Field(description="what to act on, rendered from the signal")
    actions: list[StepSpec] = Field(
        min_length=1, max_length=32, description="the escalation ladder of one incident"
    )
    guards: GuardsSpec = Field(default_factory=GuardsSpec, description="safety limits")
    verify: VerifySpecYaml = Field(
        default_factory=VerifySpecYaml, description="after an action: verify, maybe roll back"
    )


class PolicyDoc(Strict):
    apiVersion: Literal["healer/v1"]
    kind: Literal["Policy"]
    metadata: Metadata
    spec: PolicySpec


class SilenceSpec(Strict):
    matchers: list[MatcherText] = Field(
        min_length=1, description="all must match the signal's labels"
    )
    startsAt: datetime = Field(description="RFC 3339 with a timezone; inclusive")
    endsAt: datetime = Field(description="RFC 3339 with a timezone; exclusive")
    comment: str = Field(default="", description="why")
    createdBy: str = Field(default="", description="who")

    @model_validator(mode="after")
    def _range(self) -> SilenceSpec:
        if self.startsAt.tzinfo is None or self.endsAt.tzinfo is None:
            raise ValueError("startsAt and endsAt need a timezone (e.g. Z)")
        if self.endsAt <= self.startsAt:
            raise ValueError("endsAt must be after startsAt")
        return self


class SilenceDoc(Strict):
    apiVersion: Literal["healer/v1"]
    kind: Literal["Silence"]
    metadata: Metadata
    spec: SilenceSpec


# ---------------------------------------------------------------- compiled


@dataclass(frozen=True)
class AlertTrigger:
    matchers: tuple[Matcher, ...]
    status: Literal["firing", "resolved", "any"]


@dataclass(frozen=True)
class MetricTrigger:
    name: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    aggregate: Aggregate
    window: timedelta
    op: CompareOp
    threshold: float
    for_: timedelta


@dataclass(frozen=True)
class Step:
    use: str
    with_: dict[str, Any]
    params: Params
    times: int


@dataclass(frozen=True)
class Budget:
    max: int
    per: timedelta


@dataclass(frozen=True)
class Guards:
    cooldown: timedelta
    budget: Budget | None
    approval: Literal["auto", "manual"]
    approval_timeout: timedelta
    namespaces: tuple[str, ...] | None
    dry_run: bool


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    revision: str
    priority: int
    description: str
    trigger: AlertTrigger | MetricTrigger
    target_kind: TargetKind
    target: tuple[tuple[str, Template | tuple[Template, ...]], ...]
    steps: tuple[Step, ...]
    guards: Guards
    verify: VerifySpec
    source: str = ""

    @property
    def is_metric(self) -> bool:
        return isinstance(self.trigger, MetricTrigger)

    def step_at(self, position: int) -> tuple[int, Step]:
        """The ladder rung for the ``position``-th acted decision of an incident."""
        acc = 0
        for i, step in enumerate(self.steps):
            acc += step.times
            if position < acc:
                return i, step
        return len(self.steps) - 1, self.steps[-1]


@dataclass(frozen=True)
class Silence:
    name: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


class CompileError(ValueError):
    """A policy that validates structurally but cannot run; ``path`` locates it."""

    def __init__(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.hint = hint


_DURATION_PATHS = (
    ("trigger", "metric", "window"),
    ("trigger", "metric", "for"),
    ("guards", "cooldown"),
    ("guards", "approval_timeout"),
    ("guards", "budget", "per"),
    ("verify", "timeout"),
)


_TRIGGER_KINDS = ("alert", "metric")


def revision_of(spec: PolicySpec) -> str:
    """Hash of the normalised spec: stable under key order, formatting, defaults,
    duration spelling ("5m" == "300s" == 300) and matcher spelling and order
    (``a=b``, ``a = "b"`` and ``a="b"`` are one matcher; the list is a conjunction)."""
    norm = spec.model_dump(mode="json", by_alias=True)
    for kind in _TRIGGER_KINDS:
        trigger = norm["trigger"].get(kind)
        if isinstance(trigger, dict) and trigger.get("matchers"):
            trigger["matchers"] = sorted({canonical(m) for m in trigger["matchers"]})
    for path in _DURATION_PATHS:
        node: Any = norm
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) is not None:
            node[path[-1]] = parse_duration(node[path[-1]]).total_seconds()
    blob = json.dumps(norm, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def compile_policy(doc: PolicyDoc, catalog: Catalog, source: str = "") -> CompiledPolicy:
    spec = doc.spec
    trig: AlertTrigger | MetricTrigger
    if spec.trigger.alert is not None:
        a = spec.trigger.alert
        trig = AlertTrigger(tuple(Matcher.parse(m) for m in a.matchers), a.status)
    else:
        m = spec.trigger.metric
        assert m is not None
        trig = MetricTrigger(
            name=m.name,
            matchers=tuple(Matcher.parse(x) for x in m.matchers),
            group_by=tuple(m.group_by),
            aggregate=m.aggregate,
            window=parse_duration(m.window),
            op=m.op,
            threshold=m.threshold,
            for_=parse_duration(m.for_),
        )
    target: list[tuple[str, Template | tuple[Template, ...]]] = []
    for fname in ("namespace", "name", "cluster", "server", "servers", "model", "version"):
        raw = getattr(spec.target, fname)
        if raw is None:
            continue
        try:
            if isinstance(raw, list):
                target.append((fname, tuple(Template.parse(str(x)) for x in raw)))
            else:
                target.append((fname, Template.parse(str(raw))))
        except TemplateError as exc:
            raise CompileError(("spec", "target", fname), str(exc)) from exc
    if isinstance(trig, MetricTrigger):
        for fname, tpl in target:
            for t in tpl if isinstance(tpl, tuple) else (tpl,):
                for ref in t.refs:
                    if ref.source == "labels" and ref.key not in trig.group_by:
                        raise CompileError(
                            ("spec", "target", fname),
                            "metric policies may template targets only from group_by labels; "
                            f"add {ref.key!r} to trigger.metric.group_by "
                            "or remove it from the target",
                        )
                    if ref.source == "annotations":
                        raise CompileError(
                            ("spec", "target", fname), "metric samples have no annotations"
                        )
    steps: list[Step] = []
    for i, st in enumerate(spec.actions):
        aspec = catalog.get(st.use)
        if aspec is None:
            close = difflib.get_close_matches(st.use, catalog.names(), n=1)
            raise CompileError(
                ("spec", "actions", i, "use"),
                f"unknown action {st.use!r}; known actions: {', '.join(catalog.names())}",
                f"did you mean {close[0]!r}?" if close else "",
            )
        if spec.target.kind not in aspec.target_kinds:
            raise CompileError(
                ("spec", "actions", i, "use"),
                f"{st.use} cannot act on a {spec.target.kind} target "
                f"(it takes {', '.join(sorted(aspec.target_kinds))})",
            )
        try:
            params = aspec.parse(st.with_)
        except ValidationError as exc:
            raise CompileError(
                ("spec", "actions", i, "with"), params_error(st.use, exc, aspec.params)
            ) from exc
        except ValueError as exc:
            raise CompileError(
                ("spec", "actions", i, "with"), f"bad params for {st.use}: {exc}"
            ) from exc
        steps.append(Step(st.use, dict(st.with_), params, st.times))
    g = spec.guards
    if g.namespaces is not None and "namespace" not in TARGET_FIELDS[spec.target.kind][0]:
        raise CompileError(
            ("spec", "guards", "namespaces"),
            f"{spec.target.kind} targets have no namespace, so guards.namespaces would never "
            "refuse anything; remove it (or restrict the trigger with a namespace matcher)",
        )
    guards = Guards(
        cooldown=parse_duration(g.cooldown),
        budget=Budget(g.budget.max, parse_duration(g.budget.per)) if g.budget else None,
        approval=g.approval,
        approval_timeout=parse_duration(g.approval_timeout),
        namespaces=tuple(g.namespaces) if g.namespaces is not None else None,
        dry_run=g.dry_run,
    )
    return CompiledPolicy(
        name=doc.metadata.name,
        revision=revision_of(spec),
        priority=spec.priority,
        description=doc.metadata.description,
        trigger=trig,
        target_kind=spec.target.kind,
        target=tuple(target),
        steps=tuple(steps),
        guards=guards,
        verify=VerifySpec(
            timeout_seconds=parse_duration(spec.verify.timeout).total_seconds(),
            rollback=spec.verify.rollback,
        ),
        source=source,
    )


def compile_silence(doc: SilenceDoc) -> Silence:
    s = doc.spec
    return Silence(
        name=doc.metadata.name,
        matchers=tuple(Matcher.parse(m) for m in s.matchers),
        starts_at=s.startsAt,
        ends_at=s.endsAt,
        comment=s.comment,
    )


__all__ = [
    "CompileError",
    "CompiledPolicy",
    "MatcherError",
    "PolicyDoc",
    "Silence",
    "SilenceDoc",
    "compile_policy",
    "compile_silence",
]
