"""The audit sealer (streams/sealer.py) resuming a chain, on the real broker with the real
Sealer class: after a revoke and a new Sealer, after a SIGKILL mid-stream (a sealer in a child
process), and in a handover of one partition between two Sealer instances, the chain goes on at
seq N linked to record N-1 (no fork, no gap, no repeat); an entry replayed into the audit-log
(same entry id) is sealed once, also when only the audit topic's tail still knows the id;
a record in the audit topic that is not a sealed record is skipped when the tail is read; a
record in the audit-log that is not an audit entry is sealed as ``event.rejected`` in its place
(before, it stopped the partition's chain for good: the sealer restarted on it forever).

Every audit-log input goes through :func:`write_entries` and every sealed record is read
through :func:`read_sealed`: the audit-log record format is about to change (a batch of
entries per record), and those two functions are the only places that know it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from healer.audit import for_event
from healer.chain import verify
from healer.models import EventRef
from streams.client import ensure_topics
from streams.sealer import Sealer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
T = TypeVar("T")


# ---- the two helpers that know the record formats -----------------------------------------

async def write_entries(
    bootstrap: str, topic: str, partition: int, entries: Iterable[dict[str, Any] | bytes | None],
    per_record: int = 3,
) -> None:
    """Write audit-log input to ``topic[partition]`` as the worker writes it: consecutive dict
    entries packed ``per_record`` to a record (``healer.wire.AuditBatch``, so a resume inside a
    record is exercised too); ``bytes`` is written as it is and ``None`` as a record with a key
    and no value (malformed records)."""
    from healer.wire import AuditBatch, encode

    records: list[bytes | None] = []
    pending: list[dict[str, Any]] = []
    for e in entries:
        if isinstance(e, dict):
            pending.append(e)
            if len(pending) == per_record:
                records.append(encode(AuditBatch(entries=pending)))
                pending = []
            continue
        if pending:
            records.append(encode(AuditBatch(entries=pending)))
            pending = []
        records.append(e)
    if pending:
        records.append(encode(AuditBatch(entries=pending)))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=b"malformed" if value is None else None, partition=partition)
                for value in records]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def read_sealed(
    bootstrap: str, topic: str, partition: int, until_ids: Iterable[str] = (), timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Every record of ``topic[partition]`` from its start (a record that is not JSON comes back
    as ``{"__raw__": bytes}``), read until each id in ``until_ids`` was seen and then up to the
    partition's end offset at that moment."""
    wanted = set(until_ids)
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = asyncio.get_running_loop().time() + timeout
        end: int | None = None
        while True:
            seen = {r.get("id") for r in out}
            if end is None and wanted <= seen:
                end = (await consumer.end_offsets([tp]))[tp]
            if end is not None and await consumer.position(tp) >= end:
                return out
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}[{partition}]: ids {sorted(wanted - seen)[:5]} not sealed "
                                     f"within {timeout}s; {len(out)} records read")
            batch = await consumer.getmany(tp, timeout_ms=500)
            for m in batch.get(tp, []):
                try:
                    out.append(_loads(m.value or b""))
                except ValueError:
                    out.append({"__raw__": m.value})
    finally:
        await consumer.stop()


def _json(obj: dict[str, Any]) -> bytes:
    from streams.codec import dumps

    return dumps(obj)


def _loads(raw: bytes) -> dict[str, Any]:
    from streams.codec import loads

    rec = loads(raw)
    if not isinstance(rec, dict):
        raise ValueError("not an object")
    return rec


# ---- test helpers -------------------------------------------------------------------------

def entries(prefix: str, first: int, n: int) -> list[dict[str, Any]]:
    """Unsealed entries with deterministic ids, as the worker's stages build them."""
    return [for_event("event.received", EventRef(id=f"{prefix}:{i}"), T0, detail={"i": i}).body()
            for i in range(first, first + n)]


def ids(es: Iterable[dict[str, Any]]) -> list[str]:
    return [str(e["id"]) for e in es]


def sealed_only(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "__raw__" not in r and isinstance(r.get("seq"), int)]


def assert_one_chain(records: list[dict[str, Any]], chain: str, expected_ids: list[str]) -> None:
    """``records`` are exactly one intact chain holding ``expected_ids`` in this order, once each."""
    recs = sealed_only(records)
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert {r["chain"] for r in recs} == {chain}
    assert ids(recs) == expected_ids
    report = verify(recs)
    assert report.ok, [str(p) for p in report.problems]
    positions = [(r["source"]["offset"], r["source"].get("index", -1)) for r in recs
                 if not r["source"].get("note")]  # a sealer's note on foreign records has no entry
    assert positions == sorted(set(positions))  # each audit-log entry sealed at most once, in order


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


async def topics(bootstrap: str, app: str) -> tuple[str, str]:
    log, audit = f"{app}.audit-log", f"{app}.audit"
    await ensure_topics(bootstrap, {log: PARTITIONS, audit: PARTITIONS})
    return log, audit


async def seal_and_revoke(bootstrap: str, log: str, audit: str, partition: int,
                          first: list[dict[str, Any]]) -> Sealer:
    """A Sealer seals ``first`` as a fresh chain of ``partition``, then gives the partition up."""
    sealer = Sealer(bootstrap, log, audit)
    await sealer.assign({partition})
    await write_entries(bootstrap, log, partition, first)
    assert_one_chain(await read_sealed(bootstrap, audit, partition, ids(first)), str(partition), ids(first))
    await sealer.revoke({partition})
    assert sealer.owned == [] and sealer.chains == {}
    return sealer


# ---- tests --------------------------------------------------------------------------------

def test_revoke_then_a_new_sealer_continues_at_seq_n_and_drops_replays(kafka_bootstrap: str, unique_app_id: str) -> None:
    async def main() -> None:
        log, audit = await topics(kafka_bootstrap, unique_app_id)
        first = entries("a", 0, 5)
        await seal_and_revoke(kafka_bootstrap, log, audit, 0, first)

        # Written while nobody seals: a replay of e2 (now known only from the audit tail) and new ones.
        more = entries("a", 5, 3)
        await write_entries(kafka_bootstrap, log, 0, [first[2], *more])
        s2 = Sealer(kafka_bootstrap, log, audit)
        await s2.assign({0})
        try:
            recs = await read_sealed(kafka_bootstrap, audit, 0, ids(more))
            assert_one_chain(recs, "0", ids(first + more))
            assert recs[5]["prev_hash"] == recs[4]["hash"]
            # records of 3 entries: a0-a2 @0, a3-a4 @1, then a2 (replayed), a5, a6 @2 and a7 @3
            assert recs[5]["source"] == {"partition": 0, "offset": 2, "index": 1}  # the replay @2#0 dropped
            chain = s2.chains[0]
            assert (chain.head.next_seq, chain.last_source_offset, chain.last_source_index) == (8, 3, 0)

            # a replay while the same sealer runs is dropped too
            last = entries("a", 8, 1)
            await write_entries(kafka_bootstrap, log, 0, [more[1], first[0], *last])
            recs = await read_sealed(kafka_bootstrap, audit, 0, ids(last))
            assert_one_chain(recs, "0", ids(first + more + last))
        finally:
            await s2.close()

    run(main)


SEALER_CHILD = """
import asyncio, sys
from streams.sealer import Sealer

async def main() -> None:
    sealer = Sealer(sys.argv[1], sys.argv[2], sys.argv[3])
    await sealer.assign({int(sys.argv[4])})
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _end_offset(bootstrap: str, topic: str, partition: int) -> int:
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def test_sigkill_mid_stream_then_a_new_sealer_continues(
    kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    """A sealer process is SIGKILLed while it works through a backlog (no revoke, no cleanup);
    a new Sealer picks the chain up from the audit topic's tail."""
    total = 3000
    backlog = entries("k", 0, total)
    log_file = tmp_path / "sealer-child.log"

    async def before_kill() -> int:
        log, audit = await topics(kafka_bootstrap, unique_app_id)
        await write_entries(kafka_bootstrap, log, 1, backlog)
        with open(log_file, "wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", SEALER_CHILD, kafka_bootstrap, log, audit, "1"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            deadline = asyncio.get_running_loop().time() + 120
            while (sealed := await _end_offset(kafka_bootstrap, audit, 1)) < 200:
                assert child.poll() is None, log_file.read_text()
                assert asyncio.get_running_loop().time() < deadline, log_file.read_text()
                await asyncio.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        return sealed

    seen_at_kill = run(before_kill)
    print(f"sealed records seen just before SIGKILL: >= {seen_at_kill} of {total}")

    async def after_kill() -> None:
        log, audit = f"{unique_app_id}.audit-log", f"{unique_app_id}.audit"
        s2 = Sealer(kafka_bootstrap, log, audit)
        await s2.assign({1})
        try:
            recs = await read_sealed(kafka_bootstrap, audit, 1, ids(backlog[-1:]))
            assert_one_chain(recs, "1", ids(backlog))
        finally:
            await s2.close()

    run(after_kill)


def test_handover_of_a_partition_between_two_sealers(kafka_bootstrap: str, unique_app_id: str) -> None:
    async def main() -> None:
        log, audit = await topics(kafka_bootstrap, unique_app_id)
        a = Sealer(kafka_bootstrap, log, audit)
        b = Sealer(kafka_bootstrap, log, audit)
        try:
            await a.assign({0, 1})
            p0, p1 = entries("h0", 0, 4), entries("h1", 0, 6)
            await write_entries(kafka_bootstrap, log, 0, p0)
            await write_entries(kafka_bootstrap, log, 1, p1)
            await read_sealed(kafka_bootstrap, audit, 0, ids(p0))
            await read_sealed(kafka_bootstrap, audit, 1, ids(p1))

            # the rebalance order: the old owner stops (finishing its writes), then the new one starts
            await a.revoke({1})
            await b.assign({1})
            assert a.owned == [0] and b.owned == [1]
            q0, q1 = entries("h0", 4, 3), entries("h1", 6, 5)
            await write_entries(kafka_bootstrap, log, 1, [p1[-1], *q1])  # with a replay across the handover
            await write_entries(kafka_bootstrap, log, 0, q0)
            r1 = await read_sealed(kafka_bootstrap, audit, 1, ids(q1))
            r0 = await read_sealed(kafka_bootstrap, audit, 0, ids(q0))
            assert_one_chain(r1, "1", ids(p1 + q1))
            assert_one_chain(r0, "0", ids(p0 + q0))
            assert r1[6]["seq"] == 6 and r1[6]["prev_hash"] == r1[5]["hash"]
            assert a.chains[0].head.next_seq == 7 and 1 not in a.chains
            assert b.chains[1].head.next_seq == 11
        finally:
            await asyncio.gather(a.close(), b.close())

    run(main)


def test_records_in_the_audit_tail_that_are_not_sealed_records_are_skipped(
    kafka_bootstrap: str, unique_app_id: str
) -> None:
    """Someone wrote to the audit topic itself (not JSON, JSON that is no sealed record): the
    next sealer resumes after the last real record and the chain stays intact around them."""
    async def main() -> None:
        log, audit = await topics(kafka_bootstrap, unique_app_id)
        first = entries("t", 0, 3)
        await seal_and_revoke(kafka_bootstrap, log, audit, 0, first)

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for junk in (b"\xff\xfe not json", b'{"hello": "world"}', b"[1, 2, 3]", None):
                await producer.send_and_wait(audit, junk, key=b"junk", partition=0)
        finally:
            await producer.stop()

        more = entries("t", 3, 2)
        await write_entries(kafka_bootstrap, log, 0, [first[1], *more])
        s2 = Sealer(kafka_bootstrap, log, audit)
        await s2.assign({0})
        try:
            recs = await read_sealed(kafka_bootstrap, audit, 0, ids(more))
        finally:
            await s2.close()
        # 3 sealed, 4 junk, then the sealer's note naming the junk (the next genuine link), 2 sealed
        assert len(recs) == 3 + 4 + 1 + 2
        assert recs[3] == {"__raw__": b"\xff\xfe not json"}
        sealed = sealed_only(recs)
        note = sealed[3]
        assert note["kind"] == "event.rejected" and note["detail"]["count"] == 4
        assert "not written by a sealer" in note["reason"]
        assert_one_chain(recs, "0", [*ids(first), note["id"], *ids(more)])
        assert sealed[3]["prev_hash"] == sealed[2]["hash"] and sealed[3]["seq"] == 3

    run(main)


def test_a_record_in_the_audit_log_that_is_no_entry_is_sealed_as_rejected(
    kafka_bootstrap: str, unique_app_id: str
) -> None:
    """A non-JSON record (or JSON that is not an object) in the audit-log input: the chain
    records an ``event.rejected`` at its place, naming the offset, and goes on with the next
    entry (one bad record must neither stop the chain nor vanish from it)."""
    async def main() -> None:
        log, audit = await topics(kafka_bootstrap, unique_app_id)
        good = entries("j", 0, 3)
        s = Sealer(kafka_bootstrap, log, audit)
        await s.assign({1})
        try:
            await write_entries(kafka_bootstrap, log, 1,
                                [good[0], b"\x00garbage", good[1], b'"a string"', None, good[2]])
            recs = await read_sealed(kafka_bootstrap, audit, 1, ids(good), timeout=60)
        finally:
            await s.close()
        assert [r["kind"] for r in recs] == [
            "event.received", "event.rejected", "event.received", "event.rejected", "event.rejected",
            "event.received"]
        assert verify(recs).ok and [r["seq"] for r in recs] == [0, 1, 2, 3, 4, 5]
        bad = [r for r in recs if r["kind"] == "event.rejected"]
        assert [r["event"]["id"] for r in bad] == [f"{log}:1:1", f"{log}:1:3", f"{log}:1:4"]
        assert [r["source"]["offset"] for r in bad] == [1, 3, 4]
        assert "not JSON" in bad[0]["reason"] and "not an object" in bad[1]["reason"]
        assert "not JSON" in bad[2]["reason"]
        assert all(len(r["reason"]) <= 500 for r in bad)

    run(main)
