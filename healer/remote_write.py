"""Prometheus remote-write 1.0 in: decode a request body, keep the series a loaded metric policy
could match, turn their samples into healer metric samples and group them into ``{app}.metrics``
records, one per destination partition (split when a record would be too large).

Pure: bytes and the policy set in, records and per-outcome sample counts out; no I/O, no clock.
``streams.remote_write`` (the ``POST /api/v1/write`` handler) calls :func:`select` and
:func:`group`; docs/remote-write.md describes the behaviour for users.

Wire format, from the public remote-write 1.0 specification: the body is a snappy *block*
(not framed) compressed protobuf ``prometheus.WriteRequest``. The layout is built below as a
descriptor in code, so there is no .proto file and no protoc step::

    WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
                   repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds since the epoch

Only what healer reads is declared. ``histograms`` is declared as ``repeated bytes`` (the same
wire type as an embedded message): healer counts native histogram samples but does not use
them. Exemplars and metadata are not declared; protobuf skips them as unknown fields.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import cramjam
import msgspec
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from healer.index import PolicySet
from healer.ingest import MAX_RECORD_BYTES, MAX_SAMPLES_PER_RECORD, Rejected, partition_key
from healer.models import MetricSample
from healer.partitioner import partition_for
from healer.timeutil import format_time

# A compressed body larger than this is refused before it is decompressed; the snappy header's
# declared length is checked against MAX_DECODED_BYTES before any output is allocated, so a
# small body that claims to inflate to gigabytes (a snappy bomb) costs nothing.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_DECODED_BYTES = 16 * 1024 * 1024
# Room in a Kafka record for what is not the value (record headers, batch overhead) besides
# the key, which is counted exactly.
RECORD_OVERHEAD_BYTES = 1024
# Prometheus' staleness marker: a NaN with this bit pattern (value.StaleNaN in Prometheus).
STALE_NAN = struct.pack("<Q", 0x7FF0000000000002)

Outcome = Literal["accepted", "no_policy", "stale", "non_finite", "invalid", "too_large", "histogram"]
OUTCOMES: tuple[Outcome, ...] = (
    "accepted", "no_policy", "stale", "non_finite", "invalid", "too_large", "histogram",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _descriptor() -> Any:
    """The WriteRequest message class, built from a FileDescriptorProto in a private pool."""
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="healer/prometheus_remote_write.proto", package="prometheus", syntax="proto3",
    )

    def msg(name: str, *fields: tuple[str, int, int, int, str | None]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, flabel, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=flabel)
            if type_name:
                fd.type_name = type_name

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    msg("Label", ("name", 1, f.TYPE_STRING, one, None), ("value", 2, f.TYPE_STRING, one, None))
    msg("Sample", ("value", 1, f.TYPE_DOUBLE, one, None), ("timestamp", 2, f.TYPE_INT64, one, None))
    msg("TimeSeries",
        ("labels", 1, f.TYPE_MESSAGE, many, ".prometheus.Label"),
        ("samples", 2, f.TYPE_MESSAGE, many, ".prometheus.Sample"),
        ("histograms", 4, f.TYPE_BYTES, many, None))
    msg("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, many, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest: Any = _descriptor()


@dataclass(frozen=True)
class Kept:
    """One accepted sample: its Kafka key (``healer.ingest.partition_key``) and its JSON."""

    key: bytes
    json: bytes


@dataclass
class Selection:
    """What :func:`select` kept, and how many samples each outcome had."""

    kept: list[Kept] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def dropped(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome != "accepted")


@dataclass(frozen=True)
class Record:
    """One ``{app}.metrics`` record: a JSON array of healer metric samples for one partition."""

    partition: int
    key: bytes
    value: bytes
    samples: int


def decode(body: bytes, max_body: int = MAX_BODY_BYTES, max_decoded: int = MAX_DECODED_BYTES) -> Any:
    """The WriteRequest in ``body``, or a :class:`Rejected` saying why not (never raises)."""
    if len(body) > max_body:
        return Rejected(f"oversize: body is {len(body)} bytes > {max_body} (compressed); "
                        f"lower max_samples_per_send on the sender")
    try:
        declared = cramjam.snappy.decompress_raw_len(body)
        if declared > max_decoded:
            return Rejected(f"oversize: body decompresses to {declared} bytes > {max_decoded}; "
                            f"lower max_samples_per_send on the sender")
        raw = cramjam.snappy.decompress_raw(body)
    except cramjam.DecompressionError as exc:
        return Rejected(f"bad snappy: {str(exc)[:200]}; send snappy block format (Content-Encoding: snappy)")
    req = WriteRequest()
    try:
        req.ParseFromString(bytes(raw))
    except message.DecodeError as exc:
        return Rejected(f"bad protobuf: not a prometheus.WriteRequest ({str(exc)[:200]})")
    return req


def select(
    body: bytes, policies: PolicySet, max_body: int = MAX_BODY_BYTES, max_decoded: int = MAX_DECODED_BYTES,
) -> Selection | Rejected:
    """Decode ``body`` and keep the samples of series some metric policy could match.

    A series is kept when ``PolicySet.wants_series`` says a metric policy's name and matchers
    could match it (its labels plus ``__name__``). Of a kept series, a sample is dropped when it
    is a staleness marker (``stale``), another NaN or an infinity (``non_finite``: a window's
    average or maximum would be meaningless), or its timestamp is out of range (``invalid``);
    native histogram samples are counted as ``histogram`` and dropped (policies aggregate float
    samples). A series whose labels break healer's limits (models.MetricSample: 128 labels, name
    256, value 16 KiB characters) or has no ``__name__`` is dropped whole as ``invalid``.
    """
    req = decode(body, max_body, max_decoded)
    if isinstance(req, Rejected):
        return req
    out = Selection()
    counts = out.counts
    for ts in req.timeseries:
        n_float, n_hist = len(ts.samples), len(ts.histograms)
        labels = {str(lb.name): str(lb.value) for lb in ts.labels}
        name = labels.pop("__name__", "")
        if not policies.wants_series(name, labels):
            counts["no_policy"] += n_float + n_hist
            continue
        counts["histogram"] += n_hist
        prefix = _series_prefix(name, labels, len(ts.labels))
        if prefix is None:
            counts["invalid"] += n_float
            continue
        key = partition_key(labels)
        for s in ts.samples:
            outcome, tail = _sample_tail(float(s.value), int(s.timestamp))
            counts[outcome] += 1
            if tail is not None:
                out.kept.append(Kept(key, prefix + tail))
    return out


def _series_prefix(name: str, labels: dict[str, str], n_labels: int) -> bytes | None:
    """``{"name":..,"labels":..,`` for every sample of a series; None when its labels are invalid."""
    if not name or len(labels) != n_labels - 1:  # no __name__, or a label name given twice
        return None
    try:
        msgspec.convert({"name": name, "value": 0.0, "labels": labels}, MetricSample)
    except msgspec.ValidationError:
        return None
    head = {"name": name, "labels": labels}
    return _dumps(head)[:-1] + b","


def _sample_tail(value: float, ms: int) -> tuple[Outcome, bytes | None]:
    """The sample's outcome and, when accepted, the rest of its JSON object."""
    if math.isnan(value):
        return ("stale" if struct.pack("<d", value) == STALE_NAN else "non_finite"), None
    if math.isinf(value):
        return "non_finite", None
    try:
        stamp = format_time(_EPOCH + timedelta(milliseconds=ms))
    except OverflowError:
        return "invalid", None
    return "accepted", b'"value":' + _dumps(value) + b',"timestamp":"' + stamp.encode() + b'"}'


def _dumps(obj: Any) -> bytes:
    # the form streams.codec writes (compact, UTF-8); the core cannot import streams
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def group(
    kept: Iterable[Kept], partitions: int, max_record_bytes: int = MAX_RECORD_BYTES,
    max_samples: int = MAX_SAMPLES_PER_RECORD,
) -> tuple[list[Record], int]:
    """Records for one request: one per destination partition of ``{app}.metrics`` (which has
    ``partitions``), split when larger than ``max_samples`` samples or ``max_record_bytes`` bytes
    (key and overhead included).

    A sample's partition is the one Kafka's default partitioner gives its key
    (``healer.partitioner.partition_for``). Each record is keyed by its first sample's key, so
    the producer's partitioner sends the record to the partition its samples were grouped for.
    Samples keep their request order within a partition. Returns the records and the number of
    samples dropped because one alone does not fit in a record (``too_large``).
    """
    by_partition: dict[int, list[Kept]] = {}
    known: dict[bytes, int] = {}  # a series' samples share a key: hash it once
    for k in kept:
        p = known.get(k.key)
        if p is None:
            p = known[k.key] = partition_for(k.key, partitions)
        by_partition.setdefault(p, []).append(k)
    records: list[Record] = []
    too_large = 0
    for partition in sorted(by_partition):
        chunk: list[bytes] = []
        key = b""
        size = budget = 0
        for k in by_partition[partition]:
            if 2 + len(k.json) > max_record_bytes - RECORD_OVERHEAD_BYTES - len(k.key):
                too_large += 1  # not even alone in a record of its own
                continue
            if chunk and (len(chunk) >= max_samples or size + 1 + len(k.json) > budget):
                records.append(_record(partition, key, chunk))
                chunk = []
            if not chunk:
                key = k.key
                size = 1  # "[" and "]", less the comma counted for the first sample
                budget = max_record_bytes - RECORD_OVERHEAD_BYTES - len(key)
            chunk.append(k.json)
            size += 1 + len(k.json)
        if chunk:
            records.append(_record(partition, key, chunk))
    return records, too_large


def _record(partition: int, key: bytes, chunk: list[bytes]) -> Record:
    return Record(partition, key, b"[" + b",".join(chunk) + b"]", len(chunk))
