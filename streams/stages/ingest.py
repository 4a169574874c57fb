"""Ingest: ``{app}.alerts`` / ``{app}.metrics`` -> ``{app}.signals`` (+ audit, dead letters).

Per batch: the input records go to ``healer.ingest.plan_batch``; its signal
batches (one record per destination ``signals`` partition), dead letters and
audit entries (one ``{app}.audit-log`` record per audit partition) are sent
together, and the batch is acknowledged once the broker acked all of them.
Stateless: a replay re-sends the same signals (same input coordinates), which
decide skips.
"""

from __future__ import annotations

from typing import Any

from healer.ingest import IngestPlan, Router, plan_batch
from healer.partitioner import PartitionCache
from healer.wire import encode
from streams.codec import dumps
from streams.outbox import Send
from streams.stages.base import StageContext, input_record, now


class IngestStage:
    def __init__(self, ctx: StageContext, kind: str) -> None:
        self.ctx = ctx
        self.kind = kind  # "alerts" | "metrics"
        self.name = f"ingest-{kind}"
        self._router: Router | None = None

    def router(self) -> Router:
        if self._router is None:  # partition counts are known once the worker runs
            signals = self.ctx.names.signals
            self._router = Router(self.ctx.policies, PartitionCache(self.ctx.partitions(signals)))
        return self._router

    async def agent(self, stream: Any) -> None:
        ctx = self.ctx
        names = ctx.names
        metrics = ctx.metrics
        max_bytes = ctx.settings.max_record_bytes
        async for events in ctx.batches(stream, self.name):
            at = now()
            plan = plan_batch(self.kind, [input_record(e) for e in events], self.router(), at, max_bytes)
            metrics.events_n(self.kind, "received", plan.received)
            metrics.events_n(self.kind, "rejected", plan.rejected)

            async def once(plan: IngestPlan = plan) -> None:
                out = ctx.outbox
                sends: list[Send] = [out.send(names.deadletter, key, dumps(dl)) for key, dl in plan.deadletters]
                sends += [out.send(names.signals, None, encode(b), p) for p, b in plan.signals.items()]
                sends += out.audit(plan.audit)
                await out.deliver(sends)

            await ctx.retrying(self.name, once)
