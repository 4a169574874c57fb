"""The ingest and decide rules end to end without a broker: records -> plan_batch ->
signal batches (encoded and decoded as on the topic) -> decide_batch, against the
offline replay of the same input (live equals offline), and replays skipped."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from healer.cli.emit_cmd import parse_input
from healer.decider import DecideOutputs, decide_batch
from healer.engine import EngineSettings
from healer.ingest import IngestPlan, InputRecord, Router, plan_batch
from healer.loader import load_policy_set
from healer.partitioner import PartitionCache, partition_for
from healer.replay import Replayer, read_lines
from healer.state import GlobalState, TargetRow, decode_row, encode_row
from healer.wire import decode_signals, encode
from tests.streamcheck import POLICIES, make_events

NOW = datetime(2026, 11, 22, tzinfo=UTC)
PARTS = 3


def records(lines: list[str]) -> dict[str, list[InputRecord]]:
    """The lines as `healer emit` would produce them, per input topic, with offsets."""
    out: dict[str, list[InputRecord]] = defaultdict(list)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    for topic, key, value, ts in parse_input("\n".join(lines), None):
        p = partition_for(key or b"", PARTS)
        off = offsets[(topic, p)]
        offsets[(topic, p)] += 1
        out[topic].append(InputRecord(f"h.{topic}", p, off, ts / 1000 if ts else None, key, value))
    return out


class Table:
    """The decide stage's view of its table: rows kept encoded, decoded per batch."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}

    def load(self, key: str) -> TargetRow:
        return decode_row(self.rows.get(key))

    def write(self, out: DecideOutputs) -> None:
        for key, row in out.rows.items():
            self.rows[key] = encode_row(row)


def run_live(recs: dict[str, list[InputRecord]], policies_dir: Path, batch: int) -> tuple[list[IngestPlan], list[DecideOutputs], Table]:
    ps = load_policy_set([policies_dir])
    router = Router(ps, PartitionCache(PARTS))
    plans = []
    for kind in ("alerts", "metrics"):
        rs = recs[kind]
        plans += [plan_batch(kind, rs[i:i + batch], router, NOW) for i in range(0, len(rs), batch)]
    table, gstate, outs = Table(), GlobalState(), []
    for plan in plans:
        wire = [decode_signals(encode(b)) for b in plan.signals.values()]
        out = decide_batch(wire, table.load, ps, gstate, EngineSettings(), NOW)
        table.write(out)
        outs.append(out)
    return plans, outs, table


def test_live_equals_offline_and_replays_change_nothing(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICIES)
    lines = make_events(1200)
    offline = Replayer(load_policy_set([tmp_path])).run(read_lines(lines))
    want = {d.action_id for d in offline if d.decision == "execute"}
    plans, outs, table = run_live(records(lines), tmp_path, batch=97)
    got = [a.action_id for out in outs for a in out.actions]
    assert len(got) == len(set(got)) and set(got) == want and len(want) > 20
    # every decision names its exact input record
    ids = {d.event.id for out in outs for d in out.decisions if d.event}
    assert all(i.startswith(("h.alerts:", "h.metrics:")) for i in ids)

    # the same signal batches again (a crash before the offsets were committed): all skipped
    ps = load_policy_set([tmp_path])
    again = [decide_batch([decode_signals(encode(b)) for b in p.signals.values()], table.load, ps,
                          GlobalState(), EngineSettings(), NOW) for p in plans]
    assert all(not o.decisions and not o.rows and o.replayed == o.signals for o in again)


def test_audit_of_a_batch(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICIES)
    lines = make_events(400)
    plans, _, _ = run_live(records(lines), tmp_path, batch=1000)
    alerts, metrics = plans[0], plans[1]
    kinds = [e.kind for e in alerts.audit]
    assert kinds == ["event.received"] * 200  # one per alert
    batches = [e for e in metrics.audit if e.kind == "input.batch"]
    assert {e.detail["partition"] for e in batches if e.detail} == {r.partition for r in records(lines)["metrics"]}
    assert sum(e.detail["count"] for e in batches if e.detail) == 200
    # one signals record per destination partition, each in input order per target
    assert set(metrics.signals) <= set(range(PARTS))
