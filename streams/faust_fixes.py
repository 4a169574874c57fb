"""A correction to faust-streaming's offset commits that healer depends on.

faust-streaming (0.15.x) computes the offset to commit for a partition from
the offsets its streams acknowledged. Its check for "the oldest record is not
acknowledged yet" is off by one, and skipped when the committed offset is 0:
with acknowledged offsets ``[C+1, C+2]`` and the committed (next-to-read)
offset ``C`` it commits ``C+3``, although record ``C`` is still being worked
on. Acks arrive out of order whenever an agent runs with ``concurrency > 1``
(healer's execute stage does), so a crash at that moment would never deliver
record ``C`` again.

``install()`` replaces that computation with one that commits only the run of
acknowledged offsets that starts exactly at the committed offset. Offset
ranges Faust recorded as gaps (offsets the fetcher never saw) still count as
done; healer's stages fetch and process such ranges themselves before they
acknowledge the record after the gap (streams.gaps).
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer

_INSTALLED = False


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
    nxt, rest = commit_offset(acked, self._committed_offset[tp], gaps)
    if nxt is None:
        return None
    if tree:
        tree.chop(0, nxt)
    self._acked_index[tp].difference_update(o for o in acked if o < nxt)
    acked[:] = rest
    return nxt


def install() -> None:
    """Patch Faust's consumer once per process."""
    global _INSTALLED
    if _INSTALLED:
        return
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    _INSTALLED = True
