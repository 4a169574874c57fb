"""The audit sealer: the single writer of each audit chain.

Unsealed entries arrive on ``{app}.audit-log``, many per record
(``healer.wire.AuditBatch``); the entries of partition ``p`` are sealed into
chain ``p``, one sealed record per entry, on partition ``p`` of
``{app}.audit``. Each sealed record's ``source`` names the audit-log
partition, offset and index of its entry. The audit topic itself is the
source of truth: when a worker takes over a partition, its sealer reads the
chain's tail back from the audit topic (the head's seq and hash, the last
sealed ``source`` position, the recent entry ids) and continues reading the
audit-log right after that position, inside a record if a crash stopped it
half way. So a restarted or rebalanced sealer continues the chain without
gaps, forks or repeats, and an upstream replay of an entry (same
deterministic id) is written once.

Which partitions a worker seals: the partition numbers of the ``{app}.signals``
partitions it owns (streams.app), so each chain has one writer at a time.
A record in the audit-log that carries no audit entries is sealed as
``event.rejected`` in its place; a record in the audit topic that no sealer
wrote is skipped when the tail is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from healer.audit import entry_id, for_event
from healer.chain import ChainHead, resume_point, seal
from healer.commands import verify
from healer.keys import Keyring
from healer.models import EventRef
from healer.wire import WireError, decode_audit
from streams.client import security
from streams.codec import loads

log = logging.getLogger("healer.sealer")

RECENT_IDS = 20_000
TAIL_READ = 20_000
READ_TAIL_TIMEOUT = 120.0


@dataclass
class PartitionChain:
    head: ChainHead
    last_source_offset: int = -1
    last_source_index: int = -1  # the entry within that record; -1: the whole record
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    foreign: list[dict[str, Any]] = field(default_factory=list)  # records in the tail no sealer wrote

    def sealed(self, offset: int, index: int) -> bool:
        """The entry at (offset, index) of the audit-log is already in the chain."""
        last = self.last_source_offset
        return offset < last or (offset == last and (self.last_source_index < 0 or index <= self.last_source_index))

    def remember(self, entry_id: str | None) -> None:
        if not entry_id:
            return
        self.recent[entry_id] = None
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)


async def read_tail(bootstrap: str, topic: str, partition: int, log_topic: str,
                    keyring: Keyring | None = None, limit: int = TAIL_READ) -> PartitionChain:
    """Rebuild a chain's head, last sealed position and recent ids from the audit topic's tail,
    trusting only genuine records (healer.chain.resume_point: hash, MAC, sequence, a source
    offset that exists in ``log_topic``); what is not genuine is in ``foreign``."""
    tp = TopicPartition(topic, partition)
    log_tp = TopicPartition(log_topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **security(), enable_auto_commit=False, group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        log_end = (await consumer.end_offsets([log_tp]))[log_tp]
        records: list[dict[str, Any]] = []
        if end > begin:
            consumer.seek(tp, max(begin, end - limit))
            deadline = asyncio.get_running_loop().time() + READ_TAIL_TIMEOUT
            while (await consumer.position(tp)) < end:
                if asyncio.get_running_loop().time() > deadline:
                    # a partial tail would fork the chain: fail, the caller retries
                    raise TimeoutError(f"reading the tail of {topic}[{partition}] took over {READ_TAIL_TIMEOUT}s")
                batch = await consumer.getmany(tp, timeout_ms=2000, max_records=5000)
                for m in batch.get(tp, []):
                    try:
                        rec = loads(m.value)
                    except (TypeError, ValueError):  # a record without value is None
                        rec = None
                    if not isinstance(rec, dict):
                        rec = {"__raw__": True}
                    rec["__at__"] = f"{topic}[{partition}]@{m.offset}"
                    records.append(rec)
        point = resume_point(str(partition), records, keyring, log_end)
        pc = PartitionChain(point.head, point.source[0], point.source[1], foreign=point.foreign)
        for eid in point.ids:
            pc.remember(eid)
        return pc
    finally:
        await consumer.stop()


class Sealer:
    """Seals the audit-log partitions this worker owns, one task per partition.

    Each task reads its audit-log partition itself, by offset, starting right
    after the last sealed source offset found in the audit topic's tail; it
    does not depend on the consumer group's committed offsets or on Faust's
    delivery, so a crash, a rebalance or a skipped delivery cannot lose or
    repeat an entry. Ownership follows the worker's assignment of the
    ``{app}.signals`` topic: ``streams.app`` calls ``assign``/``revoke`` from its
    rebalance callbacks with the numbers of the signals partitions gained or
    lost (no consumer group reads the audit-log). A revoked task is stopped, and
    its in-flight writes finished, before the partition can be sealed elsewhere.
    """

    def __init__(self, bootstrap: str, audit_log_topic: str, audit_topic: str, batch: int = 500,
                 keyring: Keyring | None = None, on_foreign: Callable[[int, int], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.audit_log_topic = audit_log_topic
        self.audit_topic = audit_topic
        self.batch = batch
        # with a keyring: audit-log records must be signed (healer.commands), sealed records are
        # MAC'd with its `seal` key, and the tail is trusted only where its MACs are valid
        self.keyring = keyring
        self.key = keyring.sealing_key() if keyring is not None else None
        self.on_foreign = on_foreign
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.chains: dict[int, PartitionChain] = {}
        self.sealed = 0

    async def _new_producer(self) -> Any:
        """A fresh idempotent producer for one partition task.

        Each task owns its producer and makes a new one whenever it restarts:
        after a long broker outage an idempotent producer can be left with a
        sequence the broker no longer accepts (OutOfOrderSequenceNumber).
        """
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, **security(), acks="all", enable_idempotence=True,
            linger_ms=2, request_timeout_ms=30_000,
        )
        await producer.start()
        return producer

    async def assign(self, partitions: set[int]) -> None:
        for p in sorted(partitions):
            task = self.tasks.get(p)
            if task is None or task.done():
                self.tasks[p] = asyncio.create_task(self._run(p), name=f"seal-{p}")

    async def revoke(self, partitions: set[int] | None = None) -> None:
        parts = set(self.tasks) if partitions is None else partitions & set(self.tasks)
        tasks = [self.tasks.pop(p) for p in parts]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for p in parts:
            self.chains.pop(p, None)

    async def close(self) -> None:
        await self.revoke()

    @property
    def owned(self) -> list[int]:
        return sorted(p for p, t in self.tasks.items() if not t.done())

    async def _run(self, partition: int) -> None:
        delay = 0.2
        while True:
            try:
                await self._seal_partition(partition)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker trouble or a bad record: start over from the tail
                self.chains.pop(partition, None)
                log.warning("sealer %s: %s: %s; restarting from the audit tail in %.1fs",
                            partition, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _seal_partition(self, partition: int) -> None:
        pc = await read_tail(self.bootstrap, self.audit_topic, partition, self.audit_log_topic, self.keyring)
        self.chains[partition] = pc
        log.info("audit chain %s resumes at seq %s (audit-log offset %s)",
                 partition, pc.head.next_seq, pc.last_source_offset + 1)
        producer = await self._new_producer()
        if pc.foreign:
            await self._note_foreign(partition, pc, producer)
        tp = TopicPartition(self.audit_log_topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, **security(), group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            await consumer.start()
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            # a record sealed only in part (a crash inside it) is read again, its sealed entries skipped
            resume = pc.last_source_offset + (1 if pc.last_source_index < 0 else 0)
            consumer.seek(tp, max(begin, resume))
            while True:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=self.batch)
                futs = []
                for m in batch.get(tp, []):
                    for index, body in self._entries(partition, m.offset, m.value, m.headers):
                        rec = self.seal(partition, m.offset, body, index)
                        if rec is not None:
                            key = str(body.get("action_id") or (body.get("event") or {}).get("id") or "").encode()
                            futs.append(await producer.send(
                                self.audit_topic, orjson.dumps(rec), key=key or None, partition=partition))
                if futs:
                    await asyncio.gather(*futs)
                    self.sealed += len(futs)
        finally:
            # a cancelled task (revocation) still finishes or fails its in-flight writes here
            await asyncio.gather(consumer.stop(), producer.stop(), return_exceptions=True)

    async def _note_foreign(self, partition: int, pc: PartitionChain, producer: Any) -> None:
        """Records in the chain's tail that no sealer wrote: alert (log, metric) and seal an
        ``event.rejected`` naming them as the next genuine link. Its id is derived from what it
        names, so a restart that finds the same forgery notes it once."""
        found = pc.foreign[:20]
        log.error("audit chain %s: %d record(s) in %s that no sealer wrote (forged or foreign), e.g. %s; "
                  "the chain continues from seq %s", partition, len(pc.foreign), self.audit_topic,
                  found[0], pc.head.next_seq - 1)
        if self.on_foreign is not None:
            self.on_foreign(partition, len(pc.foreign))
        eid = entry_id("event.rejected", "audit-foreign", partition, *(f.get("hash") or f.get("at") for f in found))
        if eid in pc.recent:
            return
        note = for_event("event.rejected", EventRef(id=f"{self.audit_topic}:{partition}"), datetime.now(UTC),
                         reason=f"{len(pc.foreign)} record(s) in the audit chain were not written by a sealer "
                                "(forged or foreign); the chain continues from the last genuine record",
                         detail={"foreign": found, "count": len(pc.foreign)}).body()
        note["id"] = eid
        # the note has no audit-log entry of its own: it carries the last genuine record's position
        # (so a resume after it starts where it would have) and says it is a note
        body = {**note, "source": {"partition": partition, "offset": pc.last_source_offset,
                                   **({"index": pc.last_source_index} if pc.last_source_index >= 0 else {}),
                                   "note": True}}
        rec = seal(body, pc.head, self.key)
        pc.remember(eid)
        await (await producer.send(self.audit_topic, orjson.dumps(rec), partition=partition))

    def _entries(self, partition: int, offset: int, raw: bytes | None,
                 headers: Any = None) -> list[tuple[int, dict[str, Any]]]:
        """(index, entry) of an audit-log record: a batch (``healer.wire.AuditBatch``), or one
        bare entry as healer 0.1 wrote them (index -1). A record that is neither is sealed as
        an ``event.rejected`` in its place: restarting on it would stop the chain for good,
        skipping it would hide it. The rejection's id names the record, so a replay of it is
        sealed once. With a keyring, an unsigned or badly signed record is rejected the same
        way, its content not sealed."""
        if self.keyring is not None:
            signer = verify(self.keyring, "audit-log", raw, list(headers or ()))
            if isinstance(signer, str):
                return [(-1, self._rejected(partition, offset, raw, signer.removeprefix("audit-log record ")))]
        try:
            return list(enumerate(decode_audit(raw).entries))
        except WireError as exc:
            why = str(exc)[:300]
        try:
            body = loads(raw or b"")
        except ValueError as exc:
            why = f"not JSON ({str(exc)[:200]})"
        else:
            if isinstance(body, dict) and isinstance(body.get("kind"), str):
                return [(-1, body)]
            if not isinstance(body, dict):
                why = f"JSON {type(body).__name__}, not an object"
        return [(-1, self._rejected(partition, offset, raw, f"carries no audit entry: {why}"))]

    def _rejected(self, partition: int, offset: int, raw: bytes | None, why: str) -> dict[str, Any]:
        where = f"{self.audit_log_topic}:{partition}:{offset}"
        log.warning("sealer %s: audit-log record at offset %s refused: %s", partition, offset, why)
        return for_event("event.rejected", EventRef(id=where), datetime.now(UTC),
                         reason=f"audit-log record {why}"[:500], detail={"raw_bytes": len(raw or b"")}).body()

    def seal(self, partition: int, offset: int, body: dict[str, Any], index: int = -1) -> dict[str, Any] | None:
        """The sealed record for the entry at (offset, index), or None when it was sealed before."""
        pc = self.chains[partition]
        if pc.sealed(offset, index):
            return None
        pc.last_source_offset, pc.last_source_index = offset, index
        eid = body.get("id")
        if eid and eid in pc.recent:
            return None  # an upstream replay of an entry already in the chain
        source: dict[str, Any] = {"partition": partition, "offset": offset}
        if index >= 0:
            source["index"] = index
        body = {**body, "source": source}
        rec = seal(body, pc.head, self.key)
        pc.remember(eid)
        return rec
