"""Envelopes of the internal topics (healer.wire): round trips and refusals."""

from __future__ import annotations

import pytest

from healer.wire import (
    ApprovalRequest,
    AuditBatch,
    SignalBatch,
    WireAlert,
    WireError,
    WireRoute,
    WireSample,
    decode_approval_request,
    decode_audit,
    decode_signals,
    encode,
    event_id,
)


def test_signal_batch_round_trip() -> None:
    b = SignalBatch(
        sources=["h.metrics:2", "h.alerts:0"],
        routes=[WireRoute("/Deployment/llm/vllm", {"kind": "Deployment", "namespace": "llm", "name": "vllm"},
                          ["p1"], [])],
        signals=[WireSample(0, 0, 7, -1, 1.5, "m", 2.0, {"a": "b"}),
                 WireAlert(0, 1, 9, 2, 3.0, {"alertname": "X"}, {}, "firing", "fp", None)],
        at=10.0,
    )
    assert decode_signals(encode(b)) == b


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (None, "empty record"),
        (b"", "empty record"),
        (b"{", "not a signal batch"),
        (b'{"sources":[],"routes":[],"signals":[],"at":1,"v":9}', "of version 9"),
        (b'{"sources":[],"routes":[],"signals":[["m",0,0,1,-1,1.0,"m",1.0,{}]],"at":1}', "does not carry"),
        (b'{"sources":["s"],"routes":[],"signals":[["x",0]],"at":1}', "not a signal batch"),
    ],
)
def test_bad_signal_records_are_refused(raw: bytes | None, want: str) -> None:
    with pytest.raises(WireError, match=want):
        decode_signals(raw)


def test_audit_and_approval_envelopes() -> None:
    a = AuditBatch(entries=[{"id": "e-1", "kind": "event.received"}])
    assert decode_audit(encode(a)) == a
    r = ApprovalRequest(action_id="a-1", request={"action_id": "a-1"}, expires_at=5.0)
    assert decode_approval_request(encode(r)) == r
    with pytest.raises(WireError):
        decode_audit(b'{"id": "e-1"}')


def test_event_ids() -> None:
    assert event_id("h.alerts:3", 17, -1) == "h.alerts:3:17"
    assert event_id("h.alerts:3", 17, 0) == "h.alerts:3:17#0"


def test_large_batches_split_into_records_that_decode_alone_in_order() -> None:
    from healer.wire import encode_audit, encode_signals

    route = WireRoute("k", None, ["p"], [])
    sigs = [WireSample(0, 0, i, -1, float(i), "m", 1.0, {"pod": "x" * 100}) for i in range(3000)]
    b = SignalBatch(sources=["h.metrics:0"], routes=[route], signals=list(sigs), at=1.0)
    parts = encode_signals(b, limit=64 * 1024)
    assert len(parts) > 4 and all(len(p) <= 64 * 1024 for p in parts)
    back = [s for p in parts for s in decode_signals(p).signals]
    assert back == sigs
    entries = [{"id": f"e-{i}", "kind": "event.received", "pad": "y" * 500} for i in range(500)]
    audit_parts = encode_audit(entries, limit=32 * 1024)
    assert len(audit_parts) > 4 and [e for p in audit_parts for e in decode_audit(p).entries] == entries


def test_topic_layouts_a_worker_refuses() -> None:
    from streams.topics import TopicNames, partition_problems

    n = TopicNames("h")
    ok = {n.audit_log: 6, n.audit: 6, n.approvals: 6, n.approval_requests: 6}
    assert partition_problems(n, ok) == []
    [p] = partition_problems(n, {**ok, n.audit: 1})
    assert "h.audit has 1 partitions" in p and "--partitions 6" in p
    [q] = partition_problems(n, {**ok, n.approvals: 3})
    assert "same count" in q
