"""healer.ingest.plan_batch: what one ingest batch sends and audits."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from healer.ingest import (
    DEADLETTER_RAW_MAX,
    InputRecord,
    Router,
    chunks,
    plan_batch,
    records_digest,
)
from healer.partitioner import PartitionCache
from tests.unit.policy_kit import load, metric_policy

NOW = datetime(2026, 11, 22, tzinfo=UTC)
PS = load(metric_policy(aggregate="avg", window="5m", op=">", threshold=5))


def sample(dep: str, v: float, t: float = 1_000.0) -> dict[str, object]:
    return {"name": "load", "value": v, "labels": {"namespace": "llm-prod", "deployment": dep, "pod": "p"},
            "timestamp": t}


def rec(offset: int, value: object, partition: int = 0, raw: bytes | None = None) -> InputRecord:
    data = raw if raw is not None else json.dumps(value).encode()
    return InputRecord("h.metrics", partition, offset, 1_000.0, b"k", data)


def plan(records: list[InputRecord], parts: int = 4) -> object:
    return plan_batch("metrics", records, Router(PS, PartitionCache(parts)), NOW)


def test_one_record_per_destination_partition_with_routes_numbered_once() -> None:
    recs = [rec(i, sample(f"d{i % 5}", 1.0)) for i in range(50)]
    p = plan(recs)
    assert sum(len(b.signals) for b in p.signals.values()) == 50 == p.signal_count
    for b in p.signals.values():
        assert len(b.routes) == len({r.key for r in b.routes})  # each target once per record
        assert b.sources == ["h.metrics:0"]
        per_target: dict[int, list[int]] = {}
        for s in b.signals:
            per_target.setdefault(s.route, []).append(s.offset)
        assert all(v == sorted(v) for v in per_target.values())  # input order per target
    [entry] = p.audit
    assert entry.kind == "input.batch" and entry.detail == {
        "topic": "h.metrics", "partition": 0, "first_offset": 0, "last_offset": 49, "count": 50,
        "samples": 50, "rejected": 0, "sha256": records_digest(r.value for r in recs)}


def test_multi_sample_records_carry_their_index() -> None:
    p = plan([rec(7, [sample("a", 1.0), sample("b", 2.0), sample("a", 3.0, 1001.0)])])
    got = sorted((s.offset, s.index) for b in p.signals.values() for s in b.signals)
    assert got == [(7, 0), (7, 1), (7, 2)]


def test_runs_split_at_holes_and_bad_records_are_counted() -> None:
    recs = [rec(0, sample("a", 1)), rec(1, None, raw=b"\xff\xfe"), rec(2, sample("a", 2)),
            rec(5, sample("a", 3)), rec(5, sample("a", 3))]  # a hole, and a record handed over twice
    p = plan(recs)
    runs = [(e.detail["first_offset"], e.detail["last_offset"], e.detail["count"], e.detail["rejected"])
            for e in p.audit if e.kind == "input.batch" and e.detail]
    assert runs == [(0, 2, 3, 1), (5, 5, 1, 0)]
    [rej] = [e for e in p.audit if e.kind == "event.rejected"]
    assert rej.event is not None and rej.event.id == "h.metrics:0:1" and rej.reason.startswith("not UTF-8")
    [(key, dl)] = p.deadletters
    assert key == b"k" and dl["raw_base64"] == "//4=" and dl["raw_bytes"] == 2 and not dl["raw_truncated"]


def test_dead_letters_keep_the_head_of_a_huge_record() -> None:
    big = b'{"name": "' + b"x" * (DEADLETTER_RAW_MAX * 2) + b'"}'
    p = plan([rec(0, None, raw=big)])
    [(_, dl)] = p.deadletters
    assert dl["raw_truncated"] and dl["raw_bytes"] == len(big) and len(dl["raw"]) == DEADLETTER_RAW_MAX


def test_digest_covers_record_boundaries() -> None:
    assert records_digest([b"ab", b"c"]) != records_digest([b"a", b"bc"])
    want = hashlib.sha256(len(b"ab").to_bytes(8, "big") + b"ab" + b"\xff" * 8).hexdigest()
    assert records_digest([b"ab", None]) == want


def test_series_matching_no_policy_cost_no_signal() -> None:
    p = plan([rec(0, {**sample("a", 1.0), "name": "other"})])
    assert not p.signals and p.received == 1
    assert [e.kind for e in p.audit] == ["input.batch"]


def test_hostile_values_are_refused_with_a_reason() -> None:
    cases = [
        {**sample("a", 1.0), "value": "NaN"},
        {**sample("a", 1.0), "value": True},
        {**sample("a", 1.0), "timestamp": "yesterday"},
        {**sample("a", 1.0), "labels": {"a": 1}},
        {**sample("a", 1.0), "extra": 1},
        [],
    ]
    p = plan([rec(i, c) for i, c in enumerate(cases)])
    reasons = [e.reason for e in p.audit if e.kind == "event.rejected"]
    assert len(reasons) == len(cases) and all(r and r.startswith("schema:") for r in reasons), reasons


def test_an_input_whose_signal_could_not_travel_is_rejected() -> None:
    from healer.ingest import SIGNAL_LIMIT

    huge = sample("a", 1.0)
    huge["labels"] = {**huge["labels"], **{f"l{i}": "v" * 16_000 for i in range(40)}}  # type: ignore[dict-item]
    p = plan_batch("metrics", [rec(0, huge)], Router(PS, PartitionCache(4)), NOW, max_bytes=2 * 1024 * 1024)
    assert not p.signals and p.received == 0 and p.rejected == 1
    [rej] = [e for e in p.audit if e.kind == "event.rejected"]
    assert str(SIGNAL_LIMIT) in (rej.reason or "")
    [batch] = [e for e in p.audit if e.kind == "input.batch"]
    assert batch.detail is not None and batch.detail["rejected"] == 1


# healer.ingest.chunks: what one fetch returned, cut into batches of bounded bytes


def test_chunks_cut_at_the_byte_bound_and_keep_each_partitions_order() -> None:
    fetched = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}
    got = chunks(fetched, lambda r: 10, max_bytes=25)
    assert got == [{"a": ["a0", "a1"]}, {"a": ["a2"], "b": ["b0"]}, {"b": ["b1"]}]
    flat = [r for c in got for recs in c.values() for r in recs]
    assert sorted(flat) == sorted(r for recs in fetched.values() for r in recs)  # nothing lost or doubled


def test_chunks_under_the_bound_are_one_batch() -> None:
    fetched = {"a": ["a0"], "b": ["b0", "b1"]}
    assert chunks(fetched, lambda r: 10, max_bytes=1000) == [fetched]


def test_a_record_larger_than_the_bound_is_a_batch_of_its_own() -> None:
    assert chunks({"a": ["big", "x"]}, len, max_bytes=2) == [{"a": ["big"]}, {"a": ["x"]}]


def test_a_replayed_partition_is_never_cut_and_comes_first() -> None:
    fetched = {"a": ["a0", "a1"], "r": ["r0", "r1", "r2"]}
    got = chunks(fetched, lambda r: 10, max_bytes=15, whole=frozenset({"r"}))
    assert got[0] == {"r": ["r0", "r1", "r2"]}
    assert got[1:] == [{"a": ["a0"]}, {"a": ["a1"]}]


def test_nothing_fetched_is_no_batch() -> None:
    assert chunks({}, len) == []
