"""What the stages send: records handed to the worker's producer, audit entries
packed into one ``{app}.audit-log`` record per audit partition.

:class:`Outbox` is used by every stage for a batch's outputs (send all, then
wait for every ack). :class:`AuditWriter` is the group commit for entries
written one at a time by concurrent tasks (the runner's lifecycle steps): an
entry waits at most one broker round trip, and the entries of all actions
running at that moment share one record per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from healer.audit import AuditEntry
from healer.commands import sign
from healer.keys import Key
from healer.partitioner import partition_for
from healer.wire import encode_audit

log = logging.getLogger("healer.worker")

Send = Awaitable[Any]  # awaiting it hands the record to the producer and gives its delivery future


class Outbox:
    def __init__(self, producer: Callable[[], Any], audit_topic: str, audit_partitions: Callable[[], int],
                 signer: Key | None = None) -> None:
        self._producer = producer
        self.audit_topic = audit_topic
        self.audit_partitions = audit_partitions
        self.signer = signer  # signs audit-log records (healer.commands): the sealer seals only those

    def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
             timestamp: float | None = None, headers: list[tuple[str, bytes]] | None = None) -> Send:
        """One record, straight to Faust's producer (its topic/channel layer adds nothing here)."""
        producer: Any = self._producer()
        send: Send = producer.send(topic, key, value, partition, timestamp, headers)
        return send

    def audit(self, entries: Iterable[AuditEntry]) -> list[Send]:
        """The entries as one record per audit partition (each entry goes to the
        partition of its routing key, so one action's entries share a chain)."""
        n = self.audit_partitions()
        by_part: dict[int, list[dict[str, Any]]] = {}
        for e in entries:
            by_part.setdefault(partition_for(e.routing_key().encode(), n), []).append(e.body())
        signer = self.signer
        return [self.send(self.audit_topic, None, raw, p, headers=sign(signer, "audit-log", raw) if signer else None)
                for p, bodies in by_part.items() for raw in encode_audit(bodies)]

    @staticmethod
    async def deliver(sends: Iterable[Send]) -> None:
        """Hand every record over, then wait until the broker acked all of them."""
        futs = [await s for s in sends]
        if futs:
            await asyncio.gather(*futs)


Retry = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]


class AuditWriter:
    """Group commit: ``await write(entry)`` returns once the entry is acked by the broker.

    Broker trouble is retried by ``retry`` (the stage stalls, nothing is lost);
    anything else stops the worker there, as in the stages.
    """

    def __init__(self, outbox: Outbox, retry: Retry) -> None:
        self.outbox = outbox
        self.retry = retry
        self._queue: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, entry: AuditEntry) -> asyncio.Future[None]:
        """Queue ``entry``; the future resolves when it is acked."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, fut))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flusher(), name="audit-writer")
        return fut

    async def write(self, entry: AuditEntry) -> None:
        await self.submit(entry)

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # let the tasks that are ready add their entries too
            self._wake.clear()
            pending, self._queue = self._queue, []
            if not pending:
                continue
            entries = [e for e, _ in pending]

            async def once(entries: list[AuditEntry] = entries) -> None:
                await self.outbox.deliver(self.outbox.audit(entries))

            await self.retry("audit", once)
            for _, fut in pending:
                if not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # stopping: nothing to report to
                await self._task
