"""Execute: ``{app}.actions`` -> executors through the runner (+ audit, ``ledger`` table).

Each action request becomes a task: under its target's lock (never two actions
on one target at once) the ledger rule (``healer.ledger.admit``) says run,
duplicate, interrupted or refused. To run: ``action.running`` is audited and,
once the broker acked it, the ledger's ``running`` mark is written and acked, and
only then does the executor change anything; a crash after that leaves the
mark, so the redelivered request is audited as interrupted and never re-run.
A request record is acknowledged when its task ends, so a crash redelivers
every request whose outcome is not recorded; offsets are committed only up
to the oldest unfinished one (streams.faust_fixes). Tasks run concurrently up
to ``max_concurrent_actions``; the runner's audit entries share group commits
(streams.outbox.AuditWriter), so many short actions cost few broker round trips.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actions.runner import Runner
from healer.audit import AuditEntry, for_action, for_event
from healer.commands import acts_as, verify
from healer.execguard import effective, refusal
from healer.ledger import (
    Interrupted,
    LedgerEntry,
    Run,
    admit,
    finish,
    rollback_refusal,
    rollback_refused,
    rolled_back,
    timed_out,
)
from healer.models import ActionRequest, EventRef
from streams.outbox import AuditWriter
from streams.stages.base import (
    StageContext,
    delivery,
    headers_of,
    now,
    source,
)

log = logging.getLogger("healer.worker")

MAX_QUEUED = 10_000  # action requests taken from the stream and not finished yet
REVOKE_WAIT = 30.0  # seconds a revocation waits for running actions of the partitions it takes away


def _warn(entry: AuditEntry) -> None:
    """An ``action.failed`` the stage itself audits is logged too (as the runner does its own)."""
    log.warning("%s %s: %s on %s: %s", entry.kind, entry.action_id, entry.use,
                (entry.target or {}).get("name") or entry.target, entry.reason,
                extra={"action_id": entry.action_id, "kind": entry.kind})


class ExecuteStage:
    name = "execute"

    def __init__(self, ctx: StageContext, ledger: Any, runner: Runner, writer: AuditWriter) -> None:
        self.ctx = ctx
        self.ledger = ledger  # Faust table: action id -> LedgerEntry.to_json()
        self.runner = runner
        self.writer = writer
        self.timeout = ctx.settings.action_timeout_seconds()
        self.slots = asyncio.Semaphore(ctx.settings.max_concurrent_actions)
        self.queued = asyncio.Semaphore(MAX_QUEUED)
        self.locks: dict[str, asyncio.Lock] = {}
        self.in_flight: dict[str, asyncio.Task[None]] = {}  # action id -> its task
        self.tasks: dict[asyncio.Task[None], int] = {}  # task -> actions partition

    def entry(self, action_id: str) -> LedgerEntry | None:
        raw = self.ledger.get(action_id)
        return LedgerEntry.from_json(raw) if raw else None

    async def agent(self, stream: Any) -> None:
        async for events in self.ctx.batches(stream, self.name, ack=False):
            refetched: list[asyncio.Task[None]] = []
            for ev in events:
                await self.queued.acquire()
                task = asyncio.get_running_loop().create_task(self._handle(stream, ev))
                self.tasks[task] = ev.message.partition
                task.add_done_callback(self._done)
                if not hasattr(ev, "ack"):  # read back by the gap guard: no Faust event to ack
                    refetched.append(task)
            if refetched:
                # the guard counts a filled range as processed once this batch returns
                await asyncio.gather(*refetched)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        self.queued.release()

    async def _handle(self, stream: Any, ev: Any) -> None:
        await self.ctx.retrying(self.name, lambda: self._one(ev))
        if hasattr(ev, "ack"):
            await stream.ack(ev)

    async def _one(self, ev: Any) -> None:
        where = delivery(ev)
        signer = verify(self.ctx.keyring, "actions", ev.value, headers_of(ev))
        if isinstance(signer, str):  # never acted on: not parsed further, nothing snapshotted
            await self._refuse(for_event("event.rejected", EventRef(id=where), now(), reason=signer,
                                         detail={"topic": ev.message.topic, "partition": ev.message.partition,
                                                 "offset": ev.message.offset}), ev)
            return
        try:
            req = ActionRequest.model_validate_json(ev.value or b"")
        except ValueError as exc:
            await self.writer.write(for_event("event.rejected", EventRef(id=where), now(),
                                              reason=f"invalid action request: {str(exc)[:500]}"))
            return
        # an operator's key acts as that operator; the worker in dry-run runs everything dry
        req = effective(req.model_copy(update={"actor": acts_as(signer, req.actor)}), self.ctx.rules)
        lock = self.locks.setdefault(req.target.key(), asyncio.Lock())
        async with lock:  # never two actions on one target at once
            if req.op == "rollback":
                await self._rollback(req, ev, where)
            else:
                await self._run(req, ev, where)

    async def _run(self, req: ActionRequest, ev: Any, where: str) -> None:
        at = now()
        adm = admit(self.entry(req.action_id), req, at, delivery=where,
                    refusal=refusal(req, self.ctx.catalog, self.ctx.policies, self.ctx.rules),
                    running_here=req.action_id in self.in_flight)
        if not isinstance(adm, Run):
            await self.writer.write(adm.audit)
            if isinstance(adm, Interrupted):
                _warn(adm.audit)
                await self._mark(ev, req.action_id, adm.entry.to_json())
            return
        self.in_flight[req.action_id] = asyncio.current_task()  # type: ignore[assignment]
        try:
            async with self.slots:
                # action.running is acked, then the running mark, before any effect: written
                # together, a crash between the two acks left a mark without its action.running
                # (reported interrupted with no run in the audit)
                await self.writer.write(for_action("action.running", req, at))
                await self._mark(ev, req.action_id, adm.entry.to_json())
                try:
                    outcome = await asyncio.wait_for(self.runner.run(req, announced=True), timeout=self.timeout)
                except TimeoutError:
                    failed, audit = timed_out(adm.entry, req, now(), self.timeout)
                    await self.writer.write(audit)
                    _warn(audit)
                    await self._mark(ev, req.action_id, failed.to_json())
                    self.ctx.metrics.action_done(req.use, "timeout", self.timeout)
                    return
            self.ctx.metrics.action_done(req.use, outcome.status, outcome.duration_seconds)
            done = finish(adm.entry, outcome.status, now(), before=outcome.before, after=outcome.after,
                          reason=outcome.reason, reversible=outcome.reversible)
            # durable before the request is acknowledged (a crash before it redelivers the
            # request, which the running mark then reports as interrupted)
            await self._mark(ev, req.action_id, done.to_json())
        finally:
            self.in_flight.pop(req.action_id, None)

    async def _rollback(self, req: ActionRequest, ev: Any, where: str) -> None:
        """An operator's rollback: restore the ledger's snapshot through the runner."""
        entry = self.entry(req.action_id)
        why = rollback_refusal(entry, req.action_id, req.use)
        if why is None and self.ctx.rules.dry_run:
            why = "this worker runs in dry-run and changes nothing: roll back from a worker that acts"
        if why is None and entry is not None:
            why = refusal(ActionRequest.model_validate(entry.request), self.ctx.catalog, self.ctx.policies,
                          self.ctx.rules)
        if why is not None or entry is None:
            await self.writer.write(rollback_refused(req, why or "no ledger entry", now(), where))
            return
        original = ActionRequest.model_validate(entry.request)
        out = await self.runner.rollback(original, entry.before or {}, actor=req.actor,
                                         reason=req.reason or "operator rollback")
        await self._mark(ev, req.action_id, rolled_back(entry, out.status, req.actor, out.reason).to_json())

    async def _mark(self, ev: Any, action_id: str, entry: Any) -> None:
        """Write ``action_id``'s ledger entry and wait for its ack. Broker trouble is retried
        here: retrying the whole request instead would find its own running mark and report
        the action interrupted."""
        await self.ctx.write_state(f"{self.name} (ledger)", self.ledger, [(ev, action_id, entry)])

    async def _refuse(self, entry: AuditEntry, ev: Any) -> None:
        for e in self.ctx.refusals.admit(entry, source(ev), now()):
            await self.writer.write(e)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Let running actions of the partitions taken away finish (bounded) before another
        worker may redeliver their requests, which it would report as interrupted."""
        tasks = [t for t, p in list(self.tasks.items()) if p in partitions]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=REVOKE_WAIT)
        if pending:
            log.warning("%d actions still running after %.0fs of a rebalance; their requests may be "
                        "reported as interrupted by the partitions' new owner", len(pending), REVOKE_WAIT)
