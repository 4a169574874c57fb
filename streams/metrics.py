"""Prometheus metrics of one worker, in a registry of its own (no global state).

``HealerApp`` owns a :class:`Metrics` and calls its helpers from the agents
(events in/rejected/duplicate, decisions, action outcomes and durations,
alert-to-action latency); ``streams.http`` serves ``GET /metrics`` and calls
:meth:`Metrics.refresh` first, which samples the gauges that are read at
scrape time (consumer lag, pending approvals, readiness). docs/metrics.md
lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from streams.app import HealerApp

log = logging.getLogger("healer.metrics")

# seconds; actions range from a webhook call to a drain with verification
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# seconds from the input record to the queued action (decision path only)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LAG_SAMPLE_TIMEOUT = 2.0


class Metrics:
    """The metric families and the one-line helpers the agents call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "healer_events", "Input records by input topic and outcome",
            ["topic", "outcome"], registry=r,
        )
        self.decisions = Counter(
            "healer_decisions", "Policy decisions by policy, decision and reason",
            ["policy", "decision", "reason"], registry=r,
        )
        self.actions = Counter(
            "healer_actions", "Finished actions by catalog name and outcome",
            ["use", "outcome"], registry=r,
        )
        self.action_duration = Histogram(
            "healer_action_duration_seconds", "Action run time: snapshot to verified/failed/rolled back",
            ["use"], buckets=ACTION_BUCKETS, registry=r,
        )
        self.alert_to_action = Histogram(
            "healer_alert_to_action_seconds",
            "From the input alert record's Kafka timestamp to its action being queued",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.consumer_lag = Gauge(
            "healer_consumer_lag", "Records not yet consumed: highwater minus position, per partition",
            ["topic", "partition"], registry=r,
        )
        self.pending_approvals = Gauge(
            "healer_pending_approvals", "Actions waiting for approval on this worker's partitions",
            registry=r,
        )
        self.ready = Gauge("healer_ready", "1 when the worker is ready (see /readyz)", registry=r)
        self.stream_gaps = Counter(
            "healer_stream_gaps", "Ranges of records a stage was not handed by its stream and read "
            "from the broker directly (streams.gaps)", ["topic"], registry=r,
        )
        self.stream_gap_records = Counter(
            "healer_stream_gap_records", "Records read back by the gap guard", ["topic"], registry=r,
        )
        self.http_requests = Counter(
            "healer_http_requests", "HTTP API requests by route and status code",
            ["route", "code"], registry=r,
        )
        self.http_connections_closed = Counter(
            "healer_http_connections_closed", "HTTP connections the worker refused (reason limit) or "
            "closed before a request arrived (reason header_timeout); streams.listener",
            ["reason"], registry=r,
        )

    # ------------------------------------------------------------ agent helpers

    def event(self, topic: str, outcome: str) -> None:
        """``outcome``: received | rejected | duplicate; ``topic``: alerts | metrics."""
        self.events.labels(topic=topic, outcome=outcome).inc()

    def gap(self, topic: str, records: int) -> None:
        self.stream_gaps.labels(topic=topic).inc()
        self.stream_gap_records.labels(topic=topic).inc(records)

    def decision(self, policy: str, decision: str, reason: str | None) -> None:
        self.decisions.labels(policy=policy, decision=decision, reason=reason or "").inc()

    def action_done(self, use: str, outcome: str, seconds: float) -> None:
        self.actions.labels(use=use, outcome=outcome).inc()
        self.action_duration.labels(use=use).observe(max(seconds, 0.0))

    def action_queued(self, kind: str, input_time: datetime, now: datetime) -> None:
        """An alert's action was queued; metric samples carry their own (scrape) time: skipped."""
        if kind == "alert":
            self.alert_to_action.observe(max((now - input_time).total_seconds(), 0.0))

    # ------------------------------------------------------------ scrape

    async def refresh(self, healer: HealerApp) -> None:
        """Sample the scrape-time gauges from the running worker."""
        ready = False
        try:
            ready = bool(healer.readiness()["ready"])
        except Exception:  # not started yet: not ready
            ready = False
        self.ready.set(1 if ready else 0)
        self.pending_approvals.set(_pending_count(healer))
        try:
            lags = await asyncio.wait_for(_consumer_lag(healer), timeout=LAG_SAMPLE_TIMEOUT)
        except Exception as exc:  # consumer not started / rebalancing: keep the last sample
            log.debug("consumer lag not sampled: %r", exc)
            return
        self.consumer_lag.clear()  # partitions move between workers on rebalance
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _pending_count(healer: HealerApp) -> int:
    try:
        return sum(
            1 for v in list(healer.pending.values()) if isinstance(v, dict) and v.get("state") == "pending"
        )
    except Exception:  # the table is not readable before the worker started
        return 0


async def _consumer_lag(healer: HealerApp) -> dict[tuple[str, int], int]:
    consumer: Any = healer.app.consumer
    if consumer is None:
        return {}
    out: dict[tuple[str, int], int] = {}
    for tp in sorted(consumer.assignment()):
        high = consumer.highwater(tp)
        if high is None:
            continue  # nothing fetched from this partition yet
        pos = await consumer.position(tp)
        if pos is None:
            continue
        out[(tp.topic, tp.partition)] = max(int(high) - int(pos), 0)
    return out
