"""``GapGuard.done()`` (streams.gaps): the ranges the guard filled are handed to Faust's
consumer as gaps, merged with what it already has, so its commits move past them; a range
of a partition revoked meanwhile is dropped. Pure bookkeeping on the consumer's ``_gap``
interval trees, so a stand-in consumer with an assignment and those trees is enough."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import pytest
from aiokafka import TopicPartition
from intervaltree import Interval, IntervalTree

from streams.faust_fixes import commit_offset
from streams.gaps import Gap, GapGuard

TOPIC = "t.signals"


class StandInConsumer:
    """The two things ``done()`` touches on Faust's consumer: ``assignment()`` and ``_gap``."""

    def __init__(self, assigned: Iterable[int]) -> None:
        self.assigned = {TopicPartition(TOPIC, p) for p in assigned}
        self._gap: defaultdict[TopicPartition, IntervalTree] = defaultdict(IntervalTree)
        self.assignment_calls = 0

    def assignment(self) -> set[TopicPartition]:
        self.assignment_calls += 1
        return set(self.assigned)


def unused(*args: object) -> object:
    raise AssertionError("done() must not read offsets or the broker")


def guard(*filled: Gap) -> GapGuard:
    g = GapGuard("127.0.0.1:9", unused, unused, unused)
    g.filled.extend(filled)
    return g


def intervals(c: StandInConsumer, partition: int) -> list[tuple[int, int]]:
    return sorted((iv.begin, iv.end) for iv in c._gap[TopicPartition(TOPIC, partition)])


def test_nothing_filled_leaves_the_consumer_alone() -> None:
    c = StandInConsumer([0])
    guard().done(c)
    assert c.assignment_calls == 0 and not c._gap


def test_filled_ranges_are_merged_with_the_consumers_gaps() -> None:
    c = StandInConsumer([0, 1])
    c._gap[TopicPartition(TOPIC, 0)].add(Interval(11, 15))  # Faust's own record of a jump
    c._gap[TopicPartition(TOPIC, 0)].add(Interval(40, 42))
    g = guard(Gap(TOPIC, 0, 5, 9), Gap(TOPIC, 0, 8, 12), Gap(TOPIC, 1, 3, 4))
    g.done(c)
    # [5, 9) + [8, 12) + [11, 15) overlap: one range; [40, 42) is apart and stays so
    assert intervals(c, 0) == [(5, 15), (40, 42)]
    assert intervals(c, 1) == [(3, 4)]
    assert g.filled == [] and c.assignment_calls == 1  # partitions looked up once per call
    g.done(c)  # handed over once: a second call adds nothing
    assert intervals(c, 0) == [(5, 15), (40, 42)] and c.assignment_calls == 1


def test_a_range_of_a_revoked_partition_is_dropped() -> None:
    c = StandInConsumer([0])
    g = guard(Gap(TOPIC, 1, 5, 9), Gap(TOPIC, 0, 2, 3))
    g.done(c)
    assert TopicPartition(TOPIC, 1) not in c._gap  # the new owner starts from the committed offset
    assert intervals(c, 0) == [(2, 3)]
    assert g.filled == []  # not kept for a later assignment of the partition either
    c.assigned.add(TopicPartition(TOPIC, 1))
    g.done(c)
    assert TopicPartition(TOPIC, 1) not in c._gap


@pytest.mark.parametrize("hand_over", [True, False])
def test_the_commit_moves_past_a_filled_range_only_once_handed_over(hand_over: bool) -> None:
    # the stage saw 3, 4, then 9: the guard read 5..8 itself, so Faust never acks them
    c = StandInConsumer([0])
    g = guard(Gap(TOPIC, 0, 5, 9))
    if hand_over:
        g.done(c)
    gaps = intervals(c, 0)
    assert commit_offset([3, 4, 9], committed=3, gaps=gaps) == ((10, []) if hand_over else (5, [9]))
