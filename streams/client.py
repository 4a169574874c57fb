"""Plain Kafka clients: produce records, read a topic or a range of one partition,
create and describe topics, describe a consumer group; and the process's TLS/SASL
client options (:func:`configure_security`, :func:`security`).

Used by the CLI (``healer emit``, ``audit``, ``approvals``, ``action run``,
``rollback``, ``topics``; ``describe_group`` tells whether a worker runs), by the
worker at start (create its topics, read their partition counts), by the gap guard
(``streams.gaps`` reads skipped records back with :func:`read_range`), by the
remote-write receiver (the partition count of ``{app}.metrics``), and by tests, the
demo and the benchmarks. Every aiokafka client in ``streams`` (the ingest stage's
consumer, the sealer, the HTTP API's producer and consumer) takes its options from
:func:`security`; the Faust stages themselves go through Faust.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

_SECURITY: dict[str, Any] = {}


def configure_security(sec: dict[str, Any]) -> None:
    """Set the process's Kafka TLS/SASL options (from Settings.kafka_security()).

    Called once by each entry point (``healer run``, every CLI command) before
    any client is made; every client in ``streams`` then connects with them.
    """
    opts: dict[str, Any] = {"security_protocol": sec.get("security_protocol", "PLAINTEXT")}
    if "SSL" in opts["security_protocol"]:
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=sec.get("cafile"), certfile=sec.get("certfile"), keyfile=sec.get("keyfile"))
    for k in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        if sec.get(k):
            opts[k] = sec[k]
    _SECURITY.clear()
    _SECURITY.update(opts)


def security() -> dict[str, Any]:
    """Client options for TLS/SASL; empty for PLAINTEXT."""
    return dict(_SECURITY) if _SECURITY.get("security_protocol", "PLAINTEXT") != "PLAINTEXT" else {}


class BrokerUnavailable(ConnectionError):
    """The broker did not answer; the message says where we tried. A ConnectionError, so the
    stages retry it as broker trouble."""


@dataclass(frozen=True)
class OutRecord:
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] | None = None


async def produce(bootstrap: str, topic: str, records: Iterable[OutRecord], timeout: float = 30.0) -> int:
    """Produce records in order with acks=all and idempotence; return the count acked."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **security(), acks="all", enable_idempotence=True,
        request_timeout_ms=int(timeout * 1000), linger_ms=5,
    )
    try:
        await asyncio.wait_for(producer.start(), timeout=timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        futs = []
        for r in records:
            futs.append(await producer.send(topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms,
                                            headers=r.headers))
        await asyncio.wait_for(asyncio.gather(*futs), timeout=timeout)
        return len(futs)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    follow: bool = False,
    idle_timeout: float = 2.0,
    start_timeout: float = 30.0,
) -> AsyncIterator[Any]:
    """Yield every record of ``topic`` from the beginning.

    Without ``follow`` it stops once it has read up to the end offsets it saw
    at the start (so a snapshot, even of a busy topic, terminates).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **security(), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout=start_timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps) if not follow else {}
        while True:
            if not follow and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return
            batch = await consumer.getmany(timeout_ms=int(idle_timeout * 1000), max_records=2000)
            if not batch and not follow:
                if all([await consumer.position(tp) >= end[tp] for tp in tps]):
                    return
                continue
            for _tp, msgs in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for m in msgs:
                    if not follow and m.offset >= end[_tp]:
                        continue
                    yield m
    finally:
        await consumer.stop()


async def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int,
                     timeout: float = 30.0) -> list[Any]:
    """The records ``[start, end)`` of one partition, in offset order (fewer when retention
    deleted some, or the log ends before ``end``). TimeoutError when that takes over ``timeout``."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **security(), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await asyncio.wait_for(consumer.start(), timeout=timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    out: list[Any] = []
    try:
        consumer.assign([tp])
        stop = min(end, (await consumer.end_offsets([tp]))[tp])
        consumer.seek(tp, max(start, (await consumer.beginning_offsets([tp]))[tp]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await consumer.position(tp) < stop:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic}[{partition}] {start}..{end - 1} took over {timeout:g}s")
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
            out += [r for r in batch.get(tp, []) if start <= r.offset < end]
    finally:
        await consumer.stop()
    return out


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], replicas: int = 1, timeout: float = 60.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Existing topics are left alone (their partition count is reported by
    :func:`topic_partitions`, not changed).
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    async with _admin(bootstrap, timeout) as admin:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=replicas,
                     topic_configs=(configs or {}).get(name, {}))
            for name, n in topics.items() if name not in existing
        ]
        if not missing:
            return []
        try:
            resp = await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            return []
    created = []
    for name, code, *_rest in getattr(resp, "topic_errors", getattr(resp, "topic_error_codes", [])):
        if code == 0:
            created.append(name)
        elif code != 36:  # 36: TOPIC_ALREADY_EXISTS (another worker won the race)
            raise BrokerUnavailable(f"creating topic {name} failed with Kafka error code {code}")
    return created


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, timeout: float) -> AsyncIterator[Any]:
    """A started admin client; BrokerUnavailable when the broker does not answer."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security(),
                                request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        yield admin
    finally:
        await admin.close()


async def topic_exists(bootstrap: str, topic: str, timeout: float = 15.0) -> bool:
    """Whether ``topic`` exists. Asks for the whole topic list: a metadata request that names
    a topic would create it on a broker with auto-creation on (with the default partitions)."""
    async with _admin(bootstrap, timeout) as admin:
        try:
            names = await asyncio.wait_for(admin.list_topics(), timeout=timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot list topics on {bootstrap}: {exc}") from exc
    return topic in names


async def topic_partitions(bootstrap: str, names: list[str], timeout: float) -> dict[str, int]:
    """Partition counts of the topics in ``names`` that exist (from the cluster's metadata).

    Naming the topics in the request creates them on a broker with auto-creation on: call it
    for topics that should exist (after :func:`ensure_topics`), else :func:`topic_exists`.
    """
    async with _admin(bootstrap, timeout) as admin:
        try:
            described = await asyncio.wait_for(admin.describe_topics(names), timeout=timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot describe topics on {bootstrap}: {exc}") from exc
    out: dict[str, int] = {}
    for t in described:
        if t.get("error_code", 0) == 0 and t.get("partitions"):
            out[str(t["topic"])] = len(t["partitions"])
    return out


@dataclass(frozen=True)
class GroupState:
    """A consumer group as the broker's coordinator sees it."""

    group: str
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: int


# the coordinator is not there yet (a fresh broker creates __consumer_offsets on first use),
# is loading or has moved: each clears up within seconds
_COORDINATOR_PENDING = (14, 15, 16)  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR


async def describe_group(bootstrap: str, group: str, timeout: float = 15.0) -> GroupState:
    """The state and member count of consumer group ``group`` (Kafka DescribeGroups).

    A group nobody ever joined, or whose members all left, has no members (state ``Dead``
    or ``Empty``). The CLI uses it to tell whether a worker of an app id runs (Faust's
    group id is the app id). BrokerUnavailable when the broker does not answer in time.
    """
    from aiokafka.errors import (
        CoordinatorLoadInProgressError,
        CoordinatorNotAvailableError,
        NotCoordinatorError,
    )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with _admin(bootstrap, timeout) as admin:
        while True:
            try:
                responses = await asyncio.wait_for(admin.describe_consumer_groups([group]),
                                                   max(deadline - loop.time(), 0.1))
                found = [g for r in responses for g in r.groups if g[1] == group]
                if found and found[0][0] not in _COORDINATOR_PENDING:
                    error_code, _, state, _, _, members, *_ = found[0]
                    if error_code:
                        raise BrokerUnavailable(f"describing consumer group {group} on {bootstrap} "
                                                f"failed with Kafka error code {error_code}")
                    return GroupState(group, str(state), len(members))
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
                pass
            except (KafkaError, OSError, TimeoutError) as exc:
                raise BrokerUnavailable(
                    f"cannot describe consumer group {group} on {bootstrap}: {exc}") from exc
            if loop.time() >= deadline:
                raise BrokerUnavailable(
                    f"the group coordinator for {group} on {bootstrap} did not answer in {timeout:g}s")
            await asyncio.sleep(0.5)
