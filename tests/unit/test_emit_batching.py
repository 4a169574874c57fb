"""`healer emit` packs metric samples into records per partition key (the recommended format)."""

from __future__ import annotations

import json

from healer.cli.emit_cmd import MAX_BATCH_BYTES, parse_input
from healer.replay import Replayer, read_lines
from tests.unit.policy_kit import load, metric_policy


def line(t: int, dep: str, v: float) -> str:
    return json.dumps({"time": f"2026-11-21T10:{t // 60:02d}:{t % 60:02d}Z",
                       "metric": {"name": "load", "value": v, "labels": {"namespace": "llm", "deployment": dep}}})


def test_samples_pack_per_key_in_order_with_their_line_time() -> None:
    lines = [line(i, "a" if i % 3 else "b", float(i)) for i in range(10)]
    recs = parse_input("\n".join(lines), None, batch=4)
    by_key: dict[bytes | None, list[float]] = {}
    for topic, key, value, _ts in recs:
        assert topic == "metrics"
        samples = json.loads(value)
        assert len(samples) <= 4 and all("timestamp" in s for s in samples)
        by_key.setdefault(key, []).extend(s["value"] for s in samples)
    assert by_key == {b"llm/deployment=a": [float(i) for i in range(10) if i % 3],
                      b"llm/deployment=b": [0.0, 3.0, 6.0, 9.0]}
    assert len(parse_input("\n".join(lines), None)) == 10  # batch=1: a record per line, as before


def test_packing_changes_no_decision() -> None:
    ps = load(metric_policy(aggregate="avg", window="60s", op=">", threshold=5))
    lines = [line(i, "vllm", float(i % 9)) for i in range(120)]
    one_each = Replayer(ps).run(read_lines(lines))
    packed = [json.dumps({"time": "2026-11-21T10:00:00Z", "metric": json.loads(v)})
              for _t, _k, v, _ts in parse_input("\n".join(lines), None, batch=7)]
    assert [d.action_id for d in Replayer(ps).run(read_lines(packed))] == [d.action_id for d in one_each]


def test_records_stay_small() -> None:
    big = [json.dumps({"time": "2026-11-21T10:00:00Z", "metric": {
        "name": "load", "value": 1, "labels": {"namespace": "llm", "deployment": "x", "blob": "z" * 10_000}}})
        for _ in range(100)]
    recs = parse_input("\n".join(big), None, batch=500)
    assert len(recs) > 1 and all(len(v) < MAX_BATCH_BYTES + 20_000 for _t, _k, v, _ts in recs)
