"""Offset-gap guard for the worker's stages.

healer's topics are neither transactional nor compacted (changelogs aside),
so the offsets of one partition are contiguous: a stage that is handed offset
``N+k`` after ``N`` on a partition was never handed ``N+1 .. N+k-1``.
faust-streaming (0.15.x) can do that around a rebalance: records its fetcher
already read are dropped while the flow is suspended, and when the partition
is sought back to its committed offset in the middle of such a fetch, the
fetcher records the jump as a "gap", counts it as acknowledged and drops the
re-fetched records as already read.

Every stage passes each batch through :meth:`GapGuard.fill` first. The guard
remembers, per partition and rebalance generation, the next offset it expects
(starting from the committed offset Faust sought to, or the log start when the
group has committed nothing there: we saw a new owner start such a partition at
its end); on a jump it reads the
skipped range straight from the broker with a consumer of its own and returns
those records (as :class:`Fetched` stand-ins for Faust events) ahead of the
batch. Every stage is idempotent per offset, so handing over a record twice is
harmless; not handing it over is what this prevents. After the stage has
handled the batch, :meth:`GapGuard.done` tells Faust's consumer the range is
processed, so its commits move past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("healer.gaps")

FETCH_TIMEOUT = 30.0  # seconds to read one skipped range


@dataclass(frozen=True)
class FetchedMessage:
    topic: str
    partition: int
    offset: int
    timestamp: float | None  # seconds, as on Faust's messages


@dataclass(frozen=True)
class Fetched:
    """A record the guard read itself, shaped like the parts of a Faust event the stages use."""

    key: bytes | None
    value: bytes | None
    message: FetchedMessage
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    start: int  # first offset not handed over
    end: int  # the offset that was handed over instead (exclusive end)


@dataclass
class OffsetTracker:
    """Pure bookkeeping: the next offset expected per partition."""

    expected: dict[tuple[str, int], int] = field(default_factory=dict)

    def reset(self) -> None:
        self.expected.clear()

    def unseeded(self, coords: Sequence[tuple[str, int, int]]) -> set[tuple[str, int]]:
        """Partitions in ``coords`` with no expected offset yet (first records since the assignment)."""
        return {(t, p) for t, p, _ in coords if (t, p) not in self.expected}

    def plan(
        self, coords: Sequence[tuple[str, int, int]], seeds: dict[tuple[str, int], int | None]
    ) -> tuple[list[tuple[int, Gap]], dict[tuple[str, int], int]]:
        """The gaps before the records at ``coords`` (topic, partition, offset), by
        index, and the expected offsets to :meth:`apply` once they are handled.

        ``seeds`` gives the first expected offset of a partition seen for the
        first time: the committed offset the consumer was sought to, or the log
        start when the group has none (``None``: unknown, trust the first record).
        Offsets below the expected one are replays: allowed, and they do not
        move it back. Nothing changes until :meth:`apply`, so a failed repair is
        tried again.
        """
        nxt: dict[tuple[str, int], int] = {}
        gaps: list[tuple[int, Gap]] = []
        for i, (topic, partition, offset) in enumerate(coords):
            key = (topic, partition)
            want = nxt[key] if key in nxt else self.expected.get(key)
            if want is None:
                want = seeds.get(key)
            if want is not None and offset > want:
                gaps.append((i, Gap(topic, partition, want, offset)))
            nxt[key] = max(offset + 1, want if want is not None else 0)
        return gaps, nxt

    def apply(self, nxt: dict[tuple[str, int], int]) -> None:
        for key, off in nxt.items():
            self.expected[key] = max(off, self.expected.get(key, 0))


async def fetch_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, security: dict[str, Any]
) -> list[Fetched]:
    """Records ``[start, end)`` of one partition (fewer when retention deleted some), as
    stand-ins for Faust events. ``security`` is applied by streams.client already."""
    from streams.client import read_range

    out: list[Fetched] = []
    for rec in await read_range(bootstrap, topic, partition, start, end, timeout=FETCH_TIMEOUT):
        ts = rec.timestamp / 1000.0 if rec.timestamp is not None else None
        out.append(Fetched(rec.key, rec.value, FetchedMessage(topic, partition, rec.offset, ts),
                           tuple(rec.headers or ())))
    return out


async def start_uncommitted_at_log_start(consumer: Any, topics: set[str]) -> dict[Any, int]:
    """Seek each assigned partition of ``topics`` that the group has no committed
    offset for (or 0, which Faust and aiokafka treat alike) to its log start.

    Called when a rebalance completes, before Faust seeks the others to their
    committed offsets. The group's reset policy is "earliest", yet we saw a worker
    that took such a partition over from a killed one start it at its end: the
    records the dead worker had not committed were never handed to anyone, and
    with no later record the gap guard has nothing to compare with.
    """
    tps = {tp for tp in consumer.assignment() if tp.topic in topics}
    if not tps:
        return {}
    committed = await consumer.seek_to_committed()
    missing = [tp for tp in tps if not committed.get(tp)]
    if not missing:
        return {}
    starts = await consumer.earliest_offsets(*missing)
    seeks = {tp: int(starts[tp]) for tp in missing if starts.get(tp) is not None}
    if seeks:
        await consumer.seek_wait(seeks)
        shown = [f"{tp.topic}[{tp.partition}]@{off}" for tp, off in sorted(seeks.items())]
        log.info("no committed offset: starting %d partitions at the log start: %s%s", len(shown),
                 ", ".join(shown[:8]), ", ..." if len(shown) > 8 else "")
    return seeks


class GapGuard:
    """Per-stage gap detection and repair; see the module docstring."""

    def __init__(
        self,
        bootstrap: str,
        committed: Callable[[str, int], int | None],
        log_start: Callable[[set[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]],
        security: Callable[[], dict[str, Any]],
        on_gap: Callable[[Gap, int], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.committed = committed
        self.log_start = log_start
        self.security = security
        self.on_gap = on_gap
        self.tracker = OffsetTracker()
        self.filled: list[Gap] = []
        self.seeds: dict[tuple[str, int], int] = {}
        # a stage with concurrent actors (execute) calls fill() from each actor, in the
        # order they took their records: one at a time, or a record still being planned
        # by one actor would look skipped to the next
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """A rebalance: partitions are sought to their committed offsets again."""
        self.tracker.reset()
        self.filled.clear()
        self.seeds.clear()

    def floor(self, topic: str, partition: int) -> int | None:
        """The offset this partition was started from since the assignment (None: not yet)."""
        return self.seeds.get((topic, partition))

    async def fill(self, events: Sequence[Any]) -> list[Any]:
        """``events`` with every skipped record put back in front of the event after it.

        Raises on broker trouble with nothing recorded: call it again.
        """
        async with self._lock:
            return await self._fill(events)

    async def _fill(self, events: Sequence[Any]) -> list[Any]:
        coords = [(ev.message.topic, ev.message.partition, ev.message.offset) for ev in events]
        seeds: dict[tuple[str, int], int | None] = {}
        new = self.tracker.unseeded(coords)
        if new:
            seeds = {tp: self.committed(*tp) for tp in new}
            # no committed offset: the stage must start at the log start (the group's
            # reset policy is "earliest"), whatever position the consumer came up with
            uncommitted = {tp for tp, off in seeds.items() if off is None}
            if uncommitted:
                seeds.update(await self.log_start(uncommitted))
            self.seeds.update({tp: off for tp, off in seeds.items() if off is not None})
            for (topic, partition), off in sorted(seeds.items()):
                first = next(o for t, p, o in coords if (t, p) == (topic, partition))
                log.debug("first record of %s[%d] since the assignment: offset %d (expected %s)",
                          topic, partition, first, off)
        gaps, nxt = self.tracker.plan(coords, seeds)
        if not gaps:
            self.tracker.apply(nxt)
            return list(events)
        out: list[Any] = []
        last = 0
        found: list[tuple[Gap, int]] = []
        for i, gap in gaps:
            out.extend(events[last:i])
            records = await fetch_range(self.bootstrap, gap.topic, gap.partition, gap.start, gap.end,
                                        self.security())
            out.extend(records)
            found.append((gap, len(records)))
            last = i
        out.extend(events[last:])
        self.tracker.apply(nxt)
        for gap, n in found:
            log.warning(
                "stream skipped %s[%d] offsets %d..%d; read %d of them from the broker directly%s",
                gap.topic, gap.partition, gap.start, gap.end - 1, n,
                "" if n == gap.end - gap.start else " (the rest no longer exist: retention)",
            )
            if self.on_gap is not None:
                self.on_gap(gap, n)
            self.filled.append(gap)
        return out

    def done(self, consumer: Any) -> None:
        """The filled ranges are processed: let Faust's commits move past them."""
        if not self.filled:
            return
        assigned = {(t.topic, t.partition): t for t in consumer.assignment()}
        for gap in self.filled:
            tp = assigned.get((gap.topic, gap.partition))
            if tp is None:
                continue  # revoked meanwhile: the new owner starts from the committed offset
            consumer._gap[tp].addi(gap.start, gap.end)
            consumer._gap[tp].merge_overlaps()
        self.filled.clear()
