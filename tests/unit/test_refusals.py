"""The refusal rate limit (healer.refusals): which refusals are audited one by one, and what the
aggregated entry of a window counts. Table-driven; time is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healer.refusals import OTHER, RefusalRule, RefusalState, Summary, admit, close, flush_all

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
RULE = RefusalRule(window=timedelta(seconds=10), burst=2, max_keys=2)

# (seconds after T0, reason, remote)
Step = tuple[float, str, str | None]


def run(steps: list[Step], rule: RefusalRule = RULE) -> tuple[list[bool], list[Summary], RefusalState]:
    state = RefusalState()
    audited: list[bool] = []
    summaries: list[Summary] = []
    for at, reason, remote in steps:
        state, now, summary = admit(state, rule, T0 + timedelta(seconds=at), reason, remote)
        audited.append(now)
        if summary is not None:
            summaries.append(summary)
    return audited, summaries, state


CASES: list[tuple[str, list[Step], list[bool], list[int]]] = [
    # name, refusals, audited one by one?, counts of the summaries written on the way
    ("one refusal is audited", [(0, "r", "a")], [True], []),
    ("the burst is audited, the rest counted", [(0, "r", "a"), (1, "r", "a"), (2, "r", "a"), (3, "r", "a")],
     [True, True, False, False], []),
    ("a new window audits again and writes the last one's summary",
     [(0, "r", "a"), (1, "r", "a"), (2, "r", "a"), (10, "r", "a")], [True, True, False, True], [1]),
    ("a window with nothing counted writes no summary", [(0, "r", "a"), (1, "r", "a"), (30, "r", "a")],
     [True, True, True], []),
    ("the window starts at its first refusal, not on a grid",
     [(5, "r", "a"), (6, "r", "a"), (14.9, "r", "a"), (15, "r", "a")], [True, True, False, True], [1]),
    ("a clock that went back ends the window", [(0, "r", "a"), (1, "r", "a"), (2, "r", "a"), (-5, "r", "a")],
     [True, True, False, True], [1]),
]


@pytest.mark.parametrize(("name", "steps", "audited", "summaries"), CASES, ids=[c[0] for c in CASES])
def test_admit(name: str, steps: list[Step], audited: list[bool], summaries: list[int]) -> None:
    got, written, _ = run(steps)
    assert got == audited
    assert [s.count for s in written] == summaries


def test_counts_by_reason_and_remote_are_bounded() -> None:
    steps: list[Step] = [(0, "r0", "a"), (0, "r0", "a")]  # the burst
    steps += [(1, f"r{i % 5}", f"10.0.0.{i % 7}") for i in range(300)]
    audited, _, state = run(steps)
    assert audited.count(True) == 2
    state, summary = close(state, RULE, T0 + timedelta(seconds=10))
    assert summary is not None and summary.count == 300
    assert len(summary.by_reason) <= RULE.max_keys + 1 and len(summary.by_remote) <= RULE.max_keys + 1
    assert sum(summary.by_reason.values()) == sum(summary.by_remote.values()) == 300
    assert summary.by_reason[OTHER] == 300 - summary.by_reason["r0"] - summary.by_reason["r1"]
    assert (summary.start, summary.end) == (T0, T0 + timedelta(seconds=10))
    assert state == RefusalState()


def test_300_refusals_cost_a_bounded_number_of_records() -> None:
    rule = RefusalRule()  # the defaults: 10 per 10 s window
    steps: list[Step] = [(i * 0.001, "invalid token", "127.0.0.1") for i in range(300)]
    audited, summaries, state = run(steps, rule)
    last = flush_all(state, rule)
    records = audited.count(True) + len(summaries) + (last is not None)
    assert records == rule.burst + 1
    assert last is not None and last.count == 300 - rule.burst
    assert last.detail()["refusals"]["by_reason"] == {"invalid token": 290}


@pytest.mark.parametrize(("at", "open_"), [(0, True), (9.999, True), (10, False), (60, False)])
def test_close_only_when_the_window_is_over(at: float, open_: bool) -> None:
    _, _, state = run([(0, "r", "a"), (0, "r", "a"), (0, "r", "a")])
    after, summary = close(state, RULE, T0 + timedelta(seconds=at))
    assert (after is state) == open_
    assert (summary is None) == open_


def test_nothing_open_nothing_to_flush() -> None:
    assert flush_all(RefusalState(), RULE) is None
    assert close(RefusalState(), RULE, T0) == (RefusalState(), None)


def test_admit_returns_new_state_and_leaves_the_old_one() -> None:
    s0 = RefusalState()
    s1, _, _ = admit(s0, RULE, T0, "r", "a")
    assert s0 == RefusalState() and s1.audited == 1
    s2, _, _ = admit(s1, RULE, T0, "r", "a")
    s3, _, _ = admit(s2, RULE, T0, "r", "a")
    assert s2.suppressed == 0 and s3.suppressed == 1 and dict(s2.by_reason) == {}
