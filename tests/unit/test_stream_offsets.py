"""Offset bookkeeping of the worker's stages: commits (streams.faust_fixes) and gaps (streams.gaps).

The tests that ``install()`` the patch on Faust's consumer do it inside ``faust_patch_scope``:
the consumer and the module's state are as before once the test ends, so no other test in the
process runs against a patched Faust by accident."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer

from streams import faust_fixes
from streams.faust_fixes import commit_offset, install
from streams.gaps import Gap, OffsetTracker


@contextmanager
def faust_patch_scope() -> Iterator[None]:
    """``install()`` may be called inside: everything it changes is undone on exit."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Consumer, "_new_offset", Consumer._new_offset)
        m.setattr(Consumer, "perform_seek", Consumer.perform_seek)
        m.setattr(faust_fixes, "_INSTALLED", False)
        m.setattr(faust_fixes, "_floor", None)
        m.setattr(faust_fixes, "_after_seek", None)
        yield


@pytest.fixture
def scoped_patch() -> Iterator[None]:
    with faust_patch_scope():
        yield


def test_commit_waits_for_the_oldest_record() -> None:
    # record 10 is still being worked on by another actor: nothing may be committed past it
    assert commit_offset([11, 12], committed=10, gaps=[]) == (None, [11, 12])
    assert commit_offset([11, 12, 10], committed=10, gaps=[]) == (13, [])
    # committed offset 0 is a real offset, not "unknown"
    assert commit_offset([1, 2], committed=0, gaps=[]) == (None, [1, 2])
    assert commit_offset([0, 1, 3], committed=0, gaps=[]) == (2, [3])


def test_commit_without_a_committed_offset_starts_at_the_oldest_ack() -> None:
    assert commit_offset([5, 6, 8], committed=None, gaps=[]) == (7, [8])
    assert commit_offset([], committed=None, gaps=[]) == (None, [])


def test_gaps_count_as_done_only_up_to_the_newest_ack() -> None:
    # records 11..19 were read back by the gap guard and processed
    assert commit_offset([10, 20], committed=10, gaps=[(11, 20)]) == (21, [])
    # a gap beyond every ack is not trusted yet (the record after it is not processed)
    assert commit_offset([10], committed=10, gaps=[(11, 20)]) == (11, [])


def test_installed_patch_drives_fausts_consumer_bookkeeping(scoped_patch: None) -> None:
    from collections import defaultdict

    from intervaltree import IntervalTree

    install()
    tp = ("healer.actions", 0)
    fake = SimpleNamespace(
        _acked=defaultdict(list, {tp: [11, 12]}),
        _acked_index=defaultdict(set, {tp: {11, 12}}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {tp: 10}),
    )
    assert Consumer._new_offset(fake, tp) is None  # type: ignore[arg-type]
    fake._acked[tp].append(10)
    fake._acked_index[tp].add(10)
    assert Consumer._new_offset(fake, tp) == 13  # type: ignore[arg-type]
    assert fake._acked[tp] == [] and fake._acked_index[tp] == set()


def test_tracker_finds_jumps_and_seeds_from_the_committed_offset() -> None:
    t = OffsetTracker()
    coords = [("s", 0, 5), ("s", 0, 6), ("s", 1, 40), ("s", 0, 9), ("s", 1, 41)]
    assert t.unseeded(coords) == {("s", 0), ("s", 1)}
    gaps, nxt = t.plan(coords, {("s", 0): 5, ("s", 1): None})
    assert gaps == [(3, Gap("s", 0, 7, 9))]
    assert nxt == {("s", 0): 10, ("s", 1): 42}
    # nothing is recorded until apply(): a failed repair finds the same gap again
    assert t.plan([("s", 0, 9)], {("s", 0): 7})[0] == [(0, Gap("s", 0, 7, 9))]
    t.apply(nxt)
    assert t.unseeded([("s", 0, 10)]) == set()
    assert t.plan([("s", 0, 10)], {})[0] == []


def test_tracker_lets_replays_through_without_moving_back() -> None:
    t = OffsetTracker()
    _, nxt = t.plan([("s", 0, 3)], {("s", 0): 3})
    t.apply(nxt)
    gaps, nxt = t.plan([("s", 0, 1), ("s", 0, 2), ("s", 0, 3), ("s", 0, 4)], {})
    assert gaps == []
    t.apply(nxt)
    assert t.expected[("s", 0)] == 5
    t.reset()
    assert t.plan([("s", 0, 9)], {("s", 0): 9})[0] == []


@pytest.mark.parametrize("first", [0, 1])
def test_tracker_without_a_seed_trusts_the_first_record(first: int) -> None:
    t = OffsetTracker()
    gaps, nxt = t.plan([("s", 0, first + 100)], {("s", 0): None})
    assert gaps == [] and nxt == {("s", 0): first + 101}


def test_without_a_committed_offset_the_floor_guards_the_commit(scoped_patch: None) -> None:
    from collections import defaultdict

    from intervaltree import IntervalTree

    # the partition has no committed offset; the gap guard started it at 0; record 0 is in flight
    install(lambda topic, p: 0)
    tp = ("healer.actions", 1)
    fake = SimpleNamespace(
        _acked=defaultdict(list, {tp: [1, 2]}), _acked_index=defaultdict(set, {tp: {1, 2}}),
        _gap=defaultdict(IntervalTree), _committed_offset=defaultdict(lambda: None),
    )
    assert Consumer._new_offset(fake, tp) is None  # type: ignore[arg-type]
    fake._acked[tp].append(0)
    assert Consumer._new_offset(fake, tp) == 3  # type: ignore[arg-type]


def test_install_is_idempotent_and_the_scope_undoes_it() -> None:
    def before(self: object, tp: object) -> None:  # stands for whatever the process had
        return None

    def floor(topic: str, partition: int) -> int:
        return 7

    with pytest.MonkeyPatch.context() as outer:
        outer.setattr(Consumer, "_new_offset", before)
        state = (faust_fixes._INSTALLED, faust_fixes._floor)
        with faust_patch_scope():
            install()
            patched = Consumer._new_offset
            assert patched is faust_fixes._new_offset
            install(floor)  # a second worker app in the process: same patch, its floor
            assert Consumer._new_offset is patched and faust_fixes._floor is floor
            install()  # no floor given: the one set stays
            assert faust_fixes._floor is floor
            assert Consumer.perform_seek is faust_fixes._perform_seek
        assert Consumer._new_offset is before
        assert (faust_fixes._INSTALLED, faust_fixes._floor) == state


def test_the_after_seek_hook_runs_once_fausts_seek_is_done(scoped_patch: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # the hook seeks partitions without a committed offset to their log start: before Faust's
    # own seek it would be undone (the fetcher moves on while the flow is stopped)
    calls: list[object] = []

    async def faust_seek(self: object) -> None:
        calls.append(("faust", self))

    async def hook(consumer: object) -> None:
        calls.append(("hook", consumer))

    monkeypatch.setattr(faust_fixes, "_faust_perform_seek", faust_seek)
    consumer = object()
    install()
    asyncio.run(Consumer.perform_seek(consumer))  # type: ignore[arg-type]
    assert calls == [("faust", consumer)]  # no hook: Faust's seek only
    install(after_seek=hook)
    asyncio.run(Consumer.perform_seek(consumer))  # type: ignore[arg-type]
    assert calls[1:] == [("faust", consumer), ("hook", consumer)]
