"""Alert signals: the escalation ladder with ``times``, incidents and their reset
on resolve, ``status`` firing/resolved/any, duplicate deliveries, deterministic
action ids and policy revisions."""

from __future__ import annotations

from typing import Any

import pytest

from healer.engine import EngineSettings, route
from healer.models import Decision
from tests.unit.policy_kit import (
    LABELS,
    Run,
    alert,
    alert_policy,
    load,
)

A = {"use": "healer.noop", "with": {"message": "a"}}
B = {"use": "healer.noop", "with": {"message": "b"}, "times": 2}
C = {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/oncall"}}


def _msgs(ds: list[Decision]) -> list[str]:
    return [f"{d.reason or d.decision}:{d.with_.get('message') or d.use}" for d in ds]


def _feed(run: Run, events: list[tuple[float, str]]) -> list[str]:
    """events: (time, "f"|"r"|"f2"...) firing/resolved of the same alert; a new
    startsAt after each resolve, like Alertmanager."""
    out: list[Decision] = []
    starts = 0.0
    for t, kind in events:
        status = "resolved" if kind == "r" else "firing"
        out.extend(run.feed(alert(t, status=status, starts=starts)))
        if kind == "r":
            starts = t + 1
    return _msgs(out)


@pytest.mark.parametrize(
    ("ladder", "events", "want"),
    [
        pytest.param(
            [A, B, C],
            [(0, "f"), (100, "f"), (200, "f"), (300, "f"), (400, "f")],
            [
                "execute:a",
                "execute:b",
                "execute:b",
                "execute:webhook.notify",
                "execute:webhook.notify",
            ],
            id="times then last rung repeats",
        ),
        pytest.param(
            [A, B, C],
            [(0, "f"), (100, "f"), (200, "r"), (300, "f"), (400, "f")],
            ["execute:a", "execute:b", "execute:a", "execute:b"],
            id="resolve resets",
        ),
        pytest.param(
            [{**A, "times": 3}],
            [(0, "f"), (100, "f"), (200, "f"), (300, "f")],
            ["execute:a"] * 4,
            id="single rung repeats",
        ),
        pytest.param(
            [A, C],
            [(0, "r"), (100, "f"), (200, "r"), (300, "r"), (400, "f")],
            ["execute:a", "execute:a"],
            id="resolved alone gives no decision",
        ),
    ],
)
def test_ladder(
    ladder: list[dict[str, Any]], events: list[tuple[float, str]], want: list[str]
) -> None:
    assert _feed(Run(load(alert_policy(actions=ladder))), events) == want


def test_ladder_advances_only_on_acted_decisions() -> None:
    run = Run(load(alert_policy(actions=[A, C], guards={"cooldown": "150s"})))
    assert _feed(run, [(0, "f"), (100, "f"), (200, "f"), (260, "f"), (400, "f")]) == [
        "execute:a",
        "cooldown:webhook.notify",
        "execute:webhook.notify",
        "cooldown:webhook.notify",
        "execute:webhook.notify",
    ]


def test_pending_approval_advances_the_ladder() -> None:
    run = Run(load(alert_policy(actions=[A, C], guards={"approval": "manual"})))
    assert _feed(run, [(0, "f"), (100, "f")]) == [
        "pending_approval:a",
        "pending_approval:webhook.notify",
    ]


@pytest.mark.parametrize(
    ("status", "events", "want"),
    [
        ("firing", [(0, "f"), (100, "r")], ["execute:a"]),
        (
            "resolved",
            [(0, "f"), (100, "r"), (200, "f"), (300, "r")],
            ["execute:a", "execute:webhook.notify"],
        ),
        (
            "any",
            [(0, "f"), (100, "r"), (200, "f")],
            ["execute:a", "execute:webhook.notify", "execute:webhook.notify"],
        ),
    ],
)
def test_status(status: str, events: list[tuple[float, str]], want: list[str]) -> None:
    doc = alert_policy(
        actions=[A, C], trigger={"alert": {"matchers": ['alertname="X"'], "status": status}}
    )
    assert _feed(Run(load(doc)), events) == want


def test_resolve_ends_only_that_targets_incident() -> None:
    run = Run(load(alert_policy(actions=[A, C])))
    other = {**LABELS, "deployment": "other"}
    got = [
        run.feed(alert(0)),
        run.feed(alert(0, other)),
        run.feed(alert(100, status="resolved")),
        run.feed(alert(200, starts=150)),
        run.feed(alert(200, other)),
    ]
    assert [_msgs(x) for x in got] == [
        ["execute:a"],
        ["execute:a"],
        [],
        ["execute:a"],
        ["execute:webhook.notify"],
    ]


# ---------------------------------------------------------------- duplicates


@pytest.mark.parametrize(
    ("second", "dup"),
    [
        ({"t": 30}, True),  # same fingerprint, startsAt, status, < 60 s
        ({"t": 59.9}, True),
        ({"t": 60}, False),  # repeat notification after the window
        ({"t": 30, "starts": 5}, False),  # a new startsAt is a new alert
        ({"t": 30, "status": "resolved"}, False),  # a status change is news
        ({"t": 30, "labels": {**LABELS, "pod": "p"}}, False),  # another fingerprint
    ],
)
def test_duplicate_deliveries(second: dict[str, Any], dup: bool) -> None:
    run = Run(
        load(alert_policy(trigger={"alert": {"matchers": ['alertname="X"'], "status": "any"}}))
    )
    assert len(run.feed(alert(0))) == 1
    got = run.feed(
        alert(
            second["t"],
            second.get("labels"),
            second.get("status", "firing"),
            starts=second.get("starts", 0),
        )
    )
    assert (got == []) is dup
    assert run.replayer.duplicates == (1 if dup else 0)


def test_dedup_window_is_a_setting() -> None:
    from datetime import timedelta

    run = Run(load(alert_policy()), dedup_window=timedelta(minutes=5))
    run.feed(alert(0))
    assert run.feed(alert(200)) == []
    assert len(run.feed(alert(300))) == 1


def test_dedup_compares_with_the_last_accepted_delivery() -> None:
    """A burst of redeliveries every 40 s: one signal per dedup window, not zero forever."""
    run = Run(load(alert_policy()))
    accepted = [t for t in range(0, 400, 40) if run.feed(alert(t))]
    assert accepted == [0, 80, 160, 240, 320]


def test_webhook_payload_is_split_into_alerts() -> None:
    from healer.replay import Replayer, read_lines

    payload = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {**LABELS, "deployment": d},
                "startsAt": "2026-03-02T09:59:00Z",
            }
            for d in ("a", "b", "a")
        ],
    }
    import json

    line = json.dumps({"time": "2026-03-02T10:00:00Z", "webhook": payload})
    rp = Replayer(load(alert_policy()))
    ds = rp.run(read_lines([line]))
    assert [d.target.name for d in ds if d.target] == ["a", "b"]
    assert rp.duplicates == 1


# ---------------------------------------------------------------- ids, revisions


def _stream() -> list[Any]:
    return [
        alert(0),
        alert(100),
        alert(200, status="resolved"),
        alert(300, starts=250),
        alert(300, {**LABELS, "deployment": "other"}),
    ]


def test_action_ids_are_deterministic_and_distinct() -> None:
    ids1 = [d.action_id for d in Run(load(alert_policy(actions=[A, C]))).all(_stream())]
    ids2 = [d.action_id for d in Run(load(alert_policy(actions=[A, C]))).all(_stream())]
    assert ids1 == ids2 and None not in ids1
    assert len(set(ids1)) == len(ids1)  # position, incident and target all count


def test_action_id_depends_on_revision_and_name() -> None:
    base = Run(load(alert_policy(actions=[A, C]))).feed(alert(0))[0]
    renamed = Run(load(alert_policy("q", actions=[A, C]))).feed(alert(0))[0]
    changed = Run(load(alert_policy(actions=[A, C], guards={"cooldown": "1s"}))).feed(alert(0))[0]
    assert base.revision != changed.revision
    assert len({base.action_id, renamed.action_id, changed.action_id}) == 3


def test_redelivered_signal_on_restored_state_yields_the_same_id() -> None:
    """A worker that crashes after deciding replays the signal from its table state."""
    from healer.engine import decide
    from healer.state import GlobalState, TargetState

    ps = load(alert_policy(actions=[A, C]))
    sig = alert(0)
    [rt] = route(sig, ps)
    st = TargetState()
    snapshot = st.to_dict()
    first = decide(sig, rt, ps, st, GlobalState(), EngineSettings()).decisions
    again = decide(
        sig, rt, ps, TargetState.from_dict(snapshot), GlobalState(), EngineSettings()
    ).decisions
    assert first[0].action_id == again[0].action_id
    # and the state survives a JSON round trip: the next signal continues the ladder
    nxt = decide(
        alert(100), rt, ps, TargetState.from_dict(st.to_dict()), GlobalState(), EngineSettings()
    )
    assert nxt.decisions[0].use == "webhook.notify"


YAML_A = """
apiVersion: healer/v1
kind: Policy
metadata: {name: p, description: one}
spec:
  trigger: {alert: {matchers: ['alertname="X"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: kubernetes.scale, with: {replicas: "+1", max: 10}}]
  guards: {cooldown: 5m}
"""
YAML_B = """
# same policy, other formatting, key order, explicit defaults and duration spelling
apiVersion: healer/v1
kind: Policy
metadata:
  description: another description does not change the spec
  name: p
spec:
  guards:
    cooldown: 300s
    approval: auto
  actions:
    - with:
        max: 10
        replicas: "+1"
      use: kubernetes.scale
      times: 1
  target:
    name: "{{ labels.deployment }}"
    namespace: "{{ labels.namespace }}"
    kind: Deployment
  priority: 100
  trigger:
    alert:
      status: firing
      matchers:
        - alertname="X"
"""


def test_revision_is_stable_under_formatting_and_key_order() -> None:
    from healer.catalog import default_catalog
    from healer.loader import load_documents

    cat = default_catalog()
    [a] = load_documents(YAML_A, "a.yaml", cat).policies
    [b] = load_documents(YAML_B, "b.yaml", cat).policies
    assert a.revision == b.revision
    [c] = load_documents(YAML_A.replace("max: 10", "max: 11"), "c.yaml", cat).policies
    assert c.revision != a.revision
    [d] = load_documents(YAML_A.replace("cooldown: 5m", "cooldown: 6m"), "d.yaml", cat).policies
    assert d.revision != a.revision
