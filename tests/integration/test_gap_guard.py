"""The gap guard reads records a stream skipped back from a real broker (streams.gaps)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.gaps import Fetched, Gap, GapGuard
from tests.workers import emit

pytestmark = pytest.mark.integration  # a real broker (the session's kafka_bootstrap)


def event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(key=None, value=b"x", message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


async def no_log_start(tps: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    raise AssertionError(f"the committed offset is known: no log start needed for {tps}")


async def log_start_zero(tps: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return dict.fromkeys(tps, 0)


def test_skipped_range_is_read_back_in_order(kafka_bootstrap: str, unique_app_id: str) -> None:
    topic = f"{unique_app_id}.signals"
    emit(kafka_bootstrap, topic, [f"r{i}".encode() for i in range(30)], keys=[b"k"] * 30)
    seen: list[tuple[Gap, int]] = []
    guard = GapGuard(kafka_bootstrap, lambda t, p: 3, no_log_start, lambda: {}, lambda g, n: seen.append((g, n)))

    async def go() -> list[list[Any]]:
        first = await guard.fill([event(topic, 0, 3), event(topic, 0, 4), event(topic, 0, 9), event(topic, 0, 10)])
        again = await guard.fill([event(topic, 0, 11)])  # contiguous: handed through
        later = await guard.fill([event(topic, 0, 29)])
        return [first, again, later]

    first, again, later = asyncio.run(go())
    assert [e.message.offset for e in first] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert [e.value for e in first[2:6]] == [b"r5", b"r6", b"r7", b"r8"]
    assert all(isinstance(e, Fetched) and e.message.timestamp for e in first[2:6])
    assert [e.message.offset for e in again] == [11]
    assert [e.message.offset for e in later] == list(range(12, 30))
    assert seen == [(Gap(topic, 0, 5, 9), 4), (Gap(topic, 0, 12, 29), 17)]
    assert guard.filled == [Gap(topic, 0, 5, 9), Gap(topic, 0, 12, 29)]


def test_a_gap_before_the_first_record_uses_the_committed_offset(kafka_bootstrap: str, unique_app_id: str) -> None:
    topic = f"{unique_app_id}.alerts"
    emit(kafka_bootstrap, topic, [b"a", b"b", b"c", b"d"], keys=[b"k"] * 4)
    guard = GapGuard(kafka_bootstrap, lambda t, p: 1, no_log_start, lambda: {})
    out = asyncio.run(guard.fill([event(topic, 0, 3)]))
    assert [(e.message.offset, e.value) for e in out[:2]] == [(1, b"b"), (2, b"c")]
    assert out[2].message.offset == 3


def test_without_a_committed_offset_the_partition_starts_at_the_log_start(
    kafka_bootstrap: str, unique_app_id: str
) -> None:
    # a new owner of a partition the group never committed came up at the log end
    topic = f"{unique_app_id}.actions"
    emit(kafka_bootstrap, topic, [f"a{i}".encode() for i in range(5)], keys=[b"k"] * 5)
    guard = GapGuard(kafka_bootstrap, lambda t, p: None, log_start_zero, lambda: {})
    out = asyncio.run(guard.fill([event(topic, 0, 4)]))
    assert [e.message.offset for e in out] == [0, 1, 2, 3, 4]
    assert guard.floor(topic, 0) == 0
