"""The action catalog v1: each action's name, parameter model and target kinds.

This is the contract between policies and executors. The policy loader checks
``use``, ``with`` and the target kind against it at load time (pure, no executor
imports), and the execute stage checks every request against it again
(``healer.execguard``). Executors in ``actions/`` bind to these specs by name and
get their params parsed by the spec's model (they declare none of their own);
``actions.registry.ExecutorRegistry`` refuses an executor with no spec here, a
second executor for one name, and one whose ``reversible`` differs from its spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_REPLICAS = re.compile(r"^(?:\d+|[+-]\d+|x\d+(?:\.\d+)?)$")


class Params(BaseModel):
    """Base of every action's ``with`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


class NoopParams(Params):
    message: str = ""
    fail: Literal["never", "execute", "verify"] = "never"
    duration_seconds: float = Field(default=0.0, ge=0, le=3600)


class ScaleParams(Params):
    replicas: str = Field(description='absolute "3", relative "+1"/"-1", or factor "x2"')
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)
    timeout_seconds: float = Field(default=300, gt=0)

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, v: Any) -> str:
        s = str(v).strip() if isinstance(v, int | str) and not isinstance(v, bool) else None
        if s is None or not _REPLICAS.match(s):
            raise ValueError('replicas must be "N", "+N", "-N" or "xF" (e.g. "x2")')
        return s

    @model_validator(mode="after")
    def _bounds(self) -> ScaleParams:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def desired(self, current: int) -> int:
        """Desired replicas from ``current``, clamped to [min, max]."""
        r = self.replicas
        if r.startswith("+"):
            want = current + int(r[1:])
        elif r.startswith("-"):
            want = current - int(r[1:])
        elif r.startswith("x"):
            want = round(current * float(r[1:]))
        else:
            want = int(r)
        if self.max is not None:
            want = min(want, self.max)
        return max(want, self.min)


class RestartParams(Params):
    timeout_seconds: float = Field(default=600, gt=0)


class DeletePodParams(Params):
    grace_period_seconds: int | None = Field(default=None, ge=0)
    timeout_seconds: float = Field(default=300, gt=0)


class RerouteParams(Params):
    """HTTPRoute: ``weights`` by backendRef name; Service: ``selector``."""

    weights: dict[str, int] | None = None
    rule: int | None = Field(default=None, ge=0, description="HTTPRoute rule index; all rules when absent")
    selector: dict[str, str] | None = None
    timeout_seconds: float = Field(default=120, gt=0)

    @model_validator(mode="after")
    def _one(self) -> RerouteParams:
        if (self.weights is None) == (self.selector is None):
            raise ValueError("give exactly one of weights (HTTPRoute) or selector (Service)")
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must be >= 0")
        return self


class CordonParams(Params):
    max_unschedulable_fraction: float = Field(default=0.34, gt=0, le=1)


class DrainParams(Params):
    timeout_seconds: float = Field(default=600, gt=0)
    grace_period_seconds: int | None = Field(default=None, ge=0)
    max_unschedulable_fraction: float = Field(default=0.34, gt=0, le=1)
    delete_emptydir_data: bool = True


class SmokeInput(Params):
    name: str
    datatype: str = "FP32"
    shape: list[int]
    data: list[Any]


class SmokeOutput(Params):
    name: str
    shape: list[int] | None = None
    data: list[Any] | None = Field(
        default=None, description="expected values, flattened (numbers compared with tolerance)"
    )


class SmokeTest(Params):
    inputs: list[SmokeInput]
    outputs: list[SmokeOutput] = Field(default_factory=list)


class TritonReloadParams(Params):
    smoke: SmokeTest | None = None
    force: bool = Field(
        default=True,
        description="Triton skips a load whose config and files are unchanged: reload with "
        "the loaded config plus the parameter healer_reload=<action id> so the model really "
        "reloads (false: load the loaded config as is, which reloads only changed files)",
    )
    timeout_seconds: float = Field(default=300, gt=0)


class TritonLoadParams(Params):
    version: int | None = Field(default=None, ge=1)
    config: dict[str, Any] | None = None
    smoke: SmokeTest | None = None
    timeout_seconds: float = Field(default=300, gt=0)


class TritonUnloadParams(Params):
    unload_dependents: bool = False
    timeout_seconds: float = Field(default=120, gt=0)


class WebhookParams(Params):
    url: str
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s{}]+$", v):
            raise ValueError("url must be an http(s) URL without templates")
        return v


K8S_WORKLOADS = frozenset({"Deployment", "StatefulSet"})
ALL_KINDS = frozenset(
    {"Deployment", "StatefulSet", "Pod", "Node", "Service", "HTTPRoute", "TritonModel"}
)


@dataclass(frozen=True)
class ActionSpec:
    """What a policy may say about an action: its name, params and target kinds."""

    name: str
    params: type[Params]
    target_kinds: frozenset[str]
    reversible: bool
    description: str = ""

    def parse(self, raw: dict[str, Any] | None) -> Params:
        return self.params.model_validate(raw or {})


@dataclass
class Catalog:
    """An explicit registry of action specs (no module-level mutable state)."""

    _specs: dict[str, ActionSpec] = field(default_factory=dict)

    def add(self, spec: ActionSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"action {spec.name!r} registered twice")
        if not re.match(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", spec.name):
            raise ValueError(f"action name {spec.name!r} must look like 'system.verb'")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ActionSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[ActionSpec]:
        return iter(self._specs.values())


def default_catalog(extra: Iterable[ActionSpec] = ()) -> Catalog:
    """The v1 catalog (docs/design.md, "Targets and the action catalog"), with ``healer.noop``
    for demos, tests and trying a policy without a cluster."""
    cat = Catalog()
    for spec in (
        ActionSpec("healer.noop", NoopParams, ALL_KINDS, True, "do nothing; for demos and tests"),
        ActionSpec("kubernetes.scale", ScaleParams, K8S_WORKLOADS, True, "scale a workload"),
        ActionSpec("kubernetes.restart", RestartParams, K8S_WORKLOADS, False, "rollout restart"),
        ActionSpec("kubernetes.delete_pod", DeletePodParams, frozenset({"Pod"}), False, "delete a pod"),
        ActionSpec(
            "kubernetes.reroute", RerouteParams, frozenset({"HTTPRoute", "Service"}), True,
            "shift traffic: HTTPRoute weights or Service selector",
        ),
        ActionSpec("kubernetes.cordon", CordonParams, frozenset({"Node"}), True, "cordon a node"),
        ActionSpec("kubernetes.drain", DrainParams, frozenset({"Node"}), True, "cordon and drain a node"),
        ActionSpec("triton.reload", TritonReloadParams, frozenset({"TritonModel"}), True, "reload a model"),
        ActionSpec("triton.load", TritonLoadParams, frozenset({"TritonModel"}), True, "load a model version/config"),
        ActionSpec("triton.unload", TritonUnloadParams, frozenset({"TritonModel"}), True, "unload a model"),
        ActionSpec("webhook.notify", WebhookParams, ALL_KINDS, False, "POST a JSON notification"),
        *extra,
    ):
        cat.add(spec)
    return cat
