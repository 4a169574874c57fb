"""Approvals: ``{app}.approval-requests`` + ``{app}.approvals`` -> ``{app}.actions`` (+ audit).

Per batch: each message goes through the pure rule (``healer.approvals``:
``admit_request`` for a new request, ``parse_message`` + ``apply`` for a
decision) against the ``pending`` table, with the batch's own changes seen by
later messages of the batch; every output is sent and acked, then the
changed rows are written. A timer sends an ``expire`` message for every due
approval through the topic (a table write outside an agent has no
partition), so expiry goes through the same rule.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from healer.approvals import Pending, admit_request, apply, parse_message
from healer.audit import AuditEntry, for_action, for_event
from healer.commands import acts_as, verify
from healer.models import ActionRequest, EventRef
from healer.wire import WireError, decode_approval_request
from streams.codec import dumps, loads
from streams.outbox import Send
from streams.stages.base import StageContext, delivery, headers_of, now, source


class ApprovalsStage:
    name = "approvals"

    def __init__(self, ctx: StageContext, pending: Any) -> None:
        self.ctx = ctx
        self.pending = pending  # Faust table: action id -> Pending.to_json()

    def _row(self, aid: str, overlay: dict[str, tuple[Pending, Any]]) -> Pending | None:
        if aid in overlay:
            return overlay[aid][0]
        raw = self.pending.get(aid)
        return Pending.from_json(raw) if raw else None

    async def agent(self, stream: Any) -> None:
        ctx = self.ctx
        names = ctx.names
        async for events in ctx.batches(stream, self.name):
            at = now()
            audit: list[AuditEntry] = []
            records: list[tuple[str, bytes, bytes]] = []  # (topic, key, value)
            changed: dict[str, tuple[Pending, Any]] = {}  # action id -> (row, event of its partition)
            for ev in events:
                where = delivery(ev)
                kind = "approval-requests" if ev.message.topic == names.approval_requests else "approvals"
                signer = verify(ctx.keyring, kind, ev.value, headers_of(ev))
                if isinstance(signer, str):  # never acted on; audited under the refusal rate limit
                    audit += ctx.refusals.admit(for_event(
                        "event.rejected", EventRef(id=where), at, reason=signer,
                        detail={"topic": ev.message.topic, "partition": ev.message.partition,
                                "offset": ev.message.offset}), source(ev), at)
                    continue
                if kind == "approval-requests":
                    try:
                        asked = decode_approval_request(ev.value)
                    except WireError as exc:
                        audit.append(for_event("event.rejected", EventRef(id=where), at, reason=str(exc)))
                        continue
                    row = admit_request(self._row(asked.action_id, changed), asked.request, asked.expires_at)
                    if row is not None:
                        changed[asked.action_id] = (row, ev)
                    continue
                try:
                    body = loads(ev.value or b"")
                except ValueError:
                    body = None
                msg = parse_message(body)
                if isinstance(msg, str):
                    audit.append(for_event("event.rejected", EventRef(id=where), at, reason=msg))
                    continue
                # a person's key decides as that person, whatever the message says
                msg = replace(msg, actor=acts_as(signer, msg.actor).removeprefix("user:"))
                pend = self._row(msg.action_id, changed)
                result = apply(pend, msg, at, keyed_by_action=ev.key == msg.action_id.encode())
                if result.forward:  # produced with another key: to the partition that owns the action
                    forwarded = dumps({"action_id": msg.action_id, "decision": msg.decision,
                                       "actor": msg.actor, "reason": msg.reason})
                    records.append((names.approvals, msg.action_id.encode(), forwarded))
                elif result.refusal is not None:
                    audit.append(for_event("event.rejected", EventRef(id=where), at, reason=result.refusal))
                elif result.pending is not None and pend is not None:
                    req = ActionRequest.model_validate(pend.request)
                    audit += [for_action(kind, req, at, actor=actor, reason=reason)  # type: ignore[arg-type]
                              for kind, actor, reason in result.audit]
                    if result.run is not None:
                        records.append((names.actions, req.target.key().encode(),
                                        req.model_dump_json(by_alias=True).encode()))
                    changed[msg.action_id] = (result.pending, ev)

            async def once(audit: list[AuditEntry] = audit, records: list[tuple[str, bytes, bytes]] = records) -> None:
                ob = ctx.outbox
                sends: list[Send] = [*ob.audit(audit)]
                sends += [ctx.signed(t, "actions" if t == names.actions else "approvals", k, v) for t, k, v in records]
                await ob.deliver(sends)

            await ctx.retrying(self.name, once)
            rows = [(ev, aid, row.to_json()) for aid, (row, ev) in changed.items()]
            await ctx.write_state(f"{self.name} (state)", self.pending, rows)  # acked before the batch is

    async def expire_due(self) -> None:
        """Timer: an ``expire`` message for every approval past its expiry."""
        at = now()
        due = [aid for aid, raw in list(self.pending.items()) if raw and Pending.from_json(raw).due(at)]
        if not due:
            return
        ob, ctx = self.ctx.outbox, self.ctx
        topic = ctx.names.approvals
        await ob.deliver([ctx.signed(topic, "approvals", aid.encode(),
                                     dumps({"action_id": aid, "decision": "expire", "actor": "healer"}))
                          for aid in due])

    def pending_count(self) -> int:
        try:
            return sum(1 for v in list(self.pending.values()) if isinstance(v, dict) and v.get("state") == "pending")
        except Exception:  # the table is not readable before the worker started
            return 0
