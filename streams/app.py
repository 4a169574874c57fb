"""The healer worker's Faust app: topics, tables and agents.

Pipeline (every arrow is a Kafka topic; ``{app}`` is the app id):

    {app}.alerts / {app}.metrics --ingest--> {app}.signals (keyed by target)
    {app}.signals --decide--> {app}.actions (keyed by target), {app}.approval-requests
    {app}.approval-requests + {app}.approvals --approvals--> {app}.actions
    {app}.actions --execute--> executors (actions.runner)
    every stage --> {app}.audit-log --seal--> {app}.audit (one hash chain per partition)
    bad input --> {app}.deadletter (+ event.rejected in the audit)

Exactly-once effect without Kafka transactions: every output carries a
deterministic id (event ids from source coordinates, action ids from the
engine, audit entry ids from their content); each stage writes its outputs and
waits for the broker's ack before it updates its table, and remembers the
offsets and ids it has applied, so a replay after a crash re-sends the same
ids, which the next stage drops (ledger, applied offsets, the sealer's id set).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.streams import _current_event

from actions.registry import ExecutorRegistry
from actions.runner import RetryPolicy, Runner
from healer.audit import AuditEntry, for_action, for_decision, for_event
from healer.engine import EngineSettings, Route, decide, route
from healer.index import PolicySet
from healer.ingest import Rejected, parse_record
from healer.models import ActionRequest, EventRef, Signal, Target
from healer.settings import Settings
from healer.state import GlobalState, TargetState
from healer.timeutil import format_time, to_millis
from streams.client import security
from streams.codec import dumps, loads
from streams.faust_fixes import install as install_faust_fixes
from streams.gaps import Gap, GapGuard, start_uncommitted_at_log_start
from streams.metrics import Metrics
from streams.sealer import Sealer
from streams.seen import SeenIds
from streams.topics import TopicNames

log = logging.getLogger("healer.worker")

BATCH = 500  # events per batch for ingest, decide and seal
BATCH_WITHIN = 0.005  # seconds to wait for a batch to fill
DEADLETTER_RAW_MAX = 128 * 1024  # bytes of a rejected input kept in its dead letter (6x JSON-escaped < 1 MB)


def table_set(table: Any, event: Any, key: str, value: Any) -> None:
    """``table[key] = value`` as if inside ``event``'s processing.

    Faust writes a table's changelog to the partition of the current event;
    batched agents set it explicitly for each write.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        table[key] = value
    finally:
        _current_event.reset(token)


def _now() -> datetime:
    return datetime.now(UTC)


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
    """Builds the Faust app for one worker process; tests and the CLI use it."""

    def __init__(
        self,
        settings: Settings,
        policies: PolicySet,
        registry: ExecutorRegistry,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.engine: EngineSettings = settings.engine()
        self.names = TopicNames(settings.app_id)
        self.bootstrap = settings.bootstrap()
        self.registry = registry
        self.gstate = GlobalState()
        self.states: dict[str, TargetState] = {}
        self.seen: dict[str, SeenIds] = {}
        self.applied: dict[str, int] = {}
        self.generation = 0  # bumped on every revocation
        self.broker_ok = False
        self.started_at = _now()
        self.metrics = Metrics()
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
            producer_linger_ms=5,  # batch sends: every send alone is one request otherwise
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            broker_max_poll_interval=max(300.0, settings.action_timeout_seconds() + 60),
            stream_processing_timeout=settings.action_timeout_seconds() + 60,
            table_standby_replicas=0,
            broker_session_timeout=settings.session_timeout_seconds(),
            broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds() / 4),
            consumer_group_instance_id=settings.instance_id or None,
            stream_wait_empty=False,
        )
        t = self.app.topic
        self.t_alerts = t(self.names.alerts, partitions=parts, internal=True)
        self.t_metrics = t(self.names.metrics, partitions=parts, internal=True)
        self.t_signals = t(self.names.signals, partitions=parts, internal=True)
        self.t_actions = t(self.names.actions, partitions=parts, internal=True)
        self.t_approvals_in = t(self.names.approvals, self.names.approval_requests, partitions=parts, internal=True)
        self.t_approval_requests = t(self.names.approval_requests, partitions=parts, internal=True)
        self.t_approvals = t(self.names.approvals, partitions=parts, internal=True)
        self.t_audit_log = t(self.names.audit_log, partitions=parts, internal=True)
        self.t_audit = t(self.names.audit, partitions=parts, internal=True)
        self.t_deadletter = t(self.names.deadletter, partitions=parts, internal=True)

        self.targets = self.app.Table("targets", default=None, partitions=parts)
        self.ledger = self.app.Table("ledger", default=None, partitions=parts)
        self.pending = self.app.Table("pending", default=None, partitions=parts)

        self.sealer = Sealer(self.bootstrap, self.names.audit_log, self.names.audit)
        self.target_locks: dict[str, asyncio.Lock] = {}
        self.action_slots = asyncio.Semaphore(settings.max_concurrent_actions)
        self.action_timeout = settings.action_timeout_seconds()
        self.runner = Runner(registry, self.audit, retry=retry)
        self.gaps = GapGuard(self.bootstrap, self._committed, self._log_start, security, self._on_gap)
        install_faust_fixes(self.gaps.floor)

        self.app.agent(self.t_alerts, name="ingest-alerts")(self._ingest("alerts"))
        self.app.agent(self.t_metrics, name="ingest-metrics")(self._ingest("metrics"))
        self.app.agent(self.t_signals, name="decide")(self._decide)
        self.app.agent(self.t_approvals_in, name="approvals")(self._approvals)
        # concurrency: a slow action holds one actor; others go on with other targets
        self.app.agent(self.t_actions, name="execute", concurrency=settings.max_concurrent_actions)(self._execute)
        self.app.timer(interval=5.0)(self._check_broker)
        self.app.timer(interval=10.0)(self._expire_approvals)

        @self.app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(app: Any, revoked: Any, **kw: Any) -> None:
            # caches are only valid for partitions this process owns
            self.generation += 1
            self.gaps.reset()
            self.states.clear()
            self.seen.clear()
            self.applied.clear()
            # stop sealing (and finish in-flight writes) before another worker takes over
            await self.sealer.revoke(self._seal_partitions(revoked))

        @self.app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def _rebalance_complete(app: Any, **kw: Any) -> None:
            try:
                await start_uncommitted_at_log_start(self.app.consumer, self.stream_topics())
            except Exception:  # the gap guard still reads back what this did not reach
                log.warning("could not seek uncommitted partitions to their log start", exc_info=True)

        @self.app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(app: Any, assigned: Any, **kw: Any) -> None:
            await self.sealer.assign(self._seal_partitions(assigned))

    TABLES = ("targets", "ledger", "pending")

    def topic_layout(self) -> dict[str, int]:
        """Every topic this worker reads or writes, with its partition count."""
        n = self.settings.topic_partitions
        names = [
            self.names.alerts, self.names.metrics, self.names.signals, self.names.actions,
            self.names.approvals, self.names.approval_requests, self.names.audit_log,
            self.names.audit, self.names.deadletter,
            *self.changelog_topics(),
        ]
        return {name: n for name in names}

    def stream_topics(self) -> set[str]:
        """The topics the agents consume (their offsets are the consumer group's)."""
        n = self.names
        return {n.alerts, n.metrics, n.signals, n.actions, n.approvals, n.approval_requests}

    def changelog_topics(self) -> list[str]:
        return [f"{self.settings.app_id}-{t}-changelog" for t in self.TABLES]

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {name: {"cleanup.policy": "compact"} for name in self.changelog_topics()}

    # ---------------------------------------------------------------- audit

    async def audit(self, entry: AuditEntry) -> None:
        """Write an unsealed entry and wait for the broker's ack; retry while the
        broker is unreachable (a lost audit record is not an option)."""
        async def once() -> None:
            fut = await self._audit_send(entry)
            await fut

        await self._retrying("audit", once)

    async def _retrying(
        self, stage: str, attempt: Callable[[], Awaitable[None]],
        reset: Callable[[], None] | None = None,
    ) -> None:
        """Run ``attempt`` until it succeeds.

        Broker trouble (timeouts, connection errors, Kafka errors) is retried
        with backoff: the stage stalls instead of skipping input. Anything else
        is a bug: the worker exits at once, before Faust can acknowledge the
        batch, so the batch is replayed after a restart and never skipped.
        """
        delay = 0.2
        while True:
            try:
                await attempt()
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                if reset is not None:
                    reset()
                log.warning("%s: broker trouble (%s: %s); retrying in %.1fs",
                            stage, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.critical("%s failed on a batch; stopping the worker so that the batch "
                             "is replayed after a restart rather than skipped", stage, exc_info=True)
                logging.shutdown()
                os._exit(70)

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

    async def _filled(self, stage: str, events: list[Any]) -> list[Any]:
        """``events`` plus any records the stream skipped before them (streams.gaps)."""
        out: list[Any] = []

        async def once() -> None:
            out[:] = await self.gaps.fill(events)

        await self._retrying(f"{stage} (reading skipped records)", once)
        return out

    def _gaps_done(self) -> None:
        self.gaps.done(self.app.consumer)

    async def _send_all(self, sends: list[Awaitable[Any]]) -> None:
        futs = [await s for s in sends]
        await asyncio.gather(*futs)

    # ---------------------------------------------------------------- ingest

    def _ingest(self, kind: str) -> Any:
        async def agent(stream: Any) -> None:
            async for taken in stream.take_events(BATCH, within=BATCH_WITHIN):
                events = await self._filled(f"ingest-{kind}", taken)

                async def once(events: list[Any] = events) -> None:
                    sends: list[Awaitable[Any]] = []
                    for event in events:
                        self._ingest_one(kind, event, sends)
                    await self._send_all(sends)

                await self._retrying(f"ingest-{kind}", once)
                self._gaps_done()
        return agent

    def _ingest_one(self, kind: str, event: Any, sends: list[Awaitable[Any]]) -> None:
        msg = event.message
        topic = msg.topic
        event_base = f"{topic}:{msg.partition}:{msg.offset}"
        record_time = datetime.fromtimestamp(msg.timestamp, tz=UTC) if msg.timestamp else _now()
        value = event.value
        result = parse_record(kind, value, record_time, event_base, self.settings.max_record_bytes)
        now = _now()
        if isinstance(result, Rejected):
            self.metrics.event(kind, "rejected")
            raw = value if isinstance(value, bytes | bytearray) else b""
            # a dead letter must always fit in one record: an input near the broker's size
            # limit plus the envelope (and JSON escaping) would not, and would crash ingest
            # on every replay; keep the head, say how long the input was
            kept = raw[:DEADLETTER_RAW_MAX]
            dl = {
                "topic": topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "error": result.reason,
                "raw": kept.decode("utf-8", errors="replace") if kept else None,
                "raw_base64": None,
                "raw_bytes": len(raw),
                "raw_truncated": len(kept) < len(raw),
                "time": format_time(now),
            }
            if kept:
                try:
                    kept.decode("utf-8")
                except UnicodeDecodeError:
                    import base64

                    dl["raw"] = None
                    dl["raw_base64"] = base64.b64encode(kept).decode()
            sends.append(self._send(self.names.deadletter, event.key, dumps(dl)))
            entry = for_event(
                "event.rejected", EventRef(id=event_base), now, reason=result.reason,
                detail={"topic": topic, "partition": msg.partition, "offset": msg.offset, "bytes": len(raw)},
            )
            sends.append(self._audit_send(entry))
            return
        self.metrics.event(kind, "received")
        for sig in result:
            routes = route(sig, self.policies)
            entry = for_event(
                "event.received", sig.ref, now,
                detail={"topic": topic, "partition": msg.partition, "offset": msg.offset,
                        "kind": sig.kind, "routes": len(routes)},
            )
            sends.append(self._audit_send(entry))
            for rt in routes:
                payload = {
                    "signal": sig.model_dump(mode="json"),
                    "route": {"key": rt.key, "target": rt.target.brief() if rt.target else None,
                              "policies": list(rt.policies), "failures": [list(f) for f in rt.failures]},
                    "ingested_at": format_time(now),
                }
                sends.append(self._send(self.names.signals, rt.key.encode(), dumps(payload),
                                        timestamp=to_millis(sig.time) / 1000.0))

    # ---------------------------------------------------------------- decide

    def _state(self, key: str) -> tuple[TargetState, int, SeenIds]:
        st = self.states.get(key)
        if st is None:
            raw = self.targets.get(key) or {}
            st = TargetState.from_dict(raw.get("s"))
            self.states[key] = st
            self.seen[key] = SeenIds.from_json(raw.get("seen"))
            self.applied[key] = int(raw.get("o", -1))
        return st, self.applied[key], self.seen[key]

    async def _decide(self, stream: Any) -> None:
        async for taken in stream.take_events(BATCH, within=BATCH_WITHIN):
            events = await self._filled("decide", taken)
            keys = [e.key.decode() if isinstance(e.key, bytes) else str(e.key) for e in events]

            async def once(events: list[Any] = events, keys: list[str] = keys) -> None:
                generation = self.generation
                sends: list[Awaitable[Any]] = []
                touched: dict[str, tuple[Any, TargetState, SeenIds]] = {}
                for key, event in zip(keys, events, strict=True):
                    changed = self._decide_one(key, event, sends)
                    if changed is not None:
                        touched[key] = (event, *changed)
                # outputs first, state second: a crash in between replays the
                # batch, which re-sends the same ids (dropped downstream)
                await self._send_all(sends)
                if self.generation != generation:
                    # a rebalance happened meanwhile: these partitions may be someone
                    # else's now; their new owner replays from the committed offsets
                    return
                for key, (event, st, seen) in touched.items():
                    value = {"s": st.to_dict(), "o": event.message.offset, "seen": seen.to_json()}
                    table_set(self.targets, event, key, value)
                    self.applied[key] = event.message.offset

            def reset(keys: list[str] = keys) -> None:
                # the caches may be ahead of the table now: the table is the truth
                for key in keys:
                    self.states.pop(key, None)
                    self.seen.pop(key, None)
                    self.applied.pop(key, None)

            await self._retrying("decide", once, reset)
            self._gaps_done()

    def _decide_one(
        self, key: str, event: Any, sends: list[Awaitable[Any]]
    ) -> tuple[TargetState, SeenIds] | None:
        """Decide one signal; queue its outputs in ``sends``; the state when it changed."""
        msg = loads(event.value)
        offset = event.message.offset
        st, applied, seen = self._state(key)
        if offset <= applied:
            return None  # replay of a signal whose effects are already in the table
        sig = Signal.model_validate(msg["signal"])
        r = msg["route"]
        rt = Route(
            key=r["key"],
            target=Target.model_validate(r["target"]) if r["target"] else None,
            policies=tuple(r["policies"]),
            failures=tuple((a, b) for a, b in r.get("failures", [])),
        )
        now = _now()
        if sig.event_id in seen:
            pass  # the same input routed twice (ingest replay): already decided
        else:
            out = decide(sig, rt, self.policies, st, self.gstate, self.engine)
            if out.duplicate:
                self.metrics.event(f"{sig.kind}s", "duplicate")
                e = for_event("event.duplicate", sig.ref, now, nonce=rt.key,
                              detail={"route": rt.key, "reason": "same fingerprint, startsAt and status within dedup_window"})
                sends.append(self._audit_send(e))
            for d in out.decisions:
                self.metrics.decision(d.policy, d.decision, d.reason)
                e = for_decision(d, now)
                sends.append(self._audit_send(e))
                if d.decision == "execute":
                    self.metrics.action_queued(sig.kind, sig.time, now)
                    req = ActionRequest.from_decision(d)
                    sends.append(self._send(self.names.actions, d.target.key().encode() if d.target else None,
                                            req.model_dump_json(by_alias=True).encode()))
                elif d.decision == "pending_approval":
                    req = ActionRequest.from_decision(d)
                    body = {
                        "action_id": d.action_id,
                        "decision": "request",
                        "request": req.model_dump(mode="json", by_alias=True),
                        "expires_at": now.timestamp() + (d.approval_timeout_seconds or 1800.0),
                    }
                    sends.append(self._send(self.names.approval_requests, (d.action_id or "").encode(), dumps(body)))
            seen.add(sig.event_id)
        return st, seen

    def _audit_send(self, entry: AuditEntry) -> Awaitable[Any]:
        return self._send(self.names.audit_log, entry.routing_key().encode(), dumps(entry.body()))

    def _send(self, topic: str, key: bytes | None, value: bytes, timestamp: float | None = None) -> Awaitable[Any]:
        """Hand one record to the producer (partitioned by key); await it for the delivery
        future. Straight to Faust's producer: the topic/channel layer adds nothing here."""
        return self.app.producer.send(topic, key, value, None, timestamp, None)

    # ---------------------------------------------------------------- approvals

    async def _approvals(self, stream: Any) -> None:
        async for taken in stream.events():
            for event in await self._filled("approvals", [taken]):
                await self._retrying("approvals", functools.partial(self._approval_one, event))
            self._gaps_done()

    async def _approval_one(self, event: Any) -> None:
        try:
            msg = loads(event.value)
        except ValueError:
            msg = None
        topic = event.message.topic
        now = _now()
        if not isinstance(msg, dict) or not isinstance(msg.get("action_id"), str):
            bad = for_event("event.rejected", EventRef(id=f"{topic}:{event.message.partition}:{event.message.offset}"),
                            now, reason="approval message needs action_id and decision")
            await (await self._audit_send(bad))
            return
        aid = msg["action_id"]
        if topic == self.names.approval_requests:
            if self.pending.get(aid) is None:
                self.pending[aid] = {"state": "pending", "request": msg["request"], "expires_at": msg["expires_at"]}
            return
        decision = msg.get("decision")
        actor = str(msg.get("actor") or "unknown")[:200]
        reason = str(msg.get("reason") or "")[:2000] or None
        pend: dict[str, Any] | None = self.pending.get(aid)
        if pend is None:
            if event.key != aid.encode():
                # produced with another key: forward to the partition that owns this action
                await (await self._send(self.names.approvals, aid.encode(), event.value))
                return
            rej = for_event("event.rejected", EventRef(id=f"{topic}:{event.message.partition}:{event.message.offset}"),
                            now, reason=f"unknown action id {aid[:80]!r}: no pending approval")
            await (await self._audit_send(rej))
            return
        entry: dict[str, Any] = pend
        req = ActionRequest.model_validate(entry["request"])
        if entry["state"] != "pending":
            note = for_event("event.rejected", EventRef(id=f"{topic}:{event.message.partition}:{event.message.offset}"),
                             now, reason=f"action {aid} is already {entry['state']}")
            await (await self._audit_send(note))
            return
        if decision == "approve":
            await self._send_all([
                self._audit_send(for_action("action.approved", req, now, actor=f"user:{actor}", reason=reason)),
                self._audit_send(for_action("action.queued", req, now, actor=f"user:{actor}")),
                self._send(self.names.actions, req.target.key().encode(), req.model_dump_json(by_alias=True).encode()),
            ])
            self.pending[aid] = {**entry, "state": "approved", "by": actor}
        elif decision == "expire":
            if now.timestamp() < float(entry.get("expires_at", 0)):
                return  # not due (or a forged early expiry): ignore
            await (await self._audit_send(for_action(
                "action.expired", req, now, actor="healer",
                reason="approval_timeout passed without a decision")))
            self.pending[aid] = {**entry, "state": "expired"}
        elif decision == "deny":
            await (await self._audit_send(for_action("action.denied", req, now, actor=f"user:{actor}", reason=reason)))
            self.pending[aid] = {**entry, "state": "denied", "by": actor}
        else:
            note = for_event("event.rejected", EventRef(id=f"{topic}:{event.message.partition}:{event.message.offset}"),
                             now, reason=f"decision must be approve or deny, not {str(decision)[:40]!r}")
            await (await self._audit_send(note))

    async def _expire_approvals(self) -> None:
        now = _now()
        for aid, entry in list(self.pending.items()):
            if not entry or entry.get("state") != "pending" or entry.get("expires_at", 0) > now.timestamp():
                continue
            # a table write outside an agent has no partition: route it via the topic
            await (await self.t_approvals.send(
                key=aid.encode(),
                value=dumps({"action_id": aid, "decision": "expire", "actor": "healer"}),
            ))

    # ---------------------------------------------------------------- execute

    async def _execute(self, stream: Any) -> None:
        async for taken in stream.events():
            for event in await self._filled("execute", [taken]):
                await self._retrying("execute", functools.partial(self._execute_one, event))
            self._gaps_done()

    async def _execute_one(self, event: Any) -> None:
        try:
            req = ActionRequest.model_validate_json(event.value)
        except ValueError as exc:
            msg = event.message
            bad = for_event("event.rejected", EventRef(id=f"{msg.topic}:{msg.partition}:{msg.offset}"),
                            _now(), reason=f"invalid action request: {str(exc)[:500]}")
            await (await self._audit_send(bad))
            return
        key = req.target.key()
        lock = self.target_locks.setdefault(key, asyncio.Lock())
        async with lock:  # never two actions on one target at once
            await self._execute_locked(req, event)

    async def _rollback_locked(self, req: ActionRequest, event: Any) -> None:
        """An operator's rollback: restore the ledger's snapshot through the runner."""
        now = _now()
        entry = self.ledger.get(req.action_id)
        nonce = f"{event.message.topic}:{event.message.partition}:{event.message.offset}"
        if entry is None:
            refusal = f"no record of action {req.action_id} on this worker's ledger: nothing to roll back"
        elif entry.get("state") in ("rolled_back",):
            refusal = f"action {req.action_id} is already rolled back: nothing to do"
        elif entry.get("state") == "running":
            refusal = f"action {req.action_id} is still running: roll back after it ends"
        elif not entry.get("reversible", False):
            refusal = f"{req.use} is not reversible: nothing was recorded to restore"
        elif (entry.get("request") or {}).get("dry_run"):
            refusal = f"action {req.action_id} was a dry run: it changed nothing"
        else:
            refusal = None
        if refusal is not None:
            note = for_event("event.rejected", req.event or EventRef(id=req.action_id), now,
                             reason=f"rollback refused: {refusal}", nonce=nonce,
                             detail={"actor": req.actor, "op": "rollback"})
            await (await self._audit_send(note.model_copy(update={"action_id": req.action_id})))
            return
        assert entry is not None
        original = ActionRequest.model_validate(entry["request"])
        out = await self.runner.rollback(original, entry.get("before") or {}, actor=req.actor,
                                         reason=req.reason or "operator rollback")
        table_set(self.ledger, event, req.action_id,
                  {**entry, "state": out.status if out.status != "failed" else entry["state"],
                   "rolled_back_by": req.actor, "rollback_reason": out.reason})

    async def _execute_locked(self, req: ActionRequest, event: Any) -> None:
        if req.op == "rollback":
            await self._rollback_locked(req, event)
            return
        now = _now()
        entry = self.ledger.get(req.action_id)
        if entry is not None and entry.get("state") == "running":
            # the worker that ran it died mid-action: its effect is unknown, so it
            # is not run again; an operator decides (rollback or a manual re-run)
            await self.audit(for_action(
                "action.failed", req, now,
                reason="interrupted: the worker stopped while this action was running; "
                       "not re-run (no action runs twice); check the target, then roll back or re-run",
                detail={"interrupted": True}, nonce="interrupted",
            ))
            self.ledger[req.action_id] = {**entry, "state": "failed", "reason": "interrupted"}
            return
        if entry is not None:
            note = for_event(
                "event.duplicate", req.event or EventRef(id=req.action_id), now,
                reason=f"action {req.action_id} already {entry['state']}: not run again",
                nonce=f"{req.action_id}:{event.message.offset}",
            )
            note = note.model_copy(update={"action_id": req.action_id})
            await (await self._audit_send(note))
            return
        # order matters for "no action twice": audit action.running (a replay of
        # it has the same id and is dropped), then make the ledger's "running"
        # durable, and only then let the executor change anything. A crash before
        # the flush re-runs an action that never started; after it, the ledger
        # says "interrupted" and nothing runs again.
        await self.runner.announce(req)
        self.ledger[req.action_id] = {"state": "running", "request": req.model_dump(mode="json", by_alias=True),
                                      "started": format_time(now)}
        await self.app.producer.flush()
        async with self.action_slots:
            try:
                outcome = await asyncio.wait_for(self.runner.run(req, announced=True), timeout=self.action_timeout)
            except TimeoutError:
                await self.audit(for_action(
                    "action.failed", req, _now(),
                    reason=f"timed out: the action did not finish within {self.action_timeout:g}s "
                           "(action_timeout); its effect is unknown",
                    detail={"timeout_seconds": self.action_timeout}, nonce="timeout",
                ))
                self.ledger[req.action_id] = {**self.ledger[req.action_id], "state": "failed", "reason": "timeout"}
                self.metrics.action_done(req.use, "timeout", self.action_timeout)
                return
        self.metrics.action_done(req.use, outcome.status, outcome.duration_seconds)
        self.ledger[req.action_id] = {
            "state": outcome.status,
            "request": req.model_dump(mode="json", by_alias=True),
            "before": outcome.before,
            "after": outcome.after,
            "reason": outcome.reason,
            "reversible": outcome.reversible,
            "finished": format_time(_now()),
        }

    # ---------------------------------------------------------------- seal

    def _seal_partitions(self, tps: Any) -> set[int]:
        """The audit-log partitions this worker seals: the numbers of its ``signals``
        partitions. The group gives each signals partition to one worker at a time,
        so each chain has one writer; the sealer reads the audit-log by offset
        itself (streams.sealer), so no agent consumes it through Faust."""
        return {tp.partition for tp in tps if tp.topic == self.names.signals}

    # ---------------------------------------------------------------- health

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
        assigned = False
        try:
            assigned = bool(app.consumer.assignment())
        except Exception:
            assigned = False
        recovery = getattr(app.tables, "recovery", None)
        recovered = bool(recovery.completed.is_set()) if recovery is not None else False
        rebalancing = bool(getattr(app, "rebalancing", False))
        return {
            "broker": self.broker_ok,
            "assigned": assigned,
            "recovered": recovered,
            "rebalancing": rebalancing,
            "ready": self.broker_ok and assigned and recovered and not rebalancing,
        }
