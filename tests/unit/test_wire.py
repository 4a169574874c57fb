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
        (b'{"sources":[],"routes":[],"signals":[],"at":1,"v":9}', "version 9"),
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
