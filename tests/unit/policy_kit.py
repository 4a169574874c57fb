"""Builders for engine unit tests: policies as dicts, signals at test times, a
replay harness that runs ``engine.route`` + ``engine.decide`` like the worker.

Pure test support (no I/O); imported by ``tests/unit/test_engine_*.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from healer.catalog import default_catalog
from healer.engine import EngineSettings
from healer.index import PolicySet
from healer.loader import PolicyLoadError, load_documents
from healer.models import Decision, Signal, fingerprint_of
from healer.replay import Replayer

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CATALOG = default_catalog()


def at(seconds: float) -> datetime:
    """Event time ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def alert_policy(name: str = "p", **spec: Any) -> dict[str, Any]:
    """A policy on alert X targeting Deployment {{namespace}}/{{deployment}}."""
    base: dict[str, Any] = {
        "trigger": {"alert": {"matchers": ['alertname="X"']}},
        "target": {
            "kind": "Deployment",
            "namespace": "{{ labels.namespace }}",
            "name": "{{ labels.deployment }}",
        },
        "actions": [{"use": "healer.noop", "with": {"message": "one"}}],
    }
    return {
        "apiVersion": "healer/v1",
        "kind": "Policy",
        "metadata": {"name": name},
        "spec": merge(base, spec),
    }


def metric_policy(
    policy: str = "m", spec: dict[str, Any] | None = None, **metric: Any
) -> dict[str, Any]:
    """A policy on metric ``load`` grouped by (namespace, deployment); ``metric``
    overrides trigger fields (``for_`` means ``for``), ``spec`` the rest."""
    trig: dict[str, Any] = {
        "name": "load",
        "group_by": ["namespace", "deployment"],
        "aggregate": "avg",
        "window": "60s",
        "op": ">",
        "threshold": 10,
        "for": 0,
    }
    if "for_" in metric:
        metric["for"] = metric.pop("for_")
    trig.update(metric)
    doc = alert_policy(policy, **(spec or {}))
    doc["spec"]["trigger"] = {"metric": trig}
    return doc


def silence(name: str, matchers: list[str], starts: float, ends: float) -> dict[str, Any]:
    return {
        "apiVersion": "healer/v1",
        "kind": "Silence",
        "metadata": {"name": name},
        "spec": {"matchers": matchers, "startsAt": iso(starts), "endsAt": iso(ends)},
    }


def load(*docs: dict[str, Any]) -> PolicySet:
    text = yaml.safe_dump_all(list(docs), sort_keys=False)
    res = load_documents(text, "test.yaml", CATALOG)
    if res.errors:
        raise PolicyLoadError(res.errors)
    return PolicySet(res.policies, res.silences)


LABELS = {"alertname": "X", "namespace": "llm-prod", "deployment": "vllm"}


def alert(
    t: float,
    labels: dict[str, str] | None = None,
    status: str = "firing",
    starts: float | None = None,
    annotations: dict[str, str] | None = None,
) -> Signal:
    lab = dict(LABELS if labels is None else labels)
    return Signal(
        kind="alert",
        time=at(t),
        event_id=f"a@{t}",
        labels=lab,
        annotations=annotations or {},
        status=status,  # type: ignore[arg-type]
        fingerprint=fingerprint_of(lab),
        starts_at=at(starts if starts is not None else 0),
    )


MLABELS = {"namespace": "llm-prod", "deployment": "vllm", "pod": "vllm-0"}


def sample(
    t: float, value: float, labels: dict[str, str] | None = None, name: str = "load"
) -> Signal:
    return Signal(
        kind="metric",
        time=at(t),
        event_id=f"m@{t}",
        name=name,
        value=value,
        labels=dict(MLABELS if labels is None else labels),
    )


class Run:
    """Feeds signals through route + decide with per-target state (like replay)."""

    def __init__(self, policies: PolicySet, **settings: Any) -> None:
        self.replayer = Replayer(policies, EngineSettings(**settings))

    def feed(self, signal: Signal) -> list[Decision]:
        return self.replayer.feed(signal)

    def all(self, signals: Iterable[Signal]) -> list[Decision]:
        out: list[Decision] = []
        for s in signals:
            out.extend(self.feed(s))
        return out


def brief(ds: Iterable[Decision]) -> list[tuple[str, str | None]]:
    """(decision-or-reason, use) per decision: the shape most tables compare."""
    return [(d.reason or d.decision, d.use) for d in ds]


def outcome(ds: list[Decision]) -> str | None:
    """The single decision's decision-or-reason, or None when there is none."""
    assert len(ds) <= 1, ds
    return (ds[0].reason or ds[0].decision) if ds else None
