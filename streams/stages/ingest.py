"""Ingest: ``{app}.alerts`` / ``{app}.metrics`` -> ``{app}.signals`` (+ audit, dead letters).

Ingest is stateless and sees every input record, so it does not go through
Faust's per-record delivery (tens of microseconds a record, more than all of
ingest's own work): it reads the input topics with a plain aiokafka consumer
in a consumer group of its own (``{app_id}-ingest``), commits offsets itself,
and hands its outputs to the worker's producer. Per batch: the records go to
``healer.ingest.plan_batch``; its signal batches (one record per destination
``signals`` partition), dead letters and audit entries are sent together;
once the broker acked all of them the batch's offsets are committed. A crash
before the commit replays the batch: the same signals (same input
coordinates), which decide skips, and the same ``event.received`` ids, which
the sealer drops.

``input.batch`` entries are exact across crashes too: before a batch's
outputs are sent, its last offset on every metrics partition is committed as
commit metadata (at the unchanged position); a replay cuts its first batch of
that partition at the same offset, so the replayed entry has the same id and
is sealed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from healer.commands import sign
from healer.ingest import IngestPlan, InputRecord, Router, chunks, plan_batch
from healer.partitioner import PartitionCache
from healer.wire import encode_signals
from streams.client import security
from streams.codec import dumps
from streams.outbox import Send
from streams.stages.base import BATCH, StageContext, now

log = logging.getLogger("healer.worker")

PLANNED = "healer:end="  # commit metadata: the last offset of the batch being sent


def group_id(app_id: str) -> str:
    """The consumer group ingest reads the input topics in (the stages' group is the app id)."""
    return f"{app_id}-ingest"


def _record(m: ConsumerRecord[bytes, bytes]) -> InputRecord:
    return InputRecord(m.topic, m.partition, m.offset, m.timestamp / 1000.0 if m.timestamp else None,
                       m.key, m.value)


def _size(m: ConsumerRecord[bytes, bytes]) -> int:
    return len(m.value or b"") + len(m.key or b"")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: IngestStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # a batch in progress finishes (and commits) before another worker may take its partitions
        async with self.stage.lock:
            for tp in revoked:
                self.stage.planned.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.stage.load_planned(set(assigned))


class IngestStage:
    name = "ingest"

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.lock = asyncio.Lock()
        self.planned: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (first, last) of an unfinished batch
        self.consumer: AIOKafkaConsumer | None = None
        self.running = False
        self._router: Router | None = None

    def router(self) -> Router:
        if self._router is None:  # partition counts are known once the worker runs
            signals = self.ctx.names.signals
            self._router = Router(self.ctx.policies, PartitionCache(self.ctx.partitions(signals)))
        return self._router

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        """The stage's task (started by streams.app when the worker starts)."""
        s, n = self.ctx.settings, self.ctx.names
        session_ms = int(s.session_timeout_seconds() * 1000)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.ctx.bootstrap, **security(), group_id=group_id(s.app_id),
            group_instance_id=f"{s.instance_id}-ingest" if s.instance_id else None,
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024, session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 4), max_poll_interval_ms=300_000,
        )
        consumer.subscribe([n.alerts, n.metrics], listener=_Rebalance(self))
        await self.ctx.retrying(f"{self.name} (starting its consumer)", consumer.start)
        self.consumer, self.running = consumer, True
        try:
            while True:
                got = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                if not got:
                    continue
                async with self.lock:
                    assigned = consumer.assignment()
                    records = {tp: msgs for tp, msgs in got.items() if tp in assigned}
                    for part, whole in self._split(records):
                        for chunk in chunks(part, _size, whole=whole):
                            await self._batch(consumer, chunk)
        finally:
            self.running = False
            with contextlib.suppress(Exception):
                await consumer.stop()

    def _split(
        self, got: dict[TopicPartition, list[Any]],
    ) -> list[tuple[dict[TopicPartition, list[Any]], frozenset[TopicPartition]]]:
        """The batch as one part, or two when a partition must first replay an unfinished
        batch exactly as it was planned (see the module docstring); with each part, the
        partitions whose records are such a replay (never cut: healer.ingest.chunks)."""
        first: dict[TopicPartition, list[Any]] = {}
        rest: dict[TopicPartition, list[Any]] = {}
        replays: set[TopicPartition] = set()
        for tp, msgs in got.items():
            plan = self.planned.pop(tp, None)
            if plan is not None and msgs and msgs[0].offset == plan[0]:
                first[tp] = [m for m in msgs if m.offset <= plan[1]]
                replays.add(tp)
                if len(first[tp]) < len(msgs):
                    rest[tp] = [m for m in msgs if m.offset > plan[1]]
            else:
                first[tp] = msgs
        parts = [(first, frozenset(replays))]
        return [*parts, (rest, frozenset())] if rest else parts

    async def _batch(self, consumer: AIOKafkaConsumer, got: dict[TopicPartition, list[Any]]) -> None:
        ctx, names = self.ctx, self.ctx.names
        at = now()
        plans = []
        for kind, topic in (("alerts", names.alerts), ("metrics", names.metrics)):
            recs = [_record(m) for tp, msgs in got.items() if tp.topic == topic for m in msgs]
            if recs:
                plans.append(plan_batch(kind, recs, self.router(), at, ctx.settings.max_record_bytes))
                ctx.metrics.events_n(kind, "received", plans[-1].received)
                ctx.metrics.events_n(kind, "rejected", plans[-1].rejected)
        metrics_tps = {tp: (msgs[0].offset, msgs[-1].offset) for tp, msgs in got.items()
                       if tp.topic == names.metrics and msgs}
        if metrics_tps:  # write ahead: where this batch ends, so a replay batches the same way
            await self._commit(consumer, {tp: (first, f"{PLANNED}{last}") for tp, (first, last) in metrics_tps.items()})

        async def once(plans: list[IngestPlan] = plans) -> None:
            await ctx.outbox.deliver(self._sends(plans))

        await ctx.retrying(self.name, once)
        await self._commit(consumer, {tp: (msgs[-1].offset + 1, "") for tp, msgs in got.items() if msgs})

    def _sends(self, plans: Iterable[IngestPlan]) -> list[Send]:
        out, names = self.ctx.outbox, self.ctx.names
        sends: list[Send] = []
        for plan in plans:
            sends += [out.send(names.deadletter, key, dumps(dl)) for key, dl in plan.deadletters]
            sends += [out.send(names.signals, None, raw, p, headers=self._sign(raw))
                      for p, b in plan.signals.items() for raw in encode_signals(b)]
            sends += out.audit(plan.audit)
        return sends

    def _sign(self, raw: bytes) -> list[tuple[str, bytes]] | None:
        key = self.ctx.keyring.signing_key()
        return sign(key, "signals", raw) if key is not None else None

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        async def once() -> None:
            try:
                await consumer.commit(offsets)
            except CommitFailedError as exc:
                # the group moved these partitions to another worker, which replays them
                log.warning("ingest: commit refused after a rebalance (%s); the new owner replays", exc)

        await self.ctx.retrying(f"{self.name} (committing)", once)

    async def load_planned(self, tps: set[TopicPartition]) -> None:
        """The unfinished batches (commit metadata) of newly assigned metrics partitions."""
        consumer = self.consumer
        metrics = [tp for tp in tps if tp.topic == self.ctx.names.metrics]
        if consumer is None or not metrics:
            return
        try:
            committed = await consumer._coordinator.fetch_committed_offsets(metrics)
        except KafkaError as exc:  # without the plan a replayed range is audited twice: visible, not lost
            log.warning("ingest: could not read the planned batch ends (%s)", exc)
            return
        for tp, meta in committed.items():
            text = getattr(meta, "metadata", "") or ""
            if text.startswith(PLANNED) and meta.offset >= 0:
                with contextlib.suppress(ValueError):
                    self.planned[tp] = (meta.offset, int(text[len(PLANNED):]))

    # ---------------------------------------------------------------- health

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet read, per assigned input partition (for the consumer lag gauge)."""
        c = self.consumer
        if c is None or not self.running:
            return {}
        out = {}
        for tp in sorted(c.assignment()):
            high = c.highwater(tp)
            if high is None:
                continue  # nothing fetched from this partition yet
            out[(tp.topic, tp.partition)] = max(int(high) - int(await c.position(tp)), 0)
        return out
