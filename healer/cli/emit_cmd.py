"""``healer emit FILE|-``: produce alerts or metric samples to Kafka.

Accepts one JSON document (an alert, an Alertmanager payload, a sample or an
array of them), JSON lines of those, or the replay line format of
``healer policy test`` (``{"time", "alert"|"webhook"|"metric"}``), whose
``time`` becomes the record timestamp. Records are keyed by target labels so
one target's records share a partition.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from healer.cli.common import EXIT_OK, CliError, add_kafka_options, settings_from
from healer.ingest import partition_key
from healer.timeutil import parse_time, to_millis


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("emit", help="produce JSON / JSON lines to the alerts or metrics topic")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--topic", choices=["alerts", "metrics"], help="default: from the line, else alerts")
    p.add_argument("--batch", type=int, default=500, metavar="N",
                   help="metric samples per record, per partition key (default 500; 1: a record each)")
    add_kafka_options(p)
    p.set_defaults(func=run)


def _key(topic: str, value: Any) -> bytes | None:
    if not isinstance(value, dict):
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return _key(topic, value[0])
        return None
    if topic == "alerts" and isinstance(value.get("alerts"), list) and value["alerts"]:
        first = value["alerts"][0]
        labels = first.get("labels") if isinstance(first, dict) else None
    else:
        labels = value.get("labels")
    if not isinstance(labels, dict):
        return None
    return partition_key({str(k): str(v) for k, v in labels.items()})


MAX_BATCH_BYTES = 256 * 1024  # a record of samples stays well below the 1 MiB input limit


def parse_input(text: str, topic: str | None, batch: int = 1) -> list[tuple[str, bytes | None, bytes, int | None]]:
    """(topic, key, value, timestamp_ms) per record, in input order.

    ``batch`` > 1 packs metric samples into records of up to that many samples, one record per
    partition key (the recommended producer format: docs/architecture.md, "Records inside the
    pipeline"); a sample without a ``timestamp`` gets its line's time (or none), so its event
    time is what it would have been in a record of its own. Alerts stay one record each.
    """
    stripped = text.strip()
    docs: list[Any]
    try:
        whole = json.loads(stripped) if stripped else None
        docs = [whole] if whole is not None else []
        if isinstance(whole, list) and (topic or "alerts") == "alerts":
            docs = whole  # an array of alerts: one record each
    except ValueError:
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                docs.append(json.loads(line))
            except ValueError as exc:
                raise CliError(f"line {n}: not JSON: {exc}") from exc
    out: list[tuple[str, bytes | None, Any, int | None]] = []
    for doc in docs:
        ts: int | None = None
        t = topic
        value = doc
        if isinstance(doc, dict) and "time" in doc and any(k in doc for k in ("alert", "webhook", "metric")):
            try:
                ts = to_millis(parse_time(doc["time"]))
            except (TypeError, ValueError) as exc:
                raise CliError(f"bad time {doc['time']!r}: {exc}") from exc
            k = next(k for k in ("alert", "webhook", "metric") if k in doc)
            value = doc[k]
            t = t or ("metrics" if k == "metric" else "alerts")
        t = t or "alerts"
        out.append((t, _key(t, value), value, ts))
    return _pack(out, batch)


def _pack(docs: list[tuple[str, bytes | None, Any, int | None]], batch: int) -> list[tuple[str, bytes | None, bytes, int | None]]:
    def dump(v: Any) -> bytes:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

    if batch <= 1:
        return [(t, k, dump(v), ts) for t, k, v, ts in docs]
    out: list[tuple[str, bytes | None, bytes, int | None]] = []
    open_: dict[bytes | None, tuple[list[Any], int | None, list[int]]] = {}
    for t, k, v, ts in docs:
        if t != "metrics":
            out.append((t, k, dump(v), ts))
            continue
        for sample in v if isinstance(v, list) else [v]:
            if isinstance(sample, dict) and "timestamp" not in sample and ts is not None:
                sample = {**sample, "timestamp": ts / 1000.0}
            samples, first, size = open_.setdefault(k, ([], ts, [0]))
            samples.append(sample)
            size[0] += len(dump(sample)) + 1
            if len(samples) >= batch or size[0] >= MAX_BATCH_BYTES:
                out.append(("metrics", k, dump(samples), first))
                del open_[k]
    out += [("metrics", k, dump(samples), first) for k, (samples, first, _) in open_.items()]
    return out


def run(args: argparse.Namespace) -> int:
    import asyncio

    from streams.client import BrokerUnavailable, OutRecord, produce

    settings = settings_from(args)
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from exc
    records = parse_input(text, args.topic, max(1, args.batch))
    by_topic: dict[str, list[OutRecord]] = {}
    for t, key, value, ts in records:
        by_topic.setdefault(settings.topic(t), []).append(OutRecord(key, value, ts))

    async def go() -> int:
        n = 0
        for topic, recs in by_topic.items():
            n += await produce(settings.bootstrap(), topic, recs)
        return n

    try:
        n = asyncio.run(go())
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc
    print(f"emitted {n} record(s) to {', '.join(by_topic) or 'nothing'}", file=sys.stderr)
    return EXIT_OK
