"""The input event ids a target has already decided, kept compactly in its table row.

Ingest replays after a crash re-send signals with the same event ids
(``topic:partition:offset[#index]`` of the input record); decide skips the ones
it has seen. The ids are remembered per input partition, the newest ``cap``
of each, and stored as offset deltas: a row with 256 ids per partition costs
about a kilobyte instead of seven, and it is rewritten on every decision.
Ids of another shape (none today) are kept verbatim.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

CAP = 256  # ids remembered per target and input partition


def _split(event_id: str) -> tuple[str, int, int] | None:
    base, _, idx = event_id.partition("#")
    src, _, off = base.rpartition(":")
    if not src or not off.isdigit() or (idx and not idx.isdigit()):
        return None
    return src, int(off), int(idx or 0)


class SeenIds:
    def __init__(self, cap: int = CAP) -> None:
        self.cap = cap
        self.by_source: dict[str, OrderedDict[tuple[int, int], None]] = {}
        self.other: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        parts = _split(event_id)
        if parts is None:
            return event_id in self.other
        src, off, idx = parts
        ids = self.by_source.get(src)
        return ids is not None and (off, idx) in ids

    def add(self, event_id: str) -> None:
        parts = _split(event_id)
        if parts is None:
            self.other[event_id] = None
            while len(self.other) > self.cap:
                self.other.popitem(last=False)
            return
        src, off, idx = parts
        ids = self.by_source.setdefault(src, OrderedDict())
        ids[(off, idx)] = None
        while len(ids) > self.cap:
            ids.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_source.values()) + len(self.other)

    # ------------------------------------------------------------ table form

    def to_json(self) -> dict[str, Any]:
        """``{"src": {partition: [first offset, delta, [delta, index], ...]}, "other": [...]}``."""
        out: dict[str, Any] = {}
        for src, ids in self.by_source.items():
            row: list[Any] = []
            prev = 0
            for off, idx in ids:
                row.append(off - prev if idx == 0 else [off - prev, idx])
                prev = off
            out[src] = row
        return {"src": out, "other": list(self.other)} if self.other else {"src": out}

    @classmethod
    def from_json(cls, raw: Any, cap: int = CAP) -> SeenIds:
        """From :meth:`to_json`'s form, or the plain id list rows written before it."""
        seen = cls(cap)
        if isinstance(raw, list):  # rows written by earlier versions
            for e in raw:
                if isinstance(e, str):
                    seen.add(e)
            return seen
        if not isinstance(raw, dict):
            return seen
        for src, row in (raw.get("src") or {}).items():
            ids = seen.by_source.setdefault(src, OrderedDict())
            off = 0
            for item in row:
                delta, idx = (item[0], item[1]) if isinstance(item, list) else (item, 0)
                off += int(delta)
                ids[(off, int(idx))] = None
        for e in raw.get("other") or []:
            seen.other[str(e)] = None
        return seen
