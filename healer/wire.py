"""Typed envelopes of the worker's internal topics, and their codecs.

``{app}.signals``  one :class:`SignalBatch` per (ingest batch, signals partition):
                   the batch's signals for that partition's targets, in input
                   order, each pointing at a route (target + policies) and at its
                   input coordinates (source partition, offset, index).
``{app}.audit-log`` one :class:`AuditBatch` per (stage batch, audit partition):
                   unsealed audit entries in the order they were made; the
                   sealer writes one sealed record per entry to ``{app}.audit``.
``{app}.approval-requests`` one :class:`ApprovalRequest` per pending action.

Action requests on ``{app}.actions`` stay one per record
(``healer.models.ActionRequest``). Encoded as JSON with msgspec (readable with
any console consumer; decoding validates the shape in one C call). A record
that does not decode raises :class:`WireError` with the reason.

Pure; used by the stages in ``streams/stages`` and by the sealer.
"""

from __future__ import annotations

from typing import Any

import msgspec

WIRE_VERSION = 1


class WireError(ValueError):
    """A record on an internal topic that is not the envelope it must be."""


class WireRoute(msgspec.Struct, array_like=True):
    """One target of a batch: its key, the rendered target and the policies routed to it."""

    key: str
    target: dict[str, Any] | None
    policies: list[str]
    failures: list[tuple[str, str]] = []


class WireSample(msgspec.Struct, array_like=True, tag="m"):
    route: int
    source: int
    offset: int
    index: int  # position in a multi-sample record; -1 when the record held one
    t: float
    name: str
    value: float
    labels: dict[str, str]


class WireAlert(msgspec.Struct, array_like=True, tag="a"):
    route: int
    source: int
    offset: int
    index: int
    t: float
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    fingerprint: str
    starts_at: float | None


WireSignal = WireSample | WireAlert


class SignalBatch(msgspec.Struct, kw_only=True):
    sources: list[str]  # input "topic:partition" of the signals, by index
    routes: list[WireRoute]
    signals: list[WireSignal]
    at: float  # wall-clock seconds when ingest planned the batch
    v: int = WIRE_VERSION


class AuditBatch(msgspec.Struct, kw_only=True):
    entries: list[dict[str, Any]]  # healer.audit.AuditEntry.body() of each entry
    v: int = WIRE_VERSION


class ApprovalRequest(msgspec.Struct, kw_only=True):
    """A decision that waits for a human: the request to run once approved."""

    action_id: str
    request: dict[str, Any]  # healer.models.ActionRequest, JSON form
    expires_at: float  # epoch seconds (wall clock)
    v: int = WIRE_VERSION


_enc = msgspec.json.Encoder()
_signals = msgspec.json.Decoder(SignalBatch)
_audit = msgspec.json.Decoder(AuditBatch)
_approval = msgspec.json.Decoder(ApprovalRequest)


def encode(envelope: SignalBatch | AuditBatch | ApprovalRequest) -> bytes:
    return _enc.encode(envelope)


RECORD_LIMIT = 512 * 1024  # bytes of one internal record; well below the producer's 1 MiB


def encode_signals(batch: SignalBatch, limit: int = RECORD_LIMIT) -> list[bytes]:
    """``batch`` as one record, or as several (in order) when one would exceed ``limit``.

    The parts keep the batch's sources and routes, so each decodes on its own; one
    target's signals stay in order across them. A single signal larger than
    ``limit`` stays one record (ingest refuses inputs that would make one).
    """
    raw = _enc.encode(batch)
    n = len(batch.signals)
    if len(raw) <= limit or n <= 1:
        return [raw]
    half = n // 2
    parts = []
    for signals in (batch.signals[:half], batch.signals[half:]):
        parts += encode_signals(SignalBatch(sources=batch.sources, routes=batch.routes, signals=signals,
                                            at=batch.at), limit)
    return parts


def encode_audit(entries: list[dict[str, Any]], limit: int = RECORD_LIMIT) -> list[bytes]:
    """The entries as one audit-log record, or several (in order) over ``limit``."""
    raw = _enc.encode(AuditBatch(entries=entries))
    if len(raw) <= limit or len(entries) <= 1:
        return [raw]
    half = len(entries) // 2
    return encode_audit(entries[:half], limit) + encode_audit(entries[half:], limit)


def signal_size(signal: WireSignal) -> int:
    """Bytes of one signal on the wire (for inputs near the record limit)."""
    return len(_enc.encode(signal))


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes | None, what: str) -> Any:
    if not raw:
        raise WireError(f"empty record where {what} was expected")
    try:
        got = decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise WireError(f"not {what}: {str(exc)[:300]}") from None
    if got.v != WIRE_VERSION:
        raise WireError(f"{what} of version {got.v}: not supported (this worker reads {WIRE_VERSION})")
    return got


def decode_signals(raw: bytes | None) -> SignalBatch:
    batch: SignalBatch = _decode(_signals, raw, "a signal batch")
    n_src, n_routes = len(batch.sources), len(batch.routes)
    for s in batch.signals:
        if not (0 <= s.source < n_src and 0 <= s.route < n_routes):
            raise WireError("signal batch refers to a source or route it does not carry")
    return batch


def decode_audit(raw: bytes | None) -> AuditBatch:
    batch: AuditBatch = _decode(_audit, raw, "an audit batch")
    return batch


def decode_approval_request(raw: bytes | None) -> ApprovalRequest:
    req: ApprovalRequest = _decode(_approval, raw, "an approval request")
    return req


def event_id(source: str, offset: int, index: int) -> str:
    """``topic:partition:offset`` of the input record, ``#index`` within a multi-signal record."""
    return f"{source}:{offset}" if index < 0 else f"{source}:{offset}#{index}"
