"""What every stage shares: batches with skipped records put back, retries on
broker trouble, table writes on the right changelog partition, the outbox.

One :class:`StageContext` per worker, built by ``streams.app.HealerApp``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError

from healer.audit import AuditEntry, for_event
from healer.catalog import Catalog
from healer.commands import sign
from healer.engine import EngineSettings
from healer.execguard import ExecutionRules
from healer.index import PolicySet
from healer.ingest import InputRecord
from healer.keys import Keyring
from healer.models import EventRef
from healer.refusals import RefusalRule, RefusalState, Summary
from healer.refusals import admit as admit_refusal
from healer.refusals import close as close_refusals
from healer.settings import Settings
from healer.timeutil import format_time
from streams.batching import ready_batches
from streams.gaps import GapGuard
from streams.metrics import Metrics
from streams.outbox import Outbox, Send
from streams.topics import TopicNames

log = logging.getLogger("healer.worker")

BATCH = 1000  # most events a stage takes at once


def now() -> datetime:
    return datetime.now(UTC)


def table_write(table: Any, event: Any, key: str, value: Any) -> Awaitable[Any]:
    """``table[key] = value`` on ``event``'s changelog partition, returning the changelog
    record's delivery future: await it when the write must be durable before going on.

    (Faust's ``producer.flush()`` is no such guarantee: it returns once its buffer queue is
    empty, while its background task may still be handing the record to the Kafka client.)
    The same as the table's ``__setitem__`` minus its sensors: healer's tables are not windowed.
    """
    fut = table.send_changelog(event.message.partition, key, value)
    table.data[key] = value
    return fut  # type: ignore[no-any-return]


async def table_writes(table: Any, writes: list[tuple[Any, str, Any]]) -> None:
    """Write every ``(event, key, value)`` of ``writes`` (see :func:`table_write`) and wait
    until the broker has acked them all: a stage's table writes are durable before its
    input is acknowledged (offsets are committed only past acknowledged records)."""
    if writes:
        await asyncio.gather(*[table_write(table, ev, key, value) for ev, key, value in writes])


def input_record(event: Any) -> InputRecord:
    msg = event.message
    return InputRecord(msg.topic, msg.partition, msg.offset, msg.timestamp or None, event.key, event.value)


def delivery(event: Any) -> str:
    """``topic:partition:offset`` of the record behind ``event``."""
    msg = event.message
    return f"{msg.topic}:{msg.partition}:{msg.offset}"


def source(event: Any) -> str:
    """``topic:partition`` of the record behind ``event`` (a refusal's origin, when rate-limited)."""
    msg = event.message
    return f"{msg.topic}:{msg.partition}"


def headers_of(event: Any) -> list[tuple[str, bytes]]:
    """The Kafka headers of the record behind ``event`` (Faust events and read-back records)."""
    raw = getattr(event, "headers", None)
    if raw is None:
        raw = getattr(event.message, "headers", None)
    if isinstance(raw, dict):
        return [(str(k), v) for k, v in raw.items()]
    return [(str(k), v) for k, v in (raw or ())]


class Refusals:
    """Refused records of a stage, audited under the refusal rate limit (healer.refusals):
    the first of a window one by one, the rest as one aggregated entry, so a flood of
    forged records costs a bounded number of audit records."""

    def __init__(self, rule: RefusalRule) -> None:
        self.rule = rule
        self.state = RefusalState()

    def admit(self, entry: AuditEntry, origin: str, at: datetime) -> list[AuditEntry]:
        """The entries to write for this refusal (none while its window is counting)."""
        self.state, one_by_one, summary = admit_refusal(self.state, self.rule, at, entry.reason or "", origin)
        out = [self._summary(summary, at)] if summary is not None else []
        return [*out, entry] if one_by_one else out

    def due(self, at: datetime) -> list[AuditEntry]:
        self.state, summary = close_refusals(self.state, self.rule, at)
        return [self._summary(summary, at)] if summary is not None else []

    @staticmethod
    def _summary(s: Summary, at: datetime) -> AuditEntry:
        return for_event("event.rejected", EventRef(id=f"refusals:{format_time(s.start)}"), at,
                         reason=s.reason(), detail=s.detail())


@dataclass
class StageContext:
    app: Any  # faust.App
    bootstrap: str
    settings: Settings
    policies: PolicySet
    engine: EngineSettings
    names: TopicNames
    metrics: Metrics
    gaps: GapGuard
    outbox: Outbox
    partition_counts: dict[str, int]
    keyring: Keyring
    rules: ExecutionRules
    catalog: Catalog
    refusals: Refusals

    def signed(self, topic: str, kind: str, key: bytes | None, value: bytes) -> Send:
        """A record for a command topic, signed with the worker's key (healer.commands)."""
        signer = self.keyring.signing_key()
        if signer is None:  # streams.keyfile.ensure refuses to start without one
            raise RuntimeError("the worker has no signing key")
        return self.outbox.send(topic, key, value, headers=sign(signer, kind, value))

    def partitions(self, topic: str) -> int:
        """Partitions of ``topic`` (read from the cluster at start; the setting until then)."""
        return self.partition_counts.get(topic) or self.settings.topic_partitions

    async def write_state(self, what: str, table: Any, writes: list[tuple[Any, str, Any]]) -> None:
        """:func:`table_writes` under :meth:`retrying`: the rows are acked by the broker before
        this returns, broker trouble retried on the writes alone (not the stage's whole batch)."""
        async def once() -> None:
            await table_writes(table, writes)

        await self.retrying(what, once)

    async def retrying(
        self, stage: str, attempt: Callable[[], Awaitable[None]], reset: Callable[[], None] | None = None,
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

    async def batches(self, stream: Any, stage: str, max_: int = BATCH, ack: bool = True) -> AsyncIterator[list[Any]]:
        """Ready batches of ``stream`` with any records the stream skipped put back
        in front of the record after them (streams.gaps); once the caller asks
        for the next batch, the filled ranges count as processed."""
        async for taken in ready_batches(stream, max_, ack):
            out: list[Any] = []

            async def fill(taken: list[Any] = taken, out: list[Any] = out) -> None:
                out[:] = await self.gaps.fill(taken)

            await self.retrying(f"{stage} (reading skipped records)", fill)
            yield out
            self.gaps.done(self.app.consumer)
