"""Prometheus metrics of one worker, in a registry of its own (no global state).

``HealerApp`` owns a :class:`Metrics`; the stages call its helpers (events
in/rejected/duplicate, decisions, action outcomes and durations,
alert-to-action latency); ``streams.remote_write`` counts remote-write samples by
outcome; ``streams.http`` serves ``GET /metrics`` and calls
:meth:`Metrics.refresh` first, which samples the gauges that are read at
scrape time (consumer lag, pending approvals, readiness) from anything that
offers :class:`Observed` (the worker does). docs/metrics.md lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from healer.remote_write import OUTCOMES

if TYPE_CHECKING:
    from healer.decider import DecideOutputs


class Observed(Protocol):
    """What a scrape reads from the worker."""

    def readiness(self) -> dict[str, Any]: ...

    def pending_count(self) -> int: ...

    async def consumer_lag(self) -> dict[tuple[str, int], int]: ...

log = logging.getLogger("healer.metrics")

# seconds; actions range from a webhook call to a drain with verification
ACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# seconds from the input record to the queued action (decision path only)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LAG_SAMPLE_TIMEOUT = 2.0
# healer.remote_write's outcomes, and "unavailable": accepted but not acked by the broker (503)
REMOTE_WRITE_OUTCOMES = (*OUTCOMES, "unavailable")


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
        self.audit_foreign = Counter(
            "healer_audit_foreign_records", "Records found in an audit chain's tail that no sealer wrote "
            "(forged or foreign), per chain, each time a sealer resumes the chain", ["chain"], registry=r,
        )
        self.stream_gaps = Counter(
            "healer_stream_gaps", "Ranges of records a stage was not handed by its stream and read "
            "from the broker directly (streams.gaps)", ["topic"], registry=r,
        )
        self.stream_gap_records = Counter(
            "healer_stream_gap_records", "Records read back by the gap guard", ["topic"], registry=r,
        )
        self.remote_write_samples = Counter(
            "healer_remote_write_samples", "Samples received on POST /api/v1/write by outcome "
            "(accepted, or why they were dropped)", ["outcome"], registry=r,
        )
        for outcome in REMOTE_WRITE_OUTCOMES:
            self.remote_write_samples.labels(outcome=outcome)
        self.remote_write_records = Counter(
            "healer_remote_write_records", "Records the remote-write receiver produced to {app}.metrics",
            registry=r,
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

    def events_n(self, topic: str, outcome: str, n: int) -> None:
        if n:
            self.events.labels(topic=topic, outcome=outcome).inc(n)

    def decided(self, out: DecideOutputs, now: datetime) -> None:
        """The counters of one decide batch."""
        for sig in out.duplicates:
            self.event(f"{sig.kind}s", "duplicate")
        for d in out.decisions:
            self.decision(d.policy, d.decision, d.reason)
        t_now = now.timestamp()
        for kind, t in out.queued:
            if kind == "alert":
                self.alert_to_action.observe(max(t_now - t, 0.0))

    def foreign_audit(self, chain: int, records: int) -> None:
        self.audit_foreign.labels(chain=str(chain)).inc(records)

    def gap(self, topic: str, records: int) -> None:
        self.stream_gaps.labels(topic=topic).inc()
        self.stream_gap_records.labels(topic=topic).inc(records)

    def remote_write(self, counts: Mapping[str, int], records: int) -> None:
        """One remote-write request's samples by outcome and the records it produced."""
        for outcome, n in counts.items():
            if n:
                self.remote_write_samples.labels(outcome=outcome).inc(n)
        self.remote_write_records.inc(records)

    def decision(self, policy: str, decision: str, reason: str | None) -> None:
        self.decisions.labels(policy=policy, decision=decision, reason=reason or "").inc()

    def action_done(self, use: str, outcome: str, seconds: float) -> None:
        self.actions.labels(use=use, outcome=outcome).inc()
        self.action_duration.labels(use=use).observe(max(seconds, 0.0))

    # ------------------------------------------------------------ scrape

    async def refresh(self, healer: Observed) -> None:
        """Sample the scrape-time gauges from the running worker."""
        ready = False
        try:
            ready = bool(healer.readiness()["ready"])
        except Exception:  # not started yet: not ready
            ready = False
        self.ready.set(1 if ready else 0)
        self.pending_approvals.set(healer.pending_count())
        try:
            lags = await asyncio.wait_for(healer.consumer_lag(), timeout=LAG_SAMPLE_TIMEOUT)
        except Exception as exc:  # consumer not started / rebalancing: keep the last sample
            log.debug("consumer lag not sampled: %r", exc)
            return
        self.consumer_lag.clear()  # partitions move between workers on rebalance
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
