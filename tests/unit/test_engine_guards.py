"""The guards in their fixed order (docs/design.md, "Policy language v1"), one reason
per row, and which refusal wins when several apply (the first in order). Pure: route
+ decide via replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from healer.policy import Budget
from tests.unit.policy_kit import (
    LABELS,
    Run,
    alert,
    alert_policy,
    brief,
    load,
    silence,
)

NOTIFY = {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/oncall"}}


def _last(
    docs: list[dict[str, Any]],
    times: list[float],
    labels: list[dict[str, str]] | None = None,
    **settings: Any,
) -> list[tuple[str, str | None]]:
    """Decisions for the last of alerts at ``times`` (each a new startsAt, no dedup)."""
    run = Run(load(*docs), **settings)
    out: list[Any] = []
    for i, t in enumerate(times):
        lab = labels[i] if labels else LABELS
        out = run.feed(alert(t, lab, starts=t))
    return brief(out)


EXEC = [("execute", "healer.noop")]

CASES: list[
    tuple[
        str,
        list[dict[str, Any]],
        list[float],
        list[dict[str, str]] | None,
        dict[str, Any],
        list[tuple[str, str | None]],
    ]
] = [
    ("execute", [alert_policy()], [0], None, {}, EXEC),
    (
        "pending_approval",
        [alert_policy(guards={"approval": "manual"})],
        [0],
        None,
        {},
        [("pending_approval", "healer.noop")],
    ),
    ("paused", [alert_policy()], [0], None, {"paused": True}, [("paused", "healer.noop")]),
    (
        "silenced",
        [alert_policy(), silence("s", ['namespace="llm-prod"'], -60, 60)],
        [0],
        None,
        {},
        [("silenced", "healer.noop")],
    ),
    (
        "silence of other labels",
        [alert_policy(), silence("s", ['namespace="other"'], -60, 60)],
        [0],
        None,
        {},
        EXEC,
    ),
    (
        "namespace_denied: not in allow-list",
        [alert_policy(guards={"namespaces": ["llm-*"]})],
        [0],
        [{**LABELS, "namespace": "batch"}],
        {},
        [("namespace_denied", "healer.noop")],
    ),
    (
        "allow-list glob admits",
        [alert_policy(guards={"namespaces": ["llm-*"]})],
        [0],
        None,
        {},
        EXEC,
    ),
    (
        "namespace_denied: protected, no allow-list",
        [alert_policy()],
        [0],
        [{**LABELS, "namespace": "kube-system"}],
        {},
        [("namespace_denied", "healer.noop")],
    ),
    (
        "namespace_denied: protected needs a literal entry",
        [alert_policy(guards={"namespaces": ["kube-*"]})],
        [0],
        [{**LABELS, "namespace": "kube-system"}],
        {},
        [("namespace_denied", "healer.noop")],
    ),
    (
        "protected listed literally is allowed",
        [alert_policy(guards={"namespaces": ["kube-system"]})],
        [0],
        [{**LABELS, "namespace": "kube-system"}],
        {},
        EXEC,
    ),
    (
        "cooldown",
        [alert_policy(guards={"cooldown": "5m"})],
        [0, 299],
        None,
        {},
        [("cooldown", "healer.noop")],
    ),
    (
        "cooldown over at exactly t + cooldown",
        [alert_policy(guards={"cooldown": "5m"})],
        [0, 300],
        None,
        {},
        EXEC,
    ),
    (
        "cooldown counts pending approvals",
        [alert_policy(guards={"cooldown": "5m", "approval": "manual"})],
        [0, 120],
        None,
        {},
        [("cooldown", "healer.noop")],
    ),
    (
        "budget",
        [alert_policy(guards={"budget": {"max": 2, "per": "10m"}})],
        [0, 100, 200],
        None,
        {},
        [("budget", "healer.noop")],
    ),
    (
        "budget window is (now - per, now]",
        [alert_policy(guards={"budget": {"max": 2, "per": "10m"}})],
        [0, 100, 600],
        None,
        {},
        EXEC,
    ),
    (
        "budget counts pending approvals",
        [alert_policy(guards={"budget": {"max": 1, "per": "1h"}, "approval": "manual"})],
        [0, 100],
        None,
        {},
        [("budget", "healer.noop")],
    ),
    (
        "superseded",
        [alert_policy("a", priority=1), alert_policy("b", priority=2)],
        [0],
        None,
        {},
        [("execute", "healer.noop"), ("superseded", "healer.noop")],
    ),
    (
        "rate_limited",
        [alert_policy()],
        [0, 100],
        [LABELS, {**LABELS, "deployment": "other"}],
        {"rate_limit": Budget(1, timedelta(hours=1))},
        [("rate_limited", "healer.noop")],
    ),
    (
        "rate limit window slides",
        [alert_policy()],
        [0, 3600],
        [LABELS, {**LABELS, "deployment": "other"}],
        {"rate_limit": Budget(1, timedelta(hours=1))},
        EXEC,
    ),
    (
        "target_unresolved",
        [alert_policy()],
        [0],
        [{"alertname": "X", "namespace": "llm-prod"}],
        {},
        [("target_unresolved", "healer.noop")],
    ),
    (
        "target_unresolved: empty label",
        [alert_policy()],
        [0],
        [{**LABELS, "deployment": ""}],
        {},
        [("target_unresolved", "healer.noop")],
    ),
    (
        "invalid_target",
        [alert_policy()],
        [0],
        [{**LABELS, "deployment": "Bad_Name"}],
        {},
        [("invalid_target", "healer.noop")],
    ),
    (
        "invalid_target: namespace with a dot",
        [alert_policy()],
        [0],
        [{**LABELS, "namespace": "a.b"}],
        {},
        [("invalid_target", "healer.noop")],
    ),
    # order: the first refusal wins
    (
        "paused before silenced",
        [alert_policy(), silence("s", ['alertname="X"'], -60, 60)],
        [0],
        None,
        {"paused": True},
        [("paused", "healer.noop")],
    ),
    (
        "silenced before namespace_denied",
        [alert_policy(guards={"namespaces": ["x-*"]}), silence("s", ['alertname="X"'], -60, 60)],
        [0],
        None,
        {},
        [("silenced", "healer.noop")],
    ),
    (
        "cooldown before budget",
        [alert_policy(guards={"cooldown": "1h", "budget": {"max": 1, "per": "1h"}})],
        [0, 100],
        None,
        {},
        [("cooldown", "healer.noop")],
    ),
    (
        "superseded before rate_limited",
        [alert_policy("a", priority=1), alert_policy("b", priority=2)],
        [0, 100],
        [LABELS, {**LABELS, "deployment": "other"}],
        {"rate_limit": Budget(1, timedelta(hours=1))},
        [("rate_limited", "healer.noop"), ("superseded", "healer.noop")],
    ),
    (
        "rate_limited before approval",
        [alert_policy(guards={"approval": "manual"})],
        [0, 100],
        [LABELS, {**LABELS, "deployment": "other"}],
        {"rate_limit": Budget(1, timedelta(hours=1))},
        [("rate_limited", "healer.noop")],
    ),
    (
        "unresolved before paused",
        [alert_policy()],
        [0],
        [{"alertname": "X"}],
        {"paused": True},
        [("target_unresolved", "healer.noop")],
    ),
]


@pytest.mark.parametrize(
    ("docs", "times", "labels", "settings", "want"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_guard(
    docs: list[dict[str, Any]],
    times: list[float],
    labels: list[dict[str, str]] | None,
    settings: dict[str, Any],
    want: list[tuple[str, str | None]],
) -> None:
    assert _last(docs, times, labels, **settings) == want


def test_budget_refused_policy_leaves_the_conflict_to_the_next() -> None:
    """Conflicts are among policies unrefused after budget: a policy in cooldown
    does not supersede a lower-priority one."""
    docs = [
        alert_policy("a", priority=1, guards={"cooldown": "1h"}),
        alert_policy("b", priority=2, actions=[NOTIFY]),
    ]
    run = Run(load(*docs))
    assert brief(run.feed(alert(0, starts=0))) == [
        ("execute", "healer.noop"),
        ("superseded", "webhook.notify"),
    ]
    assert brief(run.feed(alert(100, starts=100))) == [
        ("cooldown", "healer.noop"),
        ("execute", "webhook.notify"),
    ]


def test_suppressed_decisions_do_not_act() -> None:
    """Only execute/pending_approval count for cooldown, budget, rate limit and the ladder."""
    docs = [
        alert_policy(
            guards={"cooldown": "10m", "budget": {"max": 1, "per": "1h"}},
            actions=[{"use": "healer.noop"}, NOTIFY],
        ),
        silence("s", ['alertname="X"'], 0, 200),
    ]
    run = Run(load(*docs), rate_limit=Budget(1, timedelta(hours=1)))
    assert brief(run.feed(alert(0, starts=0))) == [("silenced", "healer.noop")]
    assert brief(run.feed(alert(100, starts=0))) == [("silenced", "healer.noop")]
    assert brief(run.feed(alert(200, starts=0))) == [("execute", "healer.noop")]
    assert brief(run.feed(alert(300, starts=0))) == [("cooldown", "webhook.notify")]


@pytest.mark.parametrize(
    ("guards", "settings", "decision", "dry"),
    [
        ({}, {}, "execute", False),
        ({"dry_run": True}, {}, "execute", True),
        ({}, {"dry_run": True}, "execute", True),
        ({"approval": "manual"}, {}, "pending_approval", False),
        ({"approval": "manual", "dry_run": True}, {}, "execute", True),
        ({"approval": "manual"}, {"dry_run": True}, "execute", True),
    ],
)
def test_dry_run_flag(
    guards: dict[str, Any], settings: dict[str, Any], decision: str, dry: bool
) -> None:
    """A dry run is decision `execute` with dry_run true (no approval wait; docs/design.md)."""
    [d] = Run(load(alert_policy(guards=guards)), **settings).feed(alert(0))
    assert (d.decision, d.dry_run) == (decision, dry)
    assert d.action_id is not None and d.action_id.startswith("a-")
    assert d.plan_line()["dry_run"] is dry


def test_suppressed_decision_shape() -> None:
    [d] = Run(load(alert_policy()), paused=True).feed(alert(0))
    line = d.plan_line()
    assert line["decision"] == "suppressed" and line["reason"] == "paused"
    assert line["action_id"] is None and line["dry_run"] is False
    assert line["target"] == {"kind": "Deployment", "namespace": "llm-prod", "name": "vllm"}
    [u] = Run(load(alert_policy())).feed(alert(0, {"alertname": "X"}))
    assert (
        u.plan_line()["target"] is None and u.use == "healer.noop" and u.with_ == {"message": "one"}
    )


def test_rate_limit_is_global_across_policies_and_targets() -> None:
    docs = [
        alert_policy("a"),
        alert_policy("b", trigger={"alert": {"matchers": ['alertname="Y"']}}),
    ]
    run = Run(load(*docs), rate_limit=Budget(2, timedelta(minutes=10)))
    assert brief(run.feed(alert(0, starts=0))) == [("execute", "healer.noop")]
    assert brief(run.feed(alert(1, {**LABELS, "alertname": "Y"}, starts=1))) == [
        ("execute", "healer.noop")
    ]
    assert brief(run.feed(alert(2, {**LABELS, "deployment": "z"}, starts=2))) == [
        ("rate_limited", "healer.noop")
    ]
    assert brief(run.feed(alert(601, {**LABELS, "deployment": "z"}, starts=2))) == [
        ("execute", "healer.noop")
    ]
