"""Parse raw input records into signals, or say exactly why not.

Pure: bytes in, alerts/samples or a :class:`Rejected` out. The ingest agent
sends rejections to the dead-letter topic and audits them; the replay harness
and ``healer emit`` use the same parsers, so live and offline agree on what is
valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from healer.models import (
    Alert,
    AlertmanagerPayload,
    MetricSample,
    Signal,
    alert_signal,
    metric_signal,
)

MAX_RECORD_BYTES = 1024 * 1024
MAX_SAMPLES_PER_RECORD = 10_000


@dataclass(frozen=True)
class Rejected:
    reason: str


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(x) for x in e["loc"] if not (isinstance(x, str) and "[" in x))
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "schema: " + "; ".join(parts) + more


def decode_json(raw: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> Any | Rejected:
    if raw is None:
        return Rejected("empty record (no value)")
    if len(raw) > max_bytes:
        return Rejected(f"oversize: {len(raw)} bytes > {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(f"not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        return json.loads(text)
    except RecursionError:
        return Rejected("JSON nested too deeply")
    except ValueError as exc:
        return Rejected(f"not JSON: {exc}")


def parse_alerts(data: Any) -> list[Alert] | Rejected:
    """An Alertmanager v4 payload (split into alerts) or one alert object."""
    if not isinstance(data, dict):
        return Rejected(f"schema: expected a JSON object, got {type(data).__name__}")
    try:
        if "alerts" in data or "version" in data:
            version = data.get("version")
            if version != "4":
                return Rejected(f"unsupported Alertmanager payload version {str(version)[:20]!r} (want \"4\")")
            return AlertmanagerPayload.model_validate(data).alerts
        return [Alert.model_validate(data)]
    except ValidationError as exc:
        return Rejected(_first_error(exc))
    except RecursionError:
        return Rejected("JSON nested too deeply")


def parse_samples(data: Any) -> list[MetricSample] | Rejected:
    """One metric sample or a JSON array of samples."""
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_SAMPLES_PER_RECORD:
        return Rejected(f"oversize: {len(items)} samples > {MAX_SAMPLES_PER_RECORD}")
    if not items:
        return Rejected("schema: empty array of samples")
    out = []
    try:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return Rejected(f"schema: sample {i} is not an object")
            out.append(MetricSample.model_validate(item))
    except ValidationError as exc:
        return Rejected(_first_error(exc))
    except RecursionError:
        return Rejected("JSON nested too deeply")
    return out


def signals_from_alerts(alerts: list[Alert], time: datetime, event_base: str) -> list[Signal]:
    if len(alerts) == 1:
        return [alert_signal(alerts[0], time, event_base)]
    return [alert_signal(a, time, f"{event_base}#{i}") for i, a in enumerate(alerts)]


def signals_from_samples(samples: list[MetricSample], time: datetime, event_base: str) -> list[Signal]:
    if len(samples) == 1:
        return [metric_signal(samples[0], time, event_base)]
    return [metric_signal(s, time, f"{event_base}#{i}") for i, s in enumerate(samples)]


def parse_record(
    kind: str, raw: bytes | None, time: datetime, event_base: str, max_bytes: int = MAX_RECORD_BYTES
) -> list[Signal] | Rejected:
    """Bytes from the alerts or metrics topic -> signals (event time rules of DESIGN.md).

    Never raises on input: whatever cannot become a signal is a Rejected with a reason.
    """
    try:
        return _parse_record(kind, raw, time, event_base, max_bytes)
    except (ValueError, TypeError, OverflowError, OSError, RecursionError) as exc:
        return Rejected(f"invalid: {type(exc).__name__}: {str(exc)[:200]}")


def _parse_record(
    kind: str, raw: bytes | None, time: datetime, event_base: str, max_bytes: int
) -> list[Signal] | Rejected:
    data = decode_json(raw, max_bytes)
    if isinstance(data, Rejected):
        return data
    if kind == "alerts":
        alerts = parse_alerts(data)
        if isinstance(alerts, Rejected):
            return alerts
        return signals_from_alerts(alerts, time, event_base)
    samples = parse_samples(data)
    if isinstance(samples, Rejected):
        return samples
    return signals_from_samples(samples, time, event_base)


# Labels that usually name the target of an alert or sample, most specific
# workload first. Producers healer ships key records by them so that one
# target's records share an input partition (see docs/streaming.md).
TARGET_HINT_LABELS = ("deployment", "statefulset", "service", "httproute", "model", "node", "pod")


def partition_key(labels: dict[str, str]) -> bytes:
    """Kafka key for an input record: namespace + the first workload-like label."""
    ns = labels.get("namespace", "")
    for name in TARGET_HINT_LABELS:
        if labels.get(name):
            return f"{ns}/{name}={labels[name]}".encode()
    return (f"{ns}/alertname={labels.get('alertname', '')}").encode()
