"""Two corrections to faust-streaming's offset handling that healer depends on.

faust-streaming (0.15.x) computes the offset to commit for a partition from
the offsets its streams acknowledged. Its check for "the oldest record is not
acknowledged yet" is off by one, and skipped when the committed offset is 0:
with acknowledged offsets ``[C+1, C+2]`` and the committed (next-to-read)
offset ``C`` it commits ``C+3``, although record ``C`` is still being worked
on. Acks arrive out of order whenever an agent runs with ``concurrency > 1``
(healer's execute stage does), so a crash at that moment would never deliver
record ``C`` again.

``install()`` replaces that computation with one that commits only the run of
acknowledged offsets that starts exactly at the committed offset (or, when the
group has none, at the offset healer's gap guard started the partition from). Offset
ranges Faust recorded as gaps (offsets the fetcher never saw) still count as
done; healer's stages fetch and process such ranges themselves before they
acknowledge the record after the gap (streams.gaps).

``install(after_seek=...)`` also runs a hook right after Faust's
``perform_seek`` ("seek stream partitions to committed offsets", at the end of
every rebalance, with the flow still stopped). healer seeks the partitions the
group has no committed offset for to their log start there. Doing it earlier
(when the rebalance completes) was not enough: Faust resumes fetching before
its seek, drops what it fetched while the flow is stopped, and its seek leaves a
partition without a committed offset where the fetcher got to. A killed
worker's last action request, with no record after it, was then never handed
to the new owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.consumer import Consumer

_INSTALLED = False
Floor = Callable[[str, int], "int | None"]
AfterSeek = Callable[[Any], Awaitable[None]]
_floor: Floor | None = None
_after_seek: AfterSeek | None = None
_faust_perform_seek = Consumer.perform_seek


def commit_offset(
    acked: list[int], committed: int | None, gaps: list[tuple[int, int]]
) -> tuple[int | None, list[int]]:
    """The next offset to commit for one partition, and the acked offsets left over.

    ``acked``: offsets acknowledged since the last commit; ``committed``: the
    committed offset (the next one to read), ``None`` when the group has none;
    ``gaps``: ``[begin, end)`` ranges counted as done.
    """
    if not acked:
        return None, acked
    done = set(acked)
    top = max(acked)
    for begin, end in gaps:
        if begin <= top:
            done.update(range(begin, end))
    start = min(done) if committed is None else committed
    if start not in done:
        return None, sorted(acked)  # the oldest record is still in flight
    nxt = start
    while nxt in done:
        nxt += 1
    return nxt, sorted(o for o in acked if o >= nxt)


def _new_offset(self: Any, tp: Any) -> int | None:
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    tree = self._gap[tp]
    gaps = [(iv.begin, iv.end) for iv in tree] if tree else []
    committed = self._committed_offset[tp]
    if committed is None and _floor is not None:
        # the group has no committed offset here (or 0, which Faust reports as none):
        # start from where healer's gap guard started this partition, not from the
        # oldest ack, which may be past a record still in flight
        committed = _floor(tp[0], tp[1])
    nxt, rest = commit_offset(acked, committed, gaps)
    if nxt is None:
        return None
    if tree:
        tree.chop(0, nxt)
    self._acked_index[tp].difference_update(o for o in acked if o < nxt)
    acked[:] = rest
    return nxt


async def _perform_seek(self: Any) -> None:
    await _faust_perform_seek(self)
    if _after_seek is not None:
        await _after_seek(self)


def install(floor: Floor | None = None, after_seek: AfterSeek | None = None) -> None:
    """Patch Faust's consumer once per process. ``floor(topic, partition)``: the
    first offset of a partition with no committed offset (the gap guard's seed);
    ``after_seek(consumer)``: run after Faust sought the partitions to their
    committed offsets. Arguments left out keep what an earlier call set."""
    global _INSTALLED, _floor, _after_seek
    if floor is not None:
        _floor = floor
    if after_seek is not None:
        _after_seek = after_seek
    if _INSTALLED:
        return
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    _INSTALLED = True
