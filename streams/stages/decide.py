"""Decide: ``{app}.signals`` -> ``{app}.actions``, ``{app}.approval-requests`` (+ audit).

Per batch: decode the signal batches, run ``healer.decider.decide_batch``
over them with each target's row decoded from the ``targets`` table, send
every output and wait for the acks, then write each touched row once and
wait for those acks too, before the batch is acknowledged. A crash between the two replays the batch against the old rows, which yields
the same ids downstream (dropped there); a signal already applied is skipped
by its target's input position. A record that is not a signal batch is
audited as ``event.rejected`` and skipped.
"""

from __future__ import annotations

from typing import Any

from healer.audit import AuditEntry, for_event
from healer.commands import verify
from healer.decider import DecideOutputs, decide_batch
from healer.models import EventRef
from healer.state import GlobalState, TargetRow, decode_row, encode_row
from healer.wire import SignalBatch, WireError, decode_signals, encode
from streams.outbox import Send
from streams.stages.base import StageContext, delivery, headers_of, now, source


class DecideStage:
    name = "decide"

    def __init__(self, ctx: StageContext, targets: Any) -> None:
        self.ctx = ctx
        self.targets = targets  # Faust table: target key -> encoded TargetRow
        self.gstate = GlobalState()
        self.generation = 0  # bumped on every revocation (streams.app)

    def load(self, key: str) -> TargetRow:
        return decode_row(self.targets.get(key))

    async def agent(self, stream: Any) -> None:
        ctx = self.ctx
        names = ctx.names
        async for events in ctx.batches(stream, self.name):
            at = now()
            batches: list[SignalBatch] = []
            owner: dict[str, Any] = {}  # target key -> an event of its partition (changelog writes)
            bad: list[AuditEntry] = []
            for ev in events:
                signer = verify(ctx.keyring, "signals", ev.value, headers_of(ev))
                if isinstance(signer, str):  # not from ingest: never decided on
                    bad += ctx.refusals.admit(for_event("event.rejected", EventRef(id=delivery(ev)), at,
                                                        reason=signer), source(ev), at)
                    continue
                try:
                    b = decode_signals(ev.value)
                except WireError as exc:
                    bad.append(for_event("event.rejected", EventRef(id=delivery(ev)), at, reason=str(exc)))
                    continue
                batches.append(b)
                for r in b.routes:
                    owner[r.key] = ev
            generation = self.generation
            out = decide_batch(batches, self.load, ctx.policies, self.gstate, ctx.engine, at)
            ctx.metrics.decided(out, at)

            async def once(out: DecideOutputs = out, bad: list[AuditEntry] = bad) -> None:
                ob = ctx.outbox
                sends: list[Send] = [
                    ctx.signed(names.actions, "actions", req.target.key().encode(),
                               req.model_dump_json(by_alias=True).encode())
                    for req in out.actions
                ]
                sends += [ctx.signed(names.approval_requests, "approval-requests", a.action_id.encode(), encode(a))
                          for a in out.approvals]
                sends += ob.audit([*bad, *out.audit])
                await ob.deliver(sends)

            # outputs first, state second (see the module docstring)
            await ctx.retrying(self.name, once)
            if self.generation != generation:
                continue  # a rebalance meanwhile: the new owner replays from the committed offsets
            rows = [(owner[key], key, encode_row(row)) for key, row in out.rows.items()]
            # acked before the batch is: a row lost after its signals' offsets were committed
            # would lose those signals (nothing replays them)
            await ctx.write_state(f"{self.name} (state)", self.targets, rows)
