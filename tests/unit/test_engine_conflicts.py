"""Conflicts between policies on one target (priority, ties by name) and
silences at their boundaries (startsAt inclusive, endsAt exclusive)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.policy_kit import (
    LABELS,
    MLABELS,
    Run,
    alert,
    alert_policy,
    load,
    metric_policy,
    sample,
    silence,
)

NOTIFY = {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/oncall"}}


def _summary(docs: list[dict[str, Any]], signals: list[Any], **settings: Any) -> list[list[str]]:
    run = Run(load(*docs), **settings)
    return [[f"{d.policy}:{d.reason or d.decision}" for d in run.feed(s)] for s in signals]


@pytest.mark.parametrize(
    ("policies", "want"),
    [
        pytest.param(
            [("z", 5), ("a", 10)], ["z:execute", "a:superseded"], id="lower priority acts"
        ),
        pytest.param([("b", 7), ("a", 7)], ["a:execute", "b:superseded"], id="ties by name"),
        pytest.param(
            [("c", 3), ("b", 1), ("a", 2)],
            ["b:execute", "a:superseded", "c:superseded"],
            id="three-way",
        ),
    ],
)
def test_priority(policies: list[tuple[str, int]], want: list[str]) -> None:
    docs = [alert_policy(n, priority=p) for n, p in policies]
    assert _summary(docs, [alert(0)]) == [want]


def test_no_conflict_across_targets() -> None:
    docs = [
        alert_policy("a", priority=1),
        alert_policy("b", priority=2, target={"name": "{{ labels.deployment }}-canary"}),
    ]
    run = Run(load(*docs))
    got = run.feed(alert(0))
    assert sorted((d.policy, d.decision, d.target.name if d.target else "") for d in got) == [
        ("a", "execute", "vllm"),
        ("b", "execute", "vllm-canary"),
    ]


def test_refused_top_policy_does_not_supersede() -> None:
    docs = [
        alert_policy("a", priority=1, guards={"namespaces": ["other-*"]}),
        alert_policy("b", priority=2),
    ]
    assert _summary(docs, [alert(0)]) == [["a:namespace_denied", "b:execute"]]


def test_superseded_policy_keeps_its_ladder_position() -> None:
    docs = [
        alert_policy("a", priority=1, guards={"cooldown": "10m"}),
        alert_policy("b", priority=2, actions=[{"use": "healer.noop"}, NOTIFY]),
    ]
    run = Run(load(*docs))
    first = run.feed(alert(0))
    assert [(d.policy, d.reason or d.decision, d.use) for d in first] == [
        ("a", "execute", "healer.noop"),
        ("b", "superseded", "healer.noop"),
    ]
    second = run.feed(alert(100))
    assert [(d.policy, d.reason or d.decision, d.use) for d in second] == [
        ("a", "cooldown", "healer.noop"),
        ("b", "execute", "healer.noop"),
    ]


def test_conflict_between_metric_policies_on_one_sample() -> None:
    docs = [
        metric_policy("hot", aggregate="last", window="1s", spec={"priority": 5}),
        metric_policy("warm", aggregate="last", window="1s", threshold=5, spec={"priority": 1}),
    ]
    assert _summary(docs, [sample(0, 7), sample(30, 20)]) == [
        ["warm:execute"],
        ["warm:execute", "hot:superseded"],
    ]


def test_alert_and_metric_signals_never_conflict() -> None:
    docs = [
        alert_policy("a", priority=1),
        metric_policy("m", aggregate="last", window="1s", spec={"priority": 50}),
    ]
    assert _summary(docs, [alert(0), sample(0, 50)]) == [["a:execute"], ["m:execute"]]


# ---------------------------------------------------------------- silences


@pytest.mark.parametrize(
    ("t", "silenced"),
    [(99, False), (100, True), (150, True), (199.999, True), (200, False), (201, False)],
)
def test_silence_boundaries(t: float, silenced: bool) -> None:
    docs = [alert_policy(), silence("s", ['namespace="llm-prod"'], 100, 200)]
    [d] = Run(load(*docs)).feed(alert(t))
    assert (d.reason == "silenced") is silenced
    assert d.decision == ("suppressed" if silenced else "execute")


@pytest.mark.parametrize(
    ("matchers", "silenced"),
    [
        (['namespace="llm-prod"', 'severity="critical"'], True),
        (['namespace="llm-prod"', 'severity="warning"'], False),
        (['deployment=~"vl.*"'], True),
        (['deployment=~"vl"'], False),  # anchored
        (['pod=""'], True),  # absent label equals ""
        (['namespace!~"llm-.*"'], False),
    ],
)
def test_silence_matchers(matchers: list[str], silenced: bool) -> None:
    docs = [alert_policy(), silence("s", matchers, -10, 10)]
    [d] = Run(load(*docs)).feed(alert(0, {**LABELS, "severity": "critical"}))
    assert (d.reason == "silenced") is silenced


def test_silence_on_metric_name() -> None:
    docs = [
        metric_policy(aggregate="last", window="1s"),
        silence("s", ['__name__="load"'], -10, 10),
    ]
    [d] = Run(load(*docs)).feed(sample(0, 50, MLABELS))
    assert d.reason == "silenced"


def test_silence_does_not_advance_ladder_or_cooldown() -> None:
    docs = [alert_policy(guards={"cooldown": "10m"}), silence("s", ['alertname="X"'], 0, 100)]
    assert _summary(docs, [alert(0), alert(100)]) == [["p:silenced"], ["p:execute"]]


def test_one_of_several_silences_is_enough() -> None:
    docs = [
        alert_policy(),
        silence("a", ['namespace="nope"'], -10, 10),
        silence("b", ['alertname="X"'], -10, 10),
        silence("c", ['alertname="X"'], 50, 60),
    ]
    assert _summary(docs, [alert(0)]) == [["p:silenced"]]
