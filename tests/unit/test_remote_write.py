"""The remote-write receiver's pure core (healer.remote_write) and PolicySet.wants_series.

Request bodies are built with a small protobuf *encoder* of the test's own, written from the
remote-write 1.0 spec's field numbers, so a wrong field number in healer's descriptor fails
here. Bodies that real Prometheus sends are covered by tests/integration/prometheus/.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import cramjam
import pytest
from aiohttp.test_utils import make_mocked_request
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from healer.index import PolicySet
from healer.ingest import MAX_SAMPLES_PER_RECORD, Rejected, parse_samples, partition_key
from healer.models import MetricSample, Signal
from healer.partitioner import partition_for
from healer.remote_write import (
    RECORD_OVERHEAD_BYTES,
    Kept,
    Selection,
    group,
    select,
)
from streams.remote_write import unsupported
from tests.unit.policy_kit import T0, alert_policy, load, metric_policy

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
MS = int(T0.timestamp() * 1000)


# ---------------------------------------------------------------- an encoder from the spec


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64: two's complement, 10 bytes when negative
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, name.encode()) + _field(2, value.encode())


def _sample(value: float, ms: int) -> bytes:
    return _varint(1 << 3 | 1) + struct.pack("<d", value) + _varint(2 << 3 | 0) + _varint(ms)


def series(labels: dict[str, str] | list[tuple[str, str]], samples: list[tuple[float, int]],
           histograms: int = 0, exemplar: bool = False) -> bytes:
    pairs = list(labels.items()) if isinstance(labels, dict) else labels
    out = b"".join(_field(1, _label(k, v)) for k, v in pairs)
    out += b"".join(_field(2, _sample(v, ms)) for v, ms in samples)
    if exemplar:  # Exemplar { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
        out += _field(3, _field(1, _label("trace_id", "abc")) + _varint(2 << 3 | 1) + struct.pack("<d", 1.0))
    # Histogram { ...; int64 timestamp = 15; }: healer only counts them
    out += b"".join(_field(4, _varint(15 << 3 | 0) + _varint(MS)) for _ in range(histograms))
    return out


def body(*ts: bytes, metadata: bool = False) -> bytes:
    raw = b"".join(_field(1, t) for t in ts)
    if metadata:  # MetricMetadata { MetricType type = 1; string metric_family_name = 2; ... }
        raw += _field(3, _varint(1 << 3 | 0) + _varint(1) + _field(2, b"load"))
    return bytes(cramjam.snappy.compress_raw(raw))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load(
        metric_policy("load-vllm", matchers=['deployment="vllm"']),
        metric_policy("gpu", name="gpu_util", matchers=['__name__="gpu_util"', 'namespace=~"llm-.*"']),
        alert_policy("an-alert-policy"),
    )


VLLM = {"__name__": "load", "namespace": "llm-prod", "deployment": "vllm", "pod": "vllm-0"}


def kept_samples(sel: Selection | Rejected) -> list[MetricSample]:
    assert isinstance(sel, Selection), sel
    records, too_large = group(sel.kept, 1)
    assert too_large == 0
    out: list[MetricSample] = []
    for r in records:
        parsed = parse_samples(json.loads(r.value))
        assert not isinstance(parsed, Rejected), parsed
        out += parsed
    return out


# ---------------------------------------------------------------- decoding


def test_samples_become_healer_metric_samples(policies: PolicySet) -> None:
    sel = select(body(series(VLLM, [(12.5, MS), (13.0, MS + 1500)]), metadata=True), policies)
    samples = kept_samples(sel)
    assert [(s.name, s.value, s.timestamp) for s in samples] == [  # ingest gives epoch seconds
        ("load", 12.5, T0.timestamp()), ("load", 13.0, T0.timestamp() + 1.5)]
    assert samples[0].labels == {"namespace": "llm-prod", "deployment": "vllm", "pod": "vllm-0"}
    assert isinstance(sel, Selection) and sel.counts["accepted"] == 2 and sel.dropped == 0


def test_exemplars_metadata_and_negative_timestamps_decode(policies: PolicySet) -> None:
    sel = select(body(series(VLLM, [(1.0, -1000)], exemplar=True), metadata=True), policies)
    (s,) = kept_samples(sel)
    assert s.timestamp == -1.0


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xff\xff\xff\xff\xff", "bad snappy"),                           # no valid length header
    (b"hello world", "bad snappy"),                                        # header, corrupt data
    (bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03")), "bad protobuf"),  # truncated field
    (bytes(cramjam.snappy.compress_raw(b"\x00\x01\x02")), "bad protobuf"),      # field number 0
    (bytes(cramjam.snappy.compress_raw(_field(1, _field(1, _field(1, b"\xff\xfe"))))), "bad protobuf"),  # not UTF-8
])
def test_bad_bodies_are_rejected_with_a_reason(raw: bytes, reason: str, policies: PolicySet) -> None:
    out = select(raw, policies)
    assert isinstance(out, Rejected) and out.reason.startswith(reason), out


def test_a_snappy_bomb_is_refused_from_its_header(policies: PolicySet) -> None:
    # a 9-byte body whose header claims 2 GiB: refused before any output is allocated
    forged = b"\x80\x80\x80\x80\x08" + b"\x00" * 4
    out = select(forged, policies)
    assert isinstance(out, Rejected) and out.reason.startswith("oversize: body decompresses to 2147483648")
    # a real one: 4 MiB of zeros in ~200 KB; over a 1 MiB decode limit
    bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * (4 << 20)))
    assert len(bomb) < 1 << 20
    out = select(bomb, policies, max_decoded=1 << 20)
    assert isinstance(out, Rejected) and out.reason.startswith("oversize: body decompresses"), out


def test_an_oversize_body_is_rejected(policies: PolicySet) -> None:
    raw = body(series(VLLM, [(1.0, MS)] * 100))
    out = select(raw, policies, max_body=len(raw) - 1)
    assert isinstance(out, Rejected) and out.reason.startswith("oversize: body is"), out
    assert isinstance(select(raw, policies, max_body=len(raw)), Selection)


def test_an_empty_request_is_fine(policies: PolicySet) -> None:
    sel = select(bytes(cramjam.snappy.compress_raw(b"")), policies)
    assert isinstance(sel, Selection) and not sel.kept and sel.dropped == 0


# ---------------------------------------------------------------- filtering


def test_only_series_a_policy_could_match_are_kept(policies: PolicySet) -> None:
    sel = select(body(
        series(VLLM, [(1.0, MS)]),
        series({**VLLM, "deployment": "other"}, [(1.0, MS), (2.0, MS + 1)]),  # matcher fails
        series({"__name__": "up", "job": "x"}, [(1.0, MS)]),                    # no policy on `up`
        series({"__name__": "gpu_util", "namespace": "llm-a"}, [(90.0, MS)]),    # __name__ matcher
        series({"__name__": "gpu_util", "namespace": "batch"}, [(90.0, MS)]),
        series({"namespace": "llm-a"}, [(1.0, MS)]),                             # no __name__ at all
    ), policies)
    assert isinstance(sel, Selection)
    assert [s.name for s in kept_samples(sel)] == ["load", "gpu_util"]
    assert sel.counts["no_policy"] == 5 and sel.counts["accepted"] == 2


def test_no_metric_policy_keeps_nothing() -> None:
    sel = select(body(series(VLLM, [(1.0, MS)])), load(alert_policy("only-alerts")))
    assert isinstance(sel, Selection) and not sel.kept and sel.counts["no_policy"] == 1


def test_stale_markers_nan_and_infinities_are_dropped_and_counted(policies: PolicySet) -> None:
    sel = select(body(series(VLLM, [
        (STALE, MS), (math.nan, MS + 1), (math.inf, MS + 2), (-math.inf, MS + 3), (0.5, MS + 4),
        (-0.0, MS + 5), (1e308, MS + 6),
        (1.0, 2**63 - 1),  # far past datetime's range
    ])), policies)
    assert isinstance(sel, Selection)
    assert [s.value for s in kept_samples(sel)] == [0.5, -0.0, 1e308]
    assert {k: v for k, v in sel.counts.items() if v} == {
        "accepted": 3, "stale": 1, "non_finite": 3, "invalid": 1}


def test_series_with_invalid_labels_are_dropped_whole(policies: PolicySet) -> None:
    many = {**VLLM, **{f"l{i}": "x" for i in range(130)}}
    dup = [*VLLM.items(), ("pod", "vllm-1")]
    long_value = {**VLLM, "pod": "p" * (16 * 1024 + 1)}
    sel = select(body(series(many, [(1.0, MS)]), series(dup, [(1.0, MS), (2.0, MS)]),
                      series(long_value, [(1.0, MS)]), series(VLLM, [(3.0, MS)])), policies)
    assert isinstance(sel, Selection)
    assert [s.value for s in kept_samples(sel)] == [3.0]
    assert sel.counts["invalid"] == 4


def test_native_histograms_are_counted_not_kept(policies: PolicySet) -> None:
    sel = select(body(series(VLLM, [], histograms=2), series({"__name__": "up"}, [], histograms=3)), policies)
    assert isinstance(sel, Selection) and not sel.kept
    assert sel.counts["histogram"] == 2 and sel.counts["no_policy"] == 3


# ---------------------------------------------------------------- grouping


def _kept(n: int, pods: int = 1, pad: int = 0, key_pad: int = 0) -> list[Kept]:
    out = []
    for i in range(n):
        labels = {"namespace": "llm", "deployment": f"d{i % pods}" + "k" * key_pad, "pad": "x" * pad}
        js = json.dumps({"name": "load", "labels": labels, "value": i, "timestamp": "2026-03-02T10:00:00Z"})
        out.append(Kept(partition_key(labels), js.encode()))
    return out


def test_one_record_per_destination_partition() -> None:
    kept = _kept(600, pods=40)
    records, too_large = group(kept, 6)
    assert too_large == 0
    assert sorted(r.partition for r in records) == sorted({partition_for(k.key, 6) for k in kept})
    by_key = {k.json: k.key for k in kept}
    producer_partitioner, parts = DefaultPartitioner(), list(range(6))
    for r in records:
        assert producer_partitioner(r.key, parts, parts) == r.partition  # aiokafka's agrees
        items = json.loads(r.value)
        assert r.samples == len(items)
        assert {partition_for(by_key[json.dumps(x).encode()], 6) for x in items} == {r.partition}
        values = [x["value"] for x in items]
        assert values == sorted(values)  # request order within a partition
    assert sum(r.samples for r in records) == 600


def test_records_split_at_the_sample_limit() -> None:
    records, _ = group(_kept(MAX_SAMPLES_PER_RECORD * 2 + 1), 1, max_record_bytes=64 << 20)
    assert [r.samples for r in records] == [MAX_SAMPLES_PER_RECORD, MAX_SAMPLES_PER_RECORD, 1]


@pytest.mark.parametrize(("n", "pad", "key_pad"), [
    (300, 1000, 0),   # samples of ~1 KB
    (300, 0, 3000),   # keys as long as most of a sample
    (2000, 0, 0),     # small samples: the overhead is worth ten of them
])
def test_records_split_at_the_byte_limit_key_and_overhead_included(n: int, pad: int, key_pad: int) -> None:
    limit = 64 * 1024
    kept = _kept(n, pad=pad, key_pad=key_pad)
    records, too_large = group(kept, 1, max_record_bytes=limit)
    assert too_large == 0 and len(records) > 1
    assert sum(r.samples for r in records) == n
    for r in records:
        assert len(r.value) + len(r.key) + RECORD_OVERHEAD_BYTES <= limit
        json.loads(r.value)
    # each record but the last is full: the next sample would not have fit
    one = len(kept[0].json) + 1
    for r in records[:-1]:
        assert len(r.value) + len(r.key) + RECORD_OVERHEAD_BYTES + one > limit


def test_a_record_fills_its_budget_to_the_byte() -> None:
    one = Kept(b"llm/deployment=d", b'{"name":"load","labels":{},"value":1.0,"timestamp":"2026-03-02T10:00:00Z"}')
    n, size = 7, len(one.json)
    exact = RECORD_OVERHEAD_BYTES + len(one.key) + 2 + n * size + (n - 1)
    records, _ = group([one] * 20, 1, max_record_bytes=exact)
    assert [r.samples for r in records] == [7, 7, 6]
    assert len(records[0].value) + len(records[0].key) + RECORD_OVERHEAD_BYTES == exact
    records, _ = group([one] * 20, 1, max_record_bytes=exact - 1)
    assert [r.samples for r in records] == [6, 6, 6, 2]


def test_a_sample_larger_than_a_record_is_dropped() -> None:
    kept = [*_kept(1), *_kept(1, pad=5000), *_kept(1)]
    records, too_large = group(kept, 1, max_record_bytes=4096)
    assert too_large == 1 and [r.samples for r in records] == [2]


# ---------------------------------------------------------------- PolicySet.wants_series

label_values = st.sampled_from(["", "vllm", "other", "llm-a", "batch", "gpu_util", "load"])


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["load", "gpu_util", "up", ""]),
       labels=st.dictionaries(st.sampled_from(["namespace", "deployment", "pod", "__name__"]), label_values))
def test_wants_series_agrees_with_the_engines_candidates(name: str, labels: dict[str, str]) -> None:
    ps = load(
        metric_policy("load-vllm", matchers=['deployment="vllm"']),
        metric_policy("load-not-batch", matchers=['namespace!="batch"', 'pod=~".+"']),
        metric_policy("gpu", name="gpu_util", matchers=['namespace=~"llm-.*"']),
        alert_policy("alerts"),
    )
    labels.pop("__name__", None)
    sig = Signal(kind="metric", time=T0, event_id="e", labels=labels, name=name, value=1.0)
    assert ps.wants_series(name, labels) == bool(ps.candidates(sig))


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(("headers", "ok"), [
    ({"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
      "X-Prometheus-Remote-Write-Version": "0.1.0"}, True),
    ({}, True),  # lenient: a sender that omits them means remote write 1.0
    ({"Content-Encoding": "gzip"}, False),
    ({"Content-Encoding": "zstd"}, False),
    ({"Content-Type": "application/json"}, False),
    ({"Content-Type": "application/octet-stream"}, True),
    ({"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, False),
    ({"X-Prometheus-Remote-Write-Version": "2.0.0"}, False),
])
def test_headers_of_other_protocols_are_unsupported(headers: dict[str, Any], ok: bool) -> None:
    why = unsupported(make_mocked_request("POST", "/api/v1/write", headers=headers))
    assert (why is None) == ok, why
