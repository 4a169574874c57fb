"""Target rows (healer.state): the compact changelog encoding, input positions, old rows."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

from healer.engine import EngineSettings, decide, route
from healer.state import (
    GlobalState,
    Incident,
    TargetRow,
    TargetState,
    Window,
    decode_row,
    encode_row,
)
from tests.unit.policy_kit import MLABELS, load, metric_policy, sample

HELD = 300
BUDGET = 64  # bytes per held sample, in memory and in the changelog (issue 12)


PS = load(metric_policy(aggregate="avg", window="10m", op=">", threshold=1e9,
                        group_by=["namespace", "deployment", "pod"]))


def _full_row(groups: int = 1) -> TargetRow:
    ps = PS
    row = TargetRow()
    for g in range(groups):
        for i in range(HELD):
            s = sample(i, float(i % 17), {**MLABELS, "pod": f"vllm-{g}"})
            [rt] = route(s, ps)
            decide(s, rt, ps, row.state, GlobalState(), EngineSettings())
    row.mark("h.metrics:0", (1234, -1))
    return row


def test_round_trip_keeps_everything() -> None:
    row = _full_row(3)
    row.state.incidents["p"] = Incident("k", 1.5, 2)
    row.state.dedup["fp|s|firing"] = 3.0
    row.state.acted_times["p"] = [1.0, 2.0]
    row.state.last_acted["p"] = 2.0
    back = decode_row(encode_row(row))
    assert back.state.to_dict() == row.state.to_dict()
    assert back.applied == row.applied


def test_changelog_bytes_per_held_sample_within_budget() -> None:
    row = _full_row(4)
    held = row.state.held_samples()
    assert held == 4 * HELD
    size = len(encode_row(row))
    print(f"{size / held:.1f} bytes per held sample in the changelog")
    assert size / held <= BUDGET


def _allocated(make: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    made = make()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return made, sum(s.size_diff for s in after.compare_to(before, "filename"))


def test_memory_per_held_sample_within_budget() -> None:
    """The worker keeps each row encoded in its table and decodes it for a batch:
    both forms stay within the budget."""
    rows = [_full_row(1) for _ in range(20)]
    held = sum(r.state.held_samples() for r in rows)
    kept, used = _allocated(lambda: [encode_row(r) for r in rows])
    print(f"{used / held:.1f} bytes per held sample in the table (encoded rows)")
    assert used / held <= BUDGET
    assert isinstance(kept, list)
    _decoded, used = _allocated(lambda: [decode_row(b) for b in kept])
    print(f"{used / held:.1f} bytes per held sample while a batch works on them (decoded rows)")
    assert used / held <= BUDGET


def test_positions_mark_replays() -> None:
    row = TargetRow()
    assert not row.seen("t:0", (10, -1))
    row.mark("t:0", (10, -1))
    assert row.seen("t:0", (10, -1)) and row.seen("t:0", (9, 3)) and not row.seen("t:0", (11, -1))
    assert not row.seen("t:1", (1, -1))  # positions are per input partition
    row.mark("t:0", (12, 0))
    row.mark("t:0", (11, -1))  # a replay never moves the mark back
    assert row.applied["t:0"] == (12, 0) and row.seen("t:0", (12, 0)) and not row.seen("t:0", (12, 1))


def test_reads_rows_written_by_healer_0_1() -> None:
    st = TargetState(incidents={"p": Incident("k", 1.0, 1)})
    w = Window()
    w.add(5.0, "a=b", 1.5, 100)
    st.windows["p\x1fns=x"] = w
    old = {"s": st.to_dict(), "o": 41, "seen": {"src": {"h.alerts:0": [100, 1, [1, 2]]}}}
    row = decode_row(json.dumps(old).encode())
    assert row.state.to_dict() == st.to_dict()
    assert row.applied == {"h.alerts:0": (102, 2)}
    assert decode_row(None).applied == {} and decode_row(b"").state.windows == {}


def test_window_replaces_a_redelivered_point_and_forgets_old_series() -> None:
    w = Window()
    for i in range(20):
        w.add(float(i), f"pod={i}", 1.0, 1000)
    w.add(3.0, "pod=3", 9.0, 1000)
    assert len(w) == 20 and w.points[3] == (3.0, "pod=3", 9.0)
    w.prune(15.0)
    w.add(30.0, "pod=new", 2.0, 1000)
    assert [p[1] for p in w.points] == [f"pod={i}" for i in range(16, 20)] + ["pod=new"]
    assert len(w.series) <= 8  # series no point refers to are dropped
