"""The policy engine: ``route()`` then ``decide()``, both pure.

``route(signal, policies)`` finds the policies whose trigger matchers match a
signal, renders each one's target and groups them by target key: one
:class:`Route` per target (or per unresolved policy), which the worker uses as
the partition key so that one partition owns each target's state.

``decide(signal, route, policies, state, gstate, settings)`` runs the policy
semantics (docs/design.md, "Policy language v1") for one target: dedup, metric
windows and ``for``, incidents and the escalation ladder, the guards in their
fixed order, conflicts by priority, and returns the decisions. It reads no
clock and does no I/O; ``state`` and ``gstate`` are updated in place.
``healer policy test`` and the Faust worker call exactly these two functions.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from healer.guards import namespace_denied
from healer.index import PolicySet
from healer.matchers import match_all
from healer.models import Decision, DecisionKind, Signal, Target
from healer.policy import FIELD_KINDS, Budget, CompiledPolicy, MetricTrigger
from healer.state import GlobalState, Incident, TargetState, Window
from healer.templating import InvalidValue, Template, Unresolved, valid_for

PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class EngineSettings:
    """Global switches (from healer settings); part of every decision's input."""

    paused: bool = False
    dry_run: bool = False
    rate_limit: Budget | None = None
    dedup_window: timedelta = timedelta(seconds=60)
    protected_namespaces: tuple[str, ...] = PROTECTED_NAMESPACES
    allowed_namespaces: tuple[str, ...] | None = None  # worker-wide allow-list (globs)
    max_window_samples: int = 10_000


@dataclass(frozen=True)
class Route:
    """The policies of one signal that share one target (or one unresolved key)."""

    key: str
    target: Target | None
    policies: tuple[str, ...]
    failures: tuple[tuple[str, str], ...] = ()  # (policy, reason) when target is None


@dataclass
class Outcome:
    decisions: list[Decision] = field(default_factory=list)
    duplicate: bool = False
    late: bool = False  # a metric sample older than its window, ignored


# ------------------------------------------------------------------ routing


def render_target(policy: CompiledPolicy, signal: Signal) -> tuple[Target | None, str | None]:
    """Render the policy's target from the signal; (None, reason) on failure."""
    fields: dict[str, Any] = {}
    labels, ann, value = signal.labels, signal.annotations, signal.value
    try:
        for fname, tpl in policy.target:
            kind = FIELD_KINDS[fname]
            if isinstance(tpl, tuple):
                vals = tuple(t.render(labels, ann, value, field=kind) for t in tpl)
                for v in vals:
                    if valid_for(kind, v):
                        return None, "invalid_target"
                fields[fname] = vals
            else:
                v = tpl.render(labels, ann, value, field=kind)
                if valid_for(kind, v):
                    return None, "invalid_target"
                fields[fname] = v
    except Unresolved:
        return None, "target_unresolved"
    except InvalidValue:
        return None, "invalid_target"
    return Target(kind=policy.target_kind, **fields), None


def group_key(trigger: MetricTrigger, labels: dict[str, str]) -> str:
    get = labels.get
    return "\x1f".join([f"{k}={get(k, '')}" for k in trigger.group_by])


def route(signal: Signal, policies: PolicySet) -> list[Route]:
    """Split a signal into per-target routes (ordered by first policy priority)."""
    by_key: dict[str, tuple[Target | None, list[str], list[tuple[str, str]]]] = {}
    for p in policies.candidates(signal):
        target, reason = render_target(p, signal)
        if target is not None:
            key = target.key()
        else:
            # unresolved targets still need state (dedup, windows): key by identity
            trig = p.trigger
            ident = (
                group_key(trig, signal.labels)
                if isinstance(trig, MetricTrigger)
                else signal.fingerprint
            )
            key = f"!unresolved/{p.name}/{_short(ident or '')}"
        entry = by_key.setdefault(key, (target, [], []))
        entry[1].append(p.name)
        if reason is not None:
            entry[2].append((p.name, reason))
    return [Route(k, t, tuple(names), tuple(fails)) for k, (t, names, fails) in by_key.items()]


def _short(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ ids


def incident_key(policy: str, target_key: str, started: float) -> str:
    return hashlib.sha256(f"{policy}\x00{target_key}\x00{started!r}".encode()).hexdigest()[:16]


def action_id(policy: CompiledPolicy, target_key: str, incident: str, position: int) -> str:
    """Deterministic: policy name + revision, target, incident key, ladder position."""
    raw = f"{policy.name}\x00{policy.revision}\x00{target_key}\x00{incident}\x00{position}"
    return "a-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


# ------------------------------------------------------------------ metrics


def _aggregate(agg: str, win: Window) -> float | None:
    values = win.values
    n = len(values)
    if not n:
        return None
    if agg == "count":
        return float(n)
    if agg == "last":
        return values[-1]
    if agg == "rate":
        return _rate(win)
    if agg == "avg":
        return math.fsum(values) / n
    if agg == "min":
        return min(values)
    if agg == "max":
        return max(values)
    if agg == "sum":
        return math.fsum(values)
    raise ValueError(f"unknown aggregate {agg}")


def _rate(win: Window) -> float | None:
    """Per-second increase summed over series, counter resets handled; None if < 2 points."""
    per: dict[int, list[tuple[float, float]]] = {}
    for t, s, v in zip(win.times, win.sidx, win.values, strict=True):
        per.setdefault(s, []).append((t, v))
    total = 0.0
    any_rate = False
    for pts in per.values():
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            continue
        inc = 0.0
        for (_, a), (_, b) in itertools.pairwise(pts):
            inc += b - a if b >= a else b  # a drop is a counter reset
        total += inc / (pts[-1][0] - pts[0][0])
        any_rate = True
    return total if any_rate else None


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _series(signal: Signal) -> str:
    """A sample's series identity: its labels in name order (the producer's order may vary)."""
    return _series_of(tuple(signal.labels.items()))


@functools.lru_cache(maxsize=65_536)
def _series_of(items: tuple[tuple[str, str], ...]) -> str:
    # memoised: a series recurs every scrape; the result depends on the labels alone
    return "\x1f".join([f"{k}={v}" for k, v in sorted(items)])


def _evaluate_metric(
    p: CompiledPolicy,
    trig: MetricTrigger,
    signal: Signal,
    state: TargetState,
    settings: EngineSettings,
) -> tuple[bool, float, bool]:
    """Add the sample to its window; return (fires, eval_time, late)."""
    t = signal.t
    wkey = f"{p.name}\x1f{group_key(trig, signal.labels)}"
    win = state.windows.get(wkey)
    if win is None:
        win = state.windows[wkey] = Window()
    span = trig.window.total_seconds()
    if win.latest is not None and t <= win.latest - span:
        return False, win.latest, True  # older than the window: cannot change anything
    assert signal.value is not None
    win.add(t, _series(signal), signal.value, settings.max_window_samples)
    now = win.latest if win.latest is not None else t
    win.prune(now - span)
    if len(state.windows) > 1:
        _expire_groups(p, state, wkey, now - span)
    value = _aggregate(trig.aggregate, win)
    if value is None:
        return False, now, False  # undefined (e.g. rate of one point): no evaluation
    if not _OPS[trig.op](value, trig.threshold):
        win.run_start = None
        return False, now, False
    if win.run_start is None or win.run_start > now:
        win.run_start = now
    return now - win.run_start >= trig.for_.total_seconds(), now, False


def _expire_groups(p: CompiledPolicy, state: TargetState, keep: str, horizon: float) -> None:
    """Drop the policy's other groups on this target with no sample after ``horizon``.

    Several groups share a target when ``group_by`` has labels the target does
    not use (e.g. pod). A group that stopped reporting (its pod is gone) can
    never evaluate again: keeping it would leak memory and hold its breach run,
    and so the target's incident, open forever.
    """
    prefix = f"{p.name}\x1f"
    stale = [
        k
        for k, w in state.windows.items()
        if k != keep and k.startswith(prefix) and (w.latest is None or w.latest <= horizon)
    ]
    for k in stale:
        del state.windows[k]


def _metric_run_open(p: CompiledPolicy, state: TargetState) -> bool:
    windows = state.windows
    if len(windows) == 1:
        return next(iter(windows.values())).run_start is not None
    prefix = f"{p.name}\x1f"
    return any(w.run_start is not None for k, w in windows.items() if k.startswith(prefix))


# ------------------------------------------------------------------ guards


def _namespace_denied(p: CompiledPolicy, target: Target, settings: EngineSettings) -> bool:
    ns = target.namespace
    if ns is None:
        return False
    if settings.allowed_namespaces is not None and not any(
        fnmatch.fnmatchcase(ns, g) for g in settings.allowed_namespaces
    ):
        return True  # outside the worker-wide allow-list
    return namespace_denied(ns, p.guards.namespaces, settings.protected_namespaces)


def _silenced(signal: Signal, policies: PolicySet, now: datetime) -> bool:
    labels = signal.match_labels()
    return any(s.active(now) and match_all(s.matchers, labels) for s in policies.silences)


def _prune(times: list[float], start_exclusive: float) -> None:
    i = 0
    while i < len(times) and times[i] <= start_exclusive:
        i += 1
    if i:
        del times[:i]


# ------------------------------------------------------------------ decide


def _base(
    p: CompiledPolicy, signal: Signal, target: Target | None, now: datetime
) -> dict[str, Any]:
    return {
        "time": now,
        "policy": p.name,
        "revision": p.revision,
        "target": target,
        "event": signal.ref,
        "priority": p.priority,
        "verify": p.verify,
        "approval_timeout_seconds": p.guards.approval_timeout.total_seconds(),
    }


def decide(
    signal: Signal,
    rt: Route,
    policies: PolicySet,
    state: TargetState,
    gstate: GlobalState,
    settings: EngineSettings,
) -> Outcome:
    """Decisions for one signal on one route; updates ``state``/``gstate`` in place."""
    out = Outcome()
    t_sig = signal.t

    if signal.kind == "alert":
        starts = signal.starts_at.isoformat() if signal.starts_at else ""
        dkey = f"{signal.fingerprint}|{starts}|{signal.status}"
        horizon = t_sig - settings.dedup_window.total_seconds()
        for k in [k for k, v in state.dedup.items() if v <= horizon]:
            del state.dedup[k]
        seen = state.dedup.get(dkey)
        if seen is not None and seen > horizon and seen <= t_sig:
            out.duplicate = True
            return out
        state.dedup[dkey] = t_sig

    firing: list[tuple[CompiledPolicy, float]] = []
    for name in rt.policies:
        p = policies.get(name)
        if p is None:
            continue
        trig = p.trigger
        if isinstance(trig, MetricTrigger):
            fires, t_eval, late = _evaluate_metric(p, trig, signal, state, settings)
            out.late = out.late or late
            if not _metric_run_open(p, state):
                state.incidents.pop(p.name, None)
            if fires:
                firing.append((p, t_eval))
            continue
        status = signal.status
        if trig.status == "any" or trig.status == status:
            firing.append((p, t_sig))
        elif status == "resolved" and trig.status == "firing":
            state.incidents.pop(p.name, None)  # the incident ends; the ladder resets

    if not firing:
        return out

    target = rt.target
    failures = dict(rt.failures)
    survivors: list[tuple[CompiledPolicy, datetime, dict[str, Any]]] = []
    for p, t_eval in firing:
        now = datetime.fromtimestamp(t_eval, tz=UTC)
        base = _base(p, signal, target, now)
        if target is None:
            first = p.steps[0]
            out.decisions.append(
                Decision(
                    **base,
                    use=first.use,
                    with_=first.with_,
                    decision="suppressed",
                    reason=failures.get(p.name, "target_unresolved"),
                )
            )
            continue
        tkey = target.key()
        inc = state.incidents.get(p.name)
        if inc is None:
            inc = state.incidents[p.name] = Incident(incident_key(p.name, tkey, t_eval), t_eval)
        _, step = p.step_at(inc.position)
        base.update(use=step.use, with_=step.with_, incident=inc.key, step=inc.position)
        reason = None
        if settings.paused:
            reason = "paused"
        elif _silenced(signal, policies, now):
            reason = "silenced"
        elif _namespace_denied(p, target, settings):
            reason = "namespace_denied"
        else:
            last = state.last_acted.get(p.name)
            if last is not None and t_eval < last + p.guards.cooldown.total_seconds():
                reason = "cooldown"
            elif p.guards.budget is not None:
                times = state.acted_times.setdefault(p.name, [])
                _prune(times, t_eval - p.guards.budget.per.total_seconds())
                if len(times) >= p.guards.budget.max:
                    reason = "budget"
        if reason is not None:
            out.decisions.append(Decision(**base, decision="suppressed", reason=reason))
            continue
        survivors.append((p, now, base))

    survivors.sort(key=lambda s: (s[0].priority, s[0].name))
    for rank, (p, now, base) in enumerate(survivors):
        if rank > 0:
            out.decisions.append(Decision(**base, decision="suppressed", reason="superseded"))
            continue
        t_eval = now.timestamp()
        if settings.rate_limit is not None:
            _prune(gstate.acted_times, t_eval - settings.rate_limit.per.total_seconds())
            if len(gstate.acted_times) >= settings.rate_limit.max:
                out.decisions.append(Decision(**base, decision="suppressed", reason="rate_limited"))
                continue
        assert target is not None
        inc = state.incidents[p.name]
        aid = action_id(p, target.key(), inc.key, inc.position)
        dry = p.guards.dry_run or settings.dry_run
        # a dry run is decision `execute` with dry_run true (docs/design.md); it changes
        # nothing, so it does not wait for a human (approval applies to real runs).
        kind: DecisionKind = (
            "pending_approval" if p.guards.approval == "manual" and not dry else "execute"
        )
        out.decisions.append(Decision(**base, decision=kind, action_id=aid, dry_run=dry))
        inc.position += 1
        state.last_acted[p.name] = t_eval
        if p.guards.budget is not None:
            state.acted_times.setdefault(p.name, []).append(t_eval)
        if settings.rate_limit is not None:
            gstate.acted_times.append(t_eval)

    order = {id(d): i for i, d in enumerate(out.decisions)}
    out.decisions.sort(key=lambda d: (d.priority, d.policy, order[id(d)]))
    return out


__all__ = ["EngineSettings", "Outcome", "Route", "Template", "decide", "render_target", "route"]
