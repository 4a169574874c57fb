"""Parse input records and plan what the ingest stage sends, or say exactly why not.

Pure: bytes in, signals (or a :class:`Rejected` with a reason) out. The
replay harness (``healer policy test``) and the HTTP alert receiver use the
same parsers, so live and offline agree on what is valid; every producer
healer ships (``healer emit``, the HTTP alert and remote-write receivers) keys
its records with :func:`partition_key`.

:func:`plan_batch` is the ingest stage's whole rule for one batch of input
records: parse each record, route each signal to its targets (routes of a
metric series are computed once and remembered), pack the signals of each
destination ``signals`` partition into one :class:`healer.wire.SignalBatch`,
and say what to audit: one ``event.received`` per alert, one ``input.batch``
per (metrics partition, contiguous run of offsets) with a digest of the raw
records, and an ``event.rejected`` plus a dead letter per bad record.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from healer.audit import AuditEntry, entry_id, for_event
from healer.engine import Route, route
from healer.index import PolicySet
from healer.models import (
    Alert,
    AlertmanagerPayload,
    EventRef,
    MetricSample,
    Signal,
    alert_signal,
    metric_signal,
)
from healer.timeutil import epoch_of, format_time
from healer.wire import (
    RECORD_LIMIT,
    SignalBatch,
    WireAlert,
    WireRoute,
    WireSample,
    WireSignal,
    signal_size,
)

MAX_RECORD_BYTES = 1024 * 1024
MAX_SAMPLES_PER_RECORD = 10_000
DEADLETTER_RAW_MAX = 128 * 1024  # bytes of a rejected input kept in its dead letter (6x JSON-escaped < 1 MB)
ROUTE_CACHE = 200_000  # metric series whose routes are remembered
# raw input bytes one ingest batch plans at once: its samples are decoded together (about three
# times their JSON size in Python objects), so a backlog of batched records stays bounded
BATCH_BYTES = 4 * 1024 * 1024

K = TypeVar("K")
R = TypeVar("R")
SIGNAL_LIMIT = RECORD_LIMIT - 16 * 1024  # the largest signal a signals record can carry with its envelope
LARGE_INPUT = SIGNAL_LIMIT // 2  # inputs above this have their signals' sizes checked


@dataclass(frozen=True)
class Rejected:
    reason: str


# ------------------------------------------------------------------ parsing

_samples = msgspec.json.Decoder(MetricSample | list[MetricSample])
_any = msgspec.json.Decoder()


def _schema_error(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    return f"schema: {text[:300]}"


def _check_size(raw: bytes | None, max_bytes: int) -> Rejected | None:
    if raw is None:
        return Rejected("empty record (no value)")
    if len(raw) > max_bytes:
        return Rejected(f"oversize: {len(raw)} bytes > {max_bytes}")
    return None


def decode_json(raw: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> Any | Rejected:
    """Any JSON document (UTF-8, size-checked), or why not."""
    bad = _check_size(raw, max_bytes)
    if bad is not None:
        return bad
    assert raw is not None
    try:
        return _any.decode(raw)
    except RecursionError:
        return Rejected("JSON nested too deeply")
    except msgspec.DecodeError as exc:
        return _not_json(raw, exc)


def _not_json(raw: bytes, exc: Exception) -> Rejected:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return Rejected(f"not UTF-8: {u.reason} at byte {u.start}")
    return Rejected(f"not JSON: {str(exc)[:200]}")


def parse_alerts(data: Any) -> list[Alert] | Rejected:
    """An Alertmanager v4 payload (split into alerts) or one alert object."""
    if not isinstance(data, dict):
        return Rejected(f"schema: expected a JSON object, got {type(data).__name__}")
    try:
        if "alerts" in data or "version" in data:
            version = data.get("version")
            if version != "4":
                return Rejected(f"unsupported Alertmanager payload version {str(version)[:20]!r} (want \"4\")")
            alerts = msgspec.convert(data, AlertmanagerPayload).alerts
        else:
            alerts = [msgspec.convert(data, Alert)]
        for a in alerts:  # times are checked here, not at decision time
            a.check_times()
        return alerts
    except msgspec.ValidationError as exc:
        return Rejected(_schema_error(exc))
    except ValueError as exc:
        return Rejected(f"schema: {str(exc)[:300]}")
    except RecursionError:
        return Rejected("JSON nested too deeply")


def parse_samples(data: Any) -> list[MetricSample] | Rejected:
    """One metric sample or a JSON array of samples (already decoded JSON)."""
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_SAMPLES_PER_RECORD:
        return Rejected(f"oversize: {len(items)} samples > {MAX_SAMPLES_PER_RECORD}")
    if not items:
        return Rejected("schema: empty array of samples")
    try:
        out = [msgspec.convert(item, MetricSample) for item in items]
    except msgspec.ValidationError as exc:
        return Rejected(_schema_error(exc))
    except RecursionError:
        return Rejected("JSON nested too deeply")
    return _checked_samples(out)


def decode_samples(raw: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> list[MetricSample] | Rejected:
    """The hot path: bytes of a metrics record -> validated samples in one decode."""
    bad = _check_size(raw, max_bytes)
    if bad is not None:
        return bad
    assert raw is not None
    try:
        got = _samples.decode(raw)
    except RecursionError:
        return Rejected("JSON nested too deeply")
    except msgspec.ValidationError as exc:
        return Rejected(_schema_error(exc))
    except msgspec.DecodeError as exc:
        return _not_json(raw, exc)
    items = got if isinstance(got, list) else [got]
    if len(items) > MAX_SAMPLES_PER_RECORD:
        return Rejected(f"oversize: {len(items)} samples > {MAX_SAMPLES_PER_RECORD}")
    if not items:
        return Rejected("schema: empty array of samples")
    return _checked_samples(items)


def _checked_samples(items: list[MetricSample]) -> list[MetricSample] | Rejected:
    for i, s in enumerate(items):
        try:
            v = s.number()
        except ValueError as exc:
            return Rejected(f"schema: sample {i}: {exc}")
        if not math.isfinite(v):
            return Rejected(f"schema: sample {i}: value must be a finite number")
        if isinstance(s.value, str):
            s.value = v
        if s.timestamp is not None:
            try:
                s.timestamp = epoch_of(s.timestamp)
            except (ValueError, TypeError, OverflowError) as exc:
                return Rejected(f"schema: sample {i}: timestamp: {str(exc)[:200]}")
    return items


def signals_from_alerts(alerts: list[Alert], time: datetime, event_base: str) -> list[Signal]:
    if len(alerts) == 1:
        return [alert_signal(alerts[0], time, event_base)]
    return [alert_signal(a, time, f"{event_base}#{i}") for i, a in enumerate(alerts)]


def signals_from_samples(samples: list[MetricSample], time: datetime, event_base: str) -> list[Signal]:
    t = time.timestamp()
    if len(samples) == 1:
        return [metric_signal(samples[0], t, event_base)]
    return [metric_signal(s, t, f"{event_base}#{i}") for i, s in enumerate(samples)]


def parse_record(
    kind: str, raw: bytes | None, time: datetime, event_base: str, max_bytes: int = MAX_RECORD_BYTES
) -> list[Signal] | Rejected:
    """Bytes from the alerts or metrics topic -> signals.

    ``time`` is the record's time: an alert's event time, a sample's when it has no
    ``timestamp`` (docs/design.md, "Event ids and event time"). Never raises on
    input: whatever cannot become a signal is a Rejected with a reason.
    """
    try:
        if kind == "alerts":
            data = decode_json(raw, max_bytes)
            if isinstance(data, Rejected):
                return data
            alerts = parse_alerts(data)
            return alerts if isinstance(alerts, Rejected) else signals_from_alerts(alerts, time, event_base)
        samples = decode_samples(raw, max_bytes)
        return samples if isinstance(samples, Rejected) else signals_from_samples(samples, time, event_base)
    except (ValueError, TypeError, OverflowError, OSError, RecursionError) as exc:
        return Rejected(f"invalid: {type(exc).__name__}: {str(exc)[:200]}")


# Labels that usually name the target of an alert or sample, most specific
# workload first. Producers healer ships key records by them so that one
# target's records share an input partition (docs/architecture.md).
TARGET_HINT_LABELS = ("deployment", "statefulset", "service", "httproute", "model", "node", "pod")


def partition_key(labels: dict[str, str]) -> bytes:
    """Kafka key for an input record: namespace + the first workload-like label."""
    ns = labels.get("namespace", "")
    for name in TARGET_HINT_LABELS:
        if labels.get(name):
            return f"{ns}/{name}={labels[name]}".encode()
    return (f"{ns}/alertname={labels.get('alertname', '')}").encode()


# ------------------------------------------------------------------ batch planning


@dataclass(frozen=True)
class InputRecord:
    """One record of an input topic, as the ingest stage got it."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None  # Kafka record time, epoch seconds
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class PlannedRoute:
    """A route with what a batch needs of it: its wire form and signals partition."""

    route: Route
    wire: WireRoute
    partition: int
    ident: tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]


class Router:
    """``engine.route`` for the ingest stage, with the routes of metric series remembered.

    A series (metric name + label set, in the order the producer wrote the
    labels) routes the same way every time: the policies are fixed for the
    worker's life. Alerts are routed afresh (their templates may use
    annotations, and they are few).
    """

    def __init__(self, policies: PolicySet, partition_of: Callable[[str], int],
                 capacity: int = ROUTE_CACHE) -> None:
        self.policies = policies
        self.partition_of = partition_of
        self.capacity = capacity
        self._series: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], tuple[PlannedRoute, ...]] = OrderedDict()

    def _plan(self, routes: list[Route]) -> tuple[PlannedRoute, ...]:
        out = []
        for rt in routes:
            target = rt.target.brief() if rt.target is not None else None
            wire = WireRoute(rt.key, target, list(rt.policies), [(a, b) for a, b in rt.failures])
            out.append(PlannedRoute(rt, wire, self.partition_of(rt.key), (rt.key, rt.policies, rt.failures)))
        return tuple(out)

    def for_signal(self, sig: Signal) -> tuple[PlannedRoute, ...]:
        return self._plan(route(sig, self.policies))

    def cached(self, name: str, labels: dict[str, str]) -> tuple[PlannedRoute, ...] | None:
        return self._series.get((name, tuple(labels.items())))

    def learn(self, sig: Signal) -> tuple[PlannedRoute, ...]:
        """Route a sample's series once; later samples of it use :meth:`cached`."""
        got = self._plan(route(sig, self.policies))
        self._series[(sig.name or "", tuple(sig.labels.items()))] = got
        if len(self._series) > self.capacity:
            self._series.popitem(last=False)
        return got


class _BatchBuilder:
    """The signals of one destination partition, with their routes and sources numbered."""

    def __init__(self, at: float) -> None:
        self.batch = SignalBatch(sources=[], routes=[], signals=[], at=at)
        self._routes: dict[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], int] = {}
        self._sources: dict[str, int] = {}

    def source(self, name: str) -> int:
        got = self._sources.get(name)
        if got is None:
            got = self._sources[name] = len(self.batch.sources)
            self.batch.sources.append(name)
        return got

    def route(self, pr: PlannedRoute) -> int:
        got = self._routes.get(pr.ident)
        if got is None:
            got = self._routes[pr.ident] = len(self.batch.routes)
            self.batch.routes.append(pr.wire)
        return got


@dataclass
class IngestPlan:
    """What the ingest stage sends for one batch."""

    signals: dict[int, SignalBatch] = field(default_factory=dict)  # signals partition -> batch
    audit: list[AuditEntry] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    received: int = 0  # records that parsed
    rejected: int = 0
    signal_count: int = 0


def dead_letter(rec: InputRecord, reason: str, now: datetime) -> dict[str, Any]:
    """The dead-letter record of a rejected input: it always fits in one record.

    An input near the broker's size limit plus the envelope (and JSON escaping)
    would not, and would fail ingest on every replay: the head is kept and the
    full length is said.
    """
    raw = rec.value or b""
    kept = raw[:DEADLETTER_RAW_MAX]
    dl: dict[str, Any] = {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "error": reason,
        "raw": None,
        "raw_base64": None,
        "raw_bytes": len(raw),
        "raw_truncated": len(kept) < len(raw),
        "time": format_time(now),
    }
    if kept:
        try:
            dl["raw"] = kept.decode("utf-8")
        except UnicodeDecodeError:
            dl["raw_base64"] = base64.b64encode(kept).decode()
    return dl


def records_digest(values: Iterable[bytes | None]) -> str:
    """SHA-256 over raw record values in offset order, each preceded by its length
    (8 bytes, big-endian; 2**64-1 for a record without a value), so that record
    boundaries are part of what is hashed. ``healer audit verify --inputs``
    recomputes it from the topic."""
    h = hashlib.sha256()
    for v in values:
        if v is None:
            h.update(b"\xff" * 8)
        else:
            h.update(len(v).to_bytes(8, "big"))
            h.update(v)
    return h.hexdigest()


def input_batch_entry(topic: str, partition: int, records: Sequence[InputRecord], rejected: int,
                      samples: int, now: datetime) -> AuditEntry:
    """``input.batch``: a contiguous run of one metrics partition, summarised."""
    first, last = records[0].offset, records[-1].offset
    eid = f"{topic}:{partition}:{first}-{last}"
    return AuditEntry(
        id=entry_id("input.batch", topic, partition, first, last),
        time=format_time(now),
        kind="input.batch",
        event=EventRef(id=eid),
        detail={
            "topic": topic, "partition": partition, "first_offset": first, "last_offset": last,
            "count": len(records), "samples": samples, "rejected": rejected,
            "sha256": records_digest(r.value for r in records),
        },
    )


def chunks(
    fetched: dict[K, list[R]], size: Callable[[R], int], max_bytes: int = BATCH_BYTES,
    whole: frozenset[K] = frozenset(),
) -> list[dict[K, list[R]]]:
    """Cut what the consumer fetched into batches of at most ``max_bytes`` (by ``size``),
    each partition's records in order across the batches; a batch holds at least one record.
    The partitions in ``whole`` (a replay that must be batched exactly as before) are never
    cut and come first."""
    out: list[dict[K, list[R]]] = [{}]
    used = 0
    for key in [k for k in fetched if k in whole]:
        out[0][key] = fetched[key]
        used += sum(size(r) for r in fetched[key])
    for key, recs in fetched.items():
        if key in whole:
            continue
        for r in recs:
            n = size(r)
            if used and used + n > max_bytes:
                out.append({})
                used = 0
            out[-1].setdefault(key, []).append(r)
            used += n
    return [c for c in out if c]


def plan_batch(
    kind: str,
    records: Sequence[InputRecord],
    router: Router,
    now: datetime,
    max_bytes: int = MAX_RECORD_BYTES,
) -> IngestPlan:
    """The ingest stage's rule for one batch of ``alerts`` or ``metrics`` records."""
    plan = IngestPlan()
    at = now.timestamp()
    builders: dict[int, _BatchBuilder] = {}

    def builder(partition: int) -> _BatchBuilder:
        b = builders.get(partition)
        if b is None:
            b = builders[partition] = _BatchBuilder(at)
        return b

    # per metrics partition: (record, rejected?, samples) in arrival order
    seen: dict[tuple[str, int], list[tuple[InputRecord, bool, int]]] = {}
    for rec in records:
        source = f"{rec.topic}:{rec.partition}"
        base = f"{source}:{rec.offset}"
        rtime = rec.timestamp if rec.timestamp else at
        if kind == "metrics":
            tally = seen.setdefault((rec.topic, rec.partition), [])
            samples = decode_samples(rec.value, max_bytes)
            if isinstance(samples, Rejected):
                tally.append((rec, True, 0))
                _reject(plan, rec, base, samples.reason, now)
                continue
            tally.append((rec, False, len(samples)))
            single = len(samples) == 1
            staged: list[tuple[_BatchBuilder, WireSignal]] = []
            for i, s in enumerate(samples):
                ts = s.timestamp
                t = rtime if ts is None else float(ts)
                value = float(s.value)  # _checked_samples made it a float
                planned = router.cached(s.name, s.labels)
                if planned is None:
                    planned = router.learn(Signal(kind="metric", t=t, event_id=base, labels=s.labels,
                                                  name=s.name, value=value))
                for pr in planned:
                    b = builder(pr.partition)
                    staged.append((b, WireSample(b.route(pr), b.source(source), rec.offset,
                                                 -1 if single else i, t, s.name, value, s.labels)))
            if not _commit(plan, staged, rec, base, now):
                tally[-1] = (rec, True, 0)
            continue
        sigs = parse_record("alerts", rec.value, datetime.fromtimestamp(rtime, tz=UTC), base, max_bytes)
        if isinstance(sigs, Rejected):
            _reject(plan, rec, base, sigs.reason, now)
            continue
        staged = []
        received = []
        for i, sig in enumerate(sigs):
            planned = router.for_signal(sig)
            received.append(for_event(
                "event.received", sig.ref, now,
                detail={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                        "kind": "alert", "routes": len(planned)},
            ))
            starts = sig.starts_at.timestamp() if sig.starts_at is not None else None
            for pr in planned:
                b = builder(pr.partition)
                staged.append((b, WireAlert(
                    b.route(pr), b.source(source), rec.offset, -1 if len(sigs) == 1 else i, sig.t,
                    sig.labels, sig.annotations, sig.status or "firing", sig.fingerprint or "", starts)))
        if _commit(plan, staged, rec, base, now):
            plan.audit += received
    for (topic, partition), tally in seen.items():
        for run in _runs(tally):
            plan.audit.append(input_batch_entry(
                topic, partition, [r for r, _, _ in run], sum(1 for _, bad, _ in run if bad),
                sum(n for _, _, n in run), now))
    plan.signals = {p: b.batch for p, b in builders.items() if b.batch.signals}
    return plan


def _runs(tally: list[tuple[InputRecord, bool, int]]) -> list[list[tuple[InputRecord, bool, int]]]:
    """One partition's records split into runs of contiguous offsets (sorted, deduplicated:
    the gap guard may hand a record over twice)."""
    by_offset = {t[0].offset: t for t in tally}
    runs: list[list[tuple[InputRecord, bool, int]]] = []
    for off in sorted(by_offset):
        if runs and runs[-1][-1][0].offset == off - 1:
            runs[-1].append(by_offset[off])
        else:
            runs.append([by_offset[off]])
    return runs


def _commit(plan: IngestPlan, staged: list[tuple[_BatchBuilder, WireSignal]], rec: InputRecord,
            base: str, now: datetime) -> bool:
    """Add one record's signals to their batches, unless one of them could not travel:
    a signal larger than an internal record (possible only for inputs near the size
    limit) would fail the batch on every replay, so the record is rejected instead."""
    if len(rec.value or b"") > LARGE_INPUT:
        worst = max((signal_size(w) for _, w in staged), default=0)
        if worst > SIGNAL_LIMIT:
            _reject(plan, rec, base, f"oversize: a signal of this record is {worst} bytes on the "
                                     f"signals topic (limit {SIGNAL_LIMIT}); shorten its labels", now)
            return False
    for b, w in staged:
        b.batch.signals.append(w)
    plan.signal_count += len(staged)
    plan.received += 1
    return True


def _reject(plan: IngestPlan, rec: InputRecord, base: str, reason: str, now: datetime) -> None:
    plan.rejected += 1
    plan.deadletters.append((rec.key, dead_letter(rec, reason, now)))
    plan.audit.append(for_event(
        "event.rejected", EventRef(id=base), now, reason=reason,
        detail={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                "bytes": len(rec.value or b"")},
    ))
