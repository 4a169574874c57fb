"""The healer worker's Faust app: topics, tables, and the stages wired to them.

Pipeline (every arrow is a Kafka topic; ``{app}`` is the app id):

    {app}.alerts / {app}.metrics --ingest--> {app}.signals (a batch per target partition)
    {app}.signals --decide--> {app}.actions (keyed by target), {app}.approval-requests
    {app}.approval-requests + {app}.approvals --approvals--> {app}.actions
    {app}.actions --execute--> executors (actions.runner)
    every stage --> {app}.audit-log (a batch per audit partition) --seal--> {app}.audit
    bad input --> {app}.deadletter (+ event.rejected in the audit)

The stages' bodies are in ``streams/stages`` and their rules in the pure core;
this module only builds the Faust app, its topics and tables, and connects the
stages, timers and rebalance callbacks. Exactly-once effect without Kafka
transactions: see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from typing import Any

import faust

from actions.registry import ExecutorRegistry
from actions.runner import RetryPolicy, Runner
from healer.index import PolicySet
from healer.keys import Keyring
from healer.settings import Settings
from streams import keyfile
from streams.client import security
from streams.faust_fixes import install as install_faust_fixes
from streams.gaps import Gap, GapGuard, start_uncommitted_at_log_start
from streams.metrics import Metrics
from streams.outbox import AuditWriter, Outbox
from streams.sealer import Sealer
from streams.stages.approvals import ApprovalsStage
from streams.stages.base import Refusals, StageContext, now
from streams.stages.decide import DecideStage
from streams.stages.execute import ExecuteStage
from streams.stages.ingest import IngestStage
from streams.topics import TABLES, TopicNames, configs, layout

log = logging.getLogger("healer.worker")


def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        return None


_MALLOC_TRIM = _malloc_trim()
STREAM_BUFFER = 256


def _kafka_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def _credentials(settings: Settings) -> Any:
    """Faust's broker credentials from the TLS/SASL settings (None for PLAINTEXT)."""
    sec = settings.kafka_security()
    if sec["security_protocol"] == "PLAINTEXT":
        return None
    ctx = security().get("ssl_context")
    if sec["security_protocol"].startswith("SASL"):
        return faust.SASLCredentials(
            username=sec["sasl_plain_username"], password=sec["sasl_plain_password"],
            ssl_context=ctx, mechanism=sec["sasl_mechanism"],
        )
    return faust.SSLCredentials(ctx)


class HealerApp:
    """Builds the Faust app for one worker process; ``streams.worker`` runs it."""

    TABLES = TABLES

    def __init__(
        self,
        settings: Settings,
        policies: PolicySet,
        registry: ExecutorRegistry,
        retry: RetryPolicy | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.names = TopicNames(settings.app_id)
        self.bootstrap = settings.bootstrap()
        self.registry = registry
        self.broker_ok = False
        self.started_at = now()
        self.metrics = Metrics()
        self.partition_counts: dict[str, int] = {}  # read from the cluster by streams.worker
        parts = settings.topic_partitions
        state_dir = settings.state_dir()
        state_dir.mkdir(parents=True, exist_ok=True)

        self.app = faust.App(
            settings.app_id,
            broker_credentials=_credentials(settings),
            broker=_kafka_url(self.bootstrap),
            store="memory://",
            autodiscover=False,
            datadir=str(state_dir),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=parts,
            topic_replication_factor=settings.topic_replicas,
            web_enabled=False,
            producer_acks=-1,
            producer_linger_ms=1,  # stages send whole batches at once; linger only adds latency
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            broker_max_poll_interval=max(300.0, settings.action_timeout_seconds() + 60),
            stream_processing_timeout=settings.action_timeout_seconds() + 60,
            table_standby_replicas=0,
            broker_session_timeout=settings.session_timeout_seconds(),
            broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds() / 4),
            consumer_group_instance_id=settings.instance_id or None,
            stream_wait_empty=False,
            # records fetched ahead of a stage (default 4096): every internal record but an
            # action request is a batch of up to 512 KiB, so the default could hold GiBs
            stream_buffer_maxsize=STREAM_BUFFER,
        )
        n = self.names
        t = self.app.topic
        self.targets = self.app.Table("targets", default=None, partitions=parts, value_type=bytes)
        self.ledger = self.app.Table("ledger", default=None, partitions=parts)
        self.pending = self.app.Table("pending", default=None, partitions=parts)

        self.keyring = keyring if keyring is not None else keyfile.ensure(settings)
        self.sealer = Sealer(self.bootstrap, n.audit_log, n.audit, keyring=self.keyring,
                             on_foreign=self.metrics.foreign_audit)
        self.gaps = GapGuard(self.bootstrap, self._committed, self._log_start, security, self._on_gap)
        install_faust_fixes(self.gaps.floor, after_seek=self._start_uncommitted)
        self.outbox = Outbox(lambda: self.app.producer, n.audit_log, lambda: self.ctx.partitions(n.audit_log),
                             self.keyring.signing_key())
        self.ctx = StageContext(self.app, self.bootstrap, settings, policies, settings.engine(), n, self.metrics,
                                self.gaps, self.outbox, self.partition_counts, self.keyring,
                                settings.execution_rules(), registry.catalog, Refusals(settings.refusal_rule()))
        self.writer = AuditWriter(self.outbox, self.ctx.retrying)
        self.runner = Runner(registry, self.writer.submit, retry=retry, pipelined=True)

        self.ingest = IngestStage(self.ctx)
        self.decide = DecideStage(self.ctx, self.targets)
        self.approvals = ApprovalsStage(self.ctx, self.pending)
        self.execute = ExecuteStage(self.ctx, self.ledger, self.runner, self.writer)

        agent = self.app.agent
        self.app.task(self.ingest.run)  # its own consumer: streams.stages.ingest
        agent(t(n.signals, partitions=parts, internal=True), name="decide")(self.decide.agent)
        agent(t(n.approvals, n.approval_requests, partitions=parts, internal=True),
              name="approvals")(self.approvals.agent)
        agent(t(n.actions, partitions=parts, internal=True), name="execute")(self.execute.agent)
        self.app.timer(interval=5.0)(self._check_broker)
        self.app.timer(interval=10.0)(self.approvals.expire_due)
        self.app.timer(interval=5.0)(self._refusal_summaries)
        self.app.timer(interval=10.0)(self._return_free_memory)

        self.app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]
        self.app.on_partitions_assigned.connect(self._assigned)  # type: ignore[arg-type]

    async def _return_free_memory(self) -> None:
        """Give freed heap pages back to the OS (glibc ``malloc_trim``). Target rows are
        rewritten on every batch, so the heap is full of freed row-sized holes that glibc keeps
        by default; a worker's RSS then follows its churn instead of its state."""
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)

    async def _refusal_summaries(self) -> None:
        """Write the aggregated entry of a refusal window that has ended (streams.stages.base.Refusals)."""
        for entry in self.ctx.refusals.due(now()):
            await self.writer.write(entry)

    # ---------------------------------------------------------------- topics

    def topic_layout(self) -> dict[str, int]:
        return layout(self.settings.app_id, self.settings.topic_partitions)

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return configs(self.settings.app_id)

    # ---------------------------------------------------------------- rebalances

    async def _revoked(self, app: Any, revoked: Any, **kw: Any) -> None:
        self.decide.generation += 1  # a batch in flight must not write rows it may no longer own
        self.gaps.reset()
        await self.execute.on_revoked({tp.partition for tp in revoked if tp.topic == self.names.actions})
        # stop sealing (and finish in-flight writes) before another worker takes over
        await self.sealer.revoke(self._seal_partitions(revoked))

    async def _start_uncommitted(self, consumer: Any) -> None:
        """Run right after Faust's seek to the committed offsets (streams.faust_fixes): the
        partitions the group never committed start at their log start. At rebalance-complete,
        before that seek, it was undone for a partition whose only record Faust had fetched
        and dropped while the flow was stopped (a killed worker's last action request)."""
        try:
            await start_uncommitted_at_log_start(consumer, self.names.consumed())
        except Exception:  # the gap guard still reads back what this did not reach
            log.warning("could not seek uncommitted partitions to their log start", exc_info=True)

    async def _assigned(self, app: Any, assigned: Any, **kw: Any) -> None:
        await self.sealer.assign(self._seal_partitions(assigned))

    def _seal_partitions(self, tps: Any) -> set[int]:
        """The audit-log partitions this worker seals: the numbers of its ``signals``
        partitions. The group gives each signals partition to one worker at a time,
        so each chain has one writer; the sealer reads the audit-log by offset
        itself (streams.sealer), so no agent consumes it through Faust."""
        return {tp.partition for tp in tps if tp.topic == self.names.signals}

    def _committed(self, topic: str, partition: int) -> int | None:
        """The committed offset Faust sought ``topic[partition]`` to (None when unknown)."""
        try:
            consumer: Any = self.app.consumer
            off = consumer._committed_offset.get((topic, partition))
        except Exception:  # consumer not started
            return None
        return int(off) if off is not None else None

    async def _log_start(self, tps: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The first offset still in the log of each partition in ``tps``."""
        from faust.types import TP

        got = await self.app.consumer.earliest_offsets(*(TP(t, p) for t, p in tps))
        return {(tp.topic, tp.partition): int(off) for tp, off in got.items() if off is not None}

    def _on_gap(self, gap: Gap, records: int) -> None:
        self.metrics.gap(gap.topic, records)

    # ---------------------------------------------------------------- health (streams.metrics.Observed)

    async def _check_broker(self) -> None:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, **security(), request_timeout_ms=4000)
        try:
            await asyncio.wait_for(client.bootstrap(), timeout=4.5)
            self.broker_ok = True
        except Exception:
            self.broker_ok = False
        finally:
            await client.close()

    def readiness(self) -> dict[str, Any]:
        app = self.app
        try:
            assigned = bool(app.consumer.assignment())
        except Exception:
            assigned = False
        recovery = getattr(app.tables, "recovery", None)
        recovered = bool(recovery.completed.is_set()) if recovery is not None else False
        rebalancing = bool(getattr(app, "rebalancing", False))
        ingest = self.ingest.running
        return {
            "broker": self.broker_ok,
            "assigned": assigned,
            "recovered": recovered,
            "rebalancing": rebalancing,
            "ingest": ingest,
            "ready": self.broker_ok and assigned and recovered and not rebalancing and ingest,
        }

    def pending_count(self) -> int:
        return self.approvals.pending_count()

    async def consumer_lag(self) -> dict[tuple[str, int], int]:
        consumer: Any = self.app.consumer
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
        out.update(await self.ingest.lag())
        return out

    async def close(self) -> None:
        await self.writer.close()
