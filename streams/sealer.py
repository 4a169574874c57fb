"""The audit sealer: the single writer of each audit chain.

Unsealed entries arrive on ``{app}.audit-log``; entries of partition ``p`` are
sealed into chain ``p`` and written to partition ``p`` of ``{app}.audit``.
The audit topic itself is the source of truth for each chain's head: on the
first entry of a partition in this process the sealer reads the chain's tail
back from the audit topic, so a restarted or rebalanced sealer continues the
chain without gaps or forks. Each sealed record carries its ``source``
(audit-log partition and offset); entries at or below the last sealed offset
are redeliveries and are skipped, and recent entry ids are remembered so an
upstream replay (same deterministic id) is not written twice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from healer.chain import GENESIS, ChainHead, seal
from streams.codec import loads

log = logging.getLogger("healer.sealer")

RECENT_IDS = 20_000
TAIL_READ = 20_000


@dataclass
class PartitionChain:
    head: ChainHead
    last_source_offset: int = -1
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def remember(self, entry_id: str | None) -> None:
        if not entry_id:
            return
        self.recent[entry_id] = None
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)


async def read_tail(bootstrap: str, topic: str, partition: int, limit: int = TAIL_READ) -> PartitionChain:
    """Rebuild a chain's head and recent ids from the audit topic's tail."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        begin = (await consumer.beginning_offsets([tp]))[tp]
        pc = PartitionChain(ChainHead(str(partition), 0, GENESIS))
        if end <= begin:
            return pc
        consumer.seek(tp, max(begin, end - limit))
        last: dict[str, Any] | None = None
        while True:
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=5000)
            msgs = batch.get(tp, [])
            for m in msgs:
                try:
                    rec = loads(m.value)
                except ValueError:
                    continue
                last = rec
                pc.remember(rec.get("id"))
                src = rec.get("source") or {}
                if isinstance(src.get("offset"), int):
                    pc.last_source_offset = max(pc.last_source_offset, src["offset"])
            if (await consumer.position(tp)) >= end or not msgs:
                break
        if last is not None:
            pc.head = ChainHead(str(partition), int(last["seq"]) + 1, str(last["hash"]))
        return pc
    finally:
        await consumer.stop()


class Sealer:
    """Seals entries per partition; call :meth:`forget` when partitions are revoked."""

    def __init__(self, bootstrap: str, audit_topic: str) -> None:
        self.bootstrap = bootstrap
        self.audit_topic = audit_topic
        self.chains: dict[int, PartitionChain] = {}

    def forget(self, partitions: set[int] | None = None) -> None:
        if partitions is None:
            self.chains.clear()
        else:
            for p in partitions:
                self.chains.pop(p, None)

    async def chain(self, partition: int) -> PartitionChain:
        pc = self.chains.get(partition)
        if pc is None:
            pc = await read_tail(self.bootstrap, self.audit_topic, partition)
            self.chains[partition] = pc
            log.info("audit chain %s resumes at seq %s", partition, pc.head.next_seq)
        return pc

    async def seal(self, partition: int, offset: int, body: dict[str, Any]) -> dict[str, Any] | None:
        """The sealed record for an entry, or None when it was sealed before."""
        pc = await self.chain(partition)
        if offset <= pc.last_source_offset:
            return None
        eid = body.get("id")
        if eid and eid in pc.recent:
            pc.last_source_offset = offset
            return None
        body = {**body, "source": {"partition": partition, "offset": offset}}
        rec = seal(body, pc.head)
        pc.last_source_offset = offset
        pc.remember(eid)
        return rec
