"""Metric triggers: ``for`` (fires exactly when held; a dip resets), sliding
windows with out-of-order and late samples, every aggregate (rate with
counter resets), groups, metric incidents and the memory bound of windows."""

from __future__ import annotations

from typing import Any

import pytest

from healer.engine import EngineSettings, _aggregate, decide, route
from healer.state import GlobalState, TargetState, Window
from tests.unit.policy_kit import (
    MLABELS,
    Run,
    at,
    brief,
    load,
    metric_policy,
    sample,
)

A = {"use": "healer.noop", "with": {"message": "a"}}
C = {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/oncall"}}


def _fire_times(
    doc: dict[str, Any], points: list[tuple[float, float]], **labels: str
) -> list[float]:
    run = Run(load(doc))
    out = []
    for t, v in points:
        for d in run.feed(sample(t, v, {**MLABELS, **labels})):
            out.append(d.time.timestamp() - at(0).timestamp())
    return out


# ---------------------------------------------------------------- for

SERIES = [20, 20, 20, 20, 20, 20]  # every 30 s from t=0


@pytest.mark.parametrize(
    ("for_", "values", "fires"),
    [
        pytest.param("0s", SERIES, [0, 30, 60, 90, 120, 150], id="for 0 fires at once"),
        pytest.param("60s", SERIES, [60, 90, 120, 150], id="fires when now - run_start >= for"),
        pytest.param("61s", SERIES, [90, 120, 150], id="not a second early"),
        pytest.param("60s", [20, 20, 5, 20, 20, 20, 20], [150, 180], id="a dip resets the run"),
        pytest.param("60s", [5, 20, 20, 20], [90], id="run starts at the first breach"),
        pytest.param("30s", [20, 5, 20, 5, 20, 5], [], id="flapping never fires"),
        pytest.param("90s", [20] * 3 + [5] + [20] * 3, [], id="dip just before for"),
        pytest.param("90s", [20] * 3 + [5] + [20] * 4, [210], id="then a full for again"),
    ],
)
def test_for(for_: str, values: list[float], fires: list[float]) -> None:
    doc = metric_policy(aggregate="last", window="1s", for_=for_)
    assert _fire_times(doc, [(30 * i, v) for i, v in enumerate(values)]) == fires


def test_for_holds_across_irregular_sample_times() -> None:
    doc = metric_policy(aggregate="last", window="1m", for_="2m")
    pts = [(0, 20), (50, 20), (119, 20), (120, 20), (121, 5), (122, 20), (241, 20), (242, 20)]
    assert _fire_times(doc, pts) == [120, 242]


# ---------------------------------------------------------------- windows


def test_window_is_open_at_now_minus_window() -> None:
    """(now - window, now]: a sample exactly one window old is out."""
    doc = metric_policy(aggregate="max", window="60s", threshold=10)
    assert _fire_times(doc, [(0, 50), (59, 1)]) == [0, 59]
    assert _fire_times(doc, [(0, 50), (60, 1)]) == [0]


def test_out_of_order_sample_within_window_counts() -> None:
    doc = metric_policy(aggregate="avg", window="60s", threshold=10)
    # evaluations: t=0 avg 5; t=30 avg 5; late t=20 arrives: avg(5, 50, 5) = 20 at now=30
    assert _fire_times(doc, [(0, 5), (30, 5), (20, 50)]) == [30]


def test_out_of_order_sample_can_end_a_run() -> None:
    doc = metric_policy(aggregate="avg", window="60s", threshold=10, for_="20s")
    # run from t=0; the delayed t=15 sample (value 0) drags avg to 10 -> not > 10: run ends
    pts = [(0, 15), (30, 15), (15, 0), (40, 15), (70, 15)]
    assert _fire_times(doc, pts) == [30, 70]


def test_sample_older_than_the_window_is_ignored() -> None:
    ps = load(metric_policy(aggregate="max", window="60s", threshold=10))
    st, gs, es = TargetState(), GlobalState(), EngineSettings()
    s1 = sample(100, 5)
    [rt] = route(s1, ps)
    assert decide(s1, rt, ps, st, gs, es).decisions == []
    late = decide(sample(40, 1000), rt, ps, st, gs, es)  # 40 <= 100 - 60: outside
    assert late.late and late.decisions == []
    inside = decide(sample(41, 1000), rt, ps, st, gs, es)
    assert not inside.late and len(inside.decisions) == 1
    assert inside.decisions[0].time == at(100)  # evaluated at the group's latest time


def test_redelivered_sample_replaces_its_point() -> None:
    doc = metric_policy(aggregate="count", window="60s", op="==", threshold=1)
    assert _fire_times(doc, [(0, 5), (0, 7)]) == [0, 0]  # still one point for (t, series)


def test_window_memory_is_bounded() -> None:
    ps = load(metric_policy(aggregate="count", window="10m", op=">", threshold=1e9))
    st = TargetState()
    es = EngineSettings(max_window_samples=50)
    for i in range(400):
        s = sample(i, 1, {**MLABELS, "pod": f"p{i % 7}"})
        [rt] = route(s, ps)
        decide(s, rt, ps, st, GlobalState(), es)
    [w] = st.windows.values()
    assert len(w.points) == 50 and w.points[0][0] == at(350).timestamp()
    st2 = TargetState()
    for i in range(0, 4000, 10):  # by time: only the last 10 minutes stay
        s = sample(i, 1)
        [rt] = route(s, ps)
        decide(s, rt, ps, st2, GlobalState(), EngineSettings())
    [w2] = st2.windows.values()
    assert len(w2.points) == 60


# ---------------------------------------------------------------- aggregates

P = [(0.0, "s", 1.0), (1.0, "s", 4.0), (2.0, "s", 2.0), (3.0, "s", 3.0)]


@pytest.mark.parametrize(
    ("agg", "points", "want"),
    [
        ("avg", P, 2.5),
        ("min", P, 1.0),
        ("max", P, 4.0),
        ("sum", P, 10.0),
        ("count", P, 4.0),
        ("last", P, 3.0),
        ("rate", [(0.0, "a", 100.0), (10.0, "a", 110.0), (20.0, "a", 130.0)], 1.5),
        (
            "rate",
            [(0.0, "a", 100.0), (10.0, "a", 110.0), (20.0, "a", 5.0), (30.0, "a", 15.0)],
            25 / 30,
        ),
        (
            "rate",
            [(0.0, "a", 0.0), (10.0, "b", 0.0), (10.0, "a", 10.0), (20.0, "b", 20.0)],
            1.0 + 2.0,
        ),
        ("rate", [(0.0, "a", 1.0)], None),
        ("rate", [(0.0, "a", 1.0), (5.0, "b", 1.0)], None),
        ("avg", [], None),
    ],
)
def test_aggregate(agg: str, points: list[tuple[float, str, float]], want: float | None) -> None:
    win = Window()
    for t, series, v in points:
        win.add(t, series, v, 10_000)
    got = _aggregate(agg, win)
    assert got == pytest.approx(want) if want is not None else got is None


@pytest.mark.parametrize(
    ("agg", "values", "exact"),
    [
        ("avg", [2, 4, 1, 3], 2.5),  # 2, 3, 2.33, 2.5
        ("min", [4, 2, 3, 1], 1),  # 4, 2, 2, 1
        ("max", [1, 3, 2, 4], 4),  # 1, 3, 3, 4
        ("sum", [1, 2, 3, 4], 10),  # 1, 3, 6, 10
        ("count", [9, 9, 9, 9], 4),  # 1, 2, 3, 4
        ("last", [1, 2, 4, 3], 3),  # 1, 2, 4, 3
    ],
)
def test_aggregate_through_the_engine(agg: str, values: list[float], exact: float) -> None:
    """op "==" fires only where the aggregate is exactly the expected value: the last sample."""
    doc = metric_policy(aggregate=agg, window="10s", op="==", threshold=exact)
    assert _fire_times(doc, list(enumerate(values))) == [3]


def test_rate_with_counter_reset_through_the_engine() -> None:
    doc = metric_policy(name="requests_total", aggregate="rate", window="5m", op=">", threshold=0.8)
    run = Run(load(doc))
    got = []
    for t, v in [(0, 100), (10, 110), (20, 5), (30, 15)]:
        got += brief(run.feed(sample(t, v, name="requests_total")))
    # t=0: undefined (one point); t=10: 1.0/s; t=20: (10 + 5)/20 = 0.75; t=30: 25/30 = 0.83
    assert got == [("execute", "healer.noop"), ("execute", "healer.noop")]


def test_undefined_rate_does_not_end_a_run() -> None:
    doc = metric_policy(aggregate="rate", window="15s", threshold=0.5, for_="20s")
    # rate 1/s from t=10; at t=40 only one point is in the window (undefined): run kept
    pts = [(0, 0), (10, 10), (20, 20), (40, 40), (50, 50)]
    assert _fire_times(doc, pts) == [50]


# ---------------------------------------------------------------- groups, incidents


def test_groups_have_their_own_windows_and_targets() -> None:
    run = Run(load(metric_policy(aggregate="avg", window="60s")))
    got = []
    for t in (0, 30):
        got += run.feed(sample(t, 50, {**MLABELS, "deployment": "hot"}))
        got += run.feed(sample(t, 1, {**MLABELS, "deployment": "cold"}))
    assert [d.target.name for d in got if d.target] == ["hot", "hot"]


def test_series_of_one_group_are_aggregated_together() -> None:
    doc = metric_policy(aggregate="avg", window="60s", threshold=10)
    run = Run(load(doc))
    assert len(run.feed(sample(0, 30, {**MLABELS, "pod": "a"}))) == 1  # avg 30
    assert len(run.feed(sample(1, 0, {**MLABELS, "pod": "b"}))) == 1  # avg 15
    assert run.feed(sample(2, 0, {**MLABELS, "pod": "c"})) == []  # avg 10, not > 10


def test_metric_incident_ends_with_the_run_and_resets_the_ladder() -> None:
    run = Run(load(metric_policy(aggregate="last", window="1s", spec={"actions": [A, C]})))
    got = []
    for t, v in [(0, 20), (30, 20), (60, 5), (90, 20), (120, 20)]:
        got += [f"{d.decision}:{d.use}" for d in run.feed(sample(t, v))]
    assert got == [
        "execute:healer.noop",
        "execute:webhook.notify",
        "execute:healer.noop",
        "execute:webhook.notify",
    ]


def test_matchers_apply_to_sample_labels_and_name() -> None:
    doc = metric_policy(
        matchers=['pod!~"canary-.*"', '__name__="load"'], aggregate="last", window="1s"
    )
    assert _fire_times(doc, [(0, 50)], pod="canary-1") == []
    assert _fire_times(doc, [(0, 50)], pod="stable-1") == [0]


def test_unresolved_metric_target() -> None:
    run = Run(load(metric_policy(aggregate="last", window="1s")))
    [d] = run.feed(sample(0, 50, {"namespace": "llm-prod"}))
    assert (d.decision, d.reason, d.target) == ("suppressed", "target_unresolved", None)


def test_decision_time_is_event_time_of_the_evaluation() -> None:
    [d] = Run(load(metric_policy(aggregate="last", window="1s"))).feed(sample(12.5, 50))
    assert d.time == at(12.5) and d.plan_line()["time"] == "2026-03-02T10:00:12.500Z"


def test_groups_that_stop_reporting_expire() -> None:
    """group_by finer than the target (pod): a vanished pod's group is dropped after a
    window without samples, so it neither leaks nor keeps the incident open."""
    doc = metric_policy(
        group_by=["namespace", "deployment", "pod"],
        aggregate="last",
        window="60s",
        spec={"actions": [A, C]},
    )
    ps = load(doc)
    run = Run(ps)
    got = [f"{d.decision}:{d.use}" for d in run.feed(sample(0, 50, {**MLABELS, "pod": "a"}))]
    # pod a is gone; pod b reports normal values for longer than the window
    for t in (30, 60, 90):
        got += [f"{d.decision}:{d.use}" for d in run.feed(sample(t, 1, {**MLABELS, "pod": "b"}))]
    [state] = run.replayer.states.values()
    assert list(state.windows) == ["m\x1fnamespace=llm-prod\x1fdeployment=vllm\x1fpod=b"]
    got += [f"{d.decision}:{d.use}" for d in run.feed(sample(120, 50, {**MLABELS, "pod": "c"}))]
    # the incident ended with pod a's group: the ladder starts again at its first rung
    assert got == ["execute:healer.noop", "execute:healer.noop"]
