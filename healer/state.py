"""Engine state: what ``decide()`` remembers per routing key (one target).

Plain classes the engine mutates, with two encodings: the compact binary row
the worker keeps in its changelog-backed ``targets`` table
(:func:`encode_row` / :func:`decode_row`, msgpack with packed arrays), and a
JSON form (``to_dict``/``from_dict``) for tests and for reading rows written
by earlier versions. Times are epoch seconds (floats) for speed.

Metric windows keep their points in packed arrays (8-byte time, 8-byte value,
4-byte series index; about 20 bytes a point in memory and in the changelog),
not one object per point.

Memory bounds: a metric window keeps at most ``max_samples`` points (oldest
dropped first) and only points inside its window; dedup entries live for the
dedup window; budgets keep only acted times inside ``budget.per``.
"""

from __future__ import annotations

import json
import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import msgspec

_LITTLE = sys.byteorder == "little"


def _packed(a: array[Any]) -> bytes:
    if _LITTLE:
        return a.tobytes()
    b = array(a.typecode, a)
    b.byteswap()
    return b.tobytes()


def _unpacked(typecode: str, raw: bytes) -> array[Any]:
    a = array(typecode)
    a.frombytes(raw)
    if not _LITTLE:
        a.byteswap()
    return a


@dataclass
class Incident:
    key: str
    started: float
    position: int = 0  # acted decisions so far: the ladder position

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "started": self.started, "position": self.position}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        return cls(d["key"], float(d["started"]), int(d.get("position", 0)))


class Window:
    """Points of one (policy, group), sorted by time, in packed arrays.

    ``series`` names each distinct label set once; ``sidx`` holds the index of
    a point's series. A point with the same (time, series) as one already held
    replaces it (a redelivered sample changes nothing).
    """

    __slots__ = ("_ids", "latest", "run_start", "series", "sidx", "times", "values")

    def __init__(self) -> None:
        self.times: array[float] = array("d")
        self.values: array[float] = array("d")
        self.sidx: array[int] = array("I")
        self.series: list[str] = []
        self._ids: dict[str, int] | None = None
        self.run_start: float | None = None
        self.latest: float | None = None

    def __len__(self) -> int:
        return len(self.times)

    @property
    def points(self) -> list[tuple[float, str, float]]:
        """(time, series, value) per point: for tests and debugging, not the hot path."""
        s = self.series
        return [(t, s[i], v) for t, i, v in zip(self.times, self.sidx, self.values, strict=True)]

    def _series_id(self, series: str) -> int:
        ids = self._ids
        if ids is None:
            ids = self._ids = {s: i for i, s in enumerate(self.series)}
        got = ids.get(series)
        if got is None:
            if len(self.series) >= 8:
                self._compact_series()
                ids = self._ids = {s: i for i, s in enumerate(self.series)}
            got = ids[series] = len(self.series)
            self.series.append(series)
        return got

    def _compact_series(self) -> None:
        """Forget series no point refers to any more (pods come and go)."""
        used = sorted(set(self.sidx))
        if len(used) == len(self.series):
            return
        remap = {old: new for new, old in enumerate(used)}
        self.series = [self.series[i] for i in used]
        self.sidx = array("I", [remap[i] for i in self.sidx])

    def add(self, t: float, series: str, value: float, max_samples: int) -> None:
        """Insert a point (or replace the one with the same time and series)."""
        times = self.times
        sid = self._series_id(series)
        j = bisect_left(times, t)
        n = len(times)
        while j < n and times[j] == t:
            if self.sidx[j] == sid:
                self.values[j] = value
                break
            j += 1
        else:
            if j == n:
                times.append(t)
                self.values.append(value)
                self.sidx.append(sid)
            else:
                times.insert(j, t)
                self.values.insert(j, value)
                self.sidx.insert(j, sid)
        over = len(times) - max_samples
        if over > 0:
            self._drop_front(over)
        if self.latest is None or t > self.latest:
            self.latest = t

    def prune(self, start_exclusive: float) -> None:
        """Drop the points with time <= ``start_exclusive``."""
        i = bisect_right(self.times, start_exclusive)
        if i:
            self._drop_front(i)

    def _drop_front(self, n: int) -> None:
        del self.times[:n]
        del self.values[:n]
        del self.sidx[:n]

    # ------------------------------------------------------------ JSON form

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points],
            "run_start": self.run_start,
            "latest": self.latest,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        w = cls()
        for t, s, v in d.get("points", []):
            w.times.append(float(t))
            w.values.append(float(v))
            w.sidx.append(w._series_id(str(s)))
        w.run_start = d.get("run_start")
        w.latest = d.get("latest")
        return w


@dataclass
class TargetState:
    incidents: dict[str, Incident] = field(default_factory=dict)
    last_acted: dict[str, float] = field(default_factory=dict)
    acted_times: dict[str, list[float]] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    dedup: dict[str, float] = field(default_factory=dict)

    def held_samples(self) -> int:
        return sum(len(w) for w in self.windows.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "incidents": {k: v.to_dict() for k, v in self.incidents.items()},
            "last_acted": dict(self.last_acted),
            "acted_times": {k: list(v) for k, v in self.acted_times.items()},
            "windows": {k: v.to_dict() for k, v in self.windows.items()},
            "dedup": dict(self.dedup),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TargetState:
        if not d:
            return cls()
        return cls(
            incidents={k: Incident.from_dict(v) for k, v in d.get("incidents", {}).items()},
            last_acted={k: float(v) for k, v in d.get("last_acted", {}).items()},
            acted_times={k: [float(x) for x in v] for k, v in d.get("acted_times", {}).items()},
            windows={k: Window.from_dict(v) for k, v in d.get("windows", {}).items()},
            dedup={k: float(v) for k, v in d.get("dedup", {}).items()},
        )


@dataclass
class GlobalState:
    """State shared by all targets of one worker: the global rate limit."""

    acted_times: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"acted_times": list(self.acted_times)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GlobalState:
        return cls([float(x) for x in (d or {}).get("acted_times", [])])


# ------------------------------------------------------------------ table rows

Position = tuple[int, int]  # (input offset, index within the record; -1: the whole record)


@dataclass
class TargetRow:
    """One ``targets`` table row: the engine state of a target and, per input
    partition (``topic:partition``), the position of the last input it applied.

    Inputs of one partition reach a target in offset order (ingest reads each
    input partition in order and every target lives on one signals partition),
    so a signal at or below its partition's position is a replay: skipped. This
    mark is exact where a set of recent ids was only as good as its size.
    """

    state: TargetState = field(default_factory=TargetState)
    applied: dict[str, Position] = field(default_factory=dict)

    def seen(self, source: str, pos: Position) -> bool:
        mark = self.applied.get(source)
        return mark is not None and pos <= mark

    def mark(self, source: str, pos: Position) -> None:
        mark = self.applied.get(source)
        if mark is None or pos > mark:
            self.applied[source] = pos


class _WindowRow(msgspec.Struct, array_like=True):
    times: bytes
    values: bytes
    sidx: bytes
    series: list[str]
    run_start: float | None
    latest: float | None


class _Row(msgspec.Struct, array_like=True):
    v: int
    incidents: dict[str, tuple[str, float, int]]
    last_acted: dict[str, float]
    acted_times: dict[str, list[float]]
    windows: dict[str, _WindowRow]
    dedup: dict[str, float]
    applied: dict[str, tuple[int, int]]


ROW_VERSION = 2
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Row)


def encode_row(row: TargetRow) -> bytes:
    """The compact changelog form of a target's row (msgpack, packed arrays)."""
    st = row.state
    return _encoder.encode(_Row(
        ROW_VERSION,
        {k: (i.key, i.started, i.position) for k, i in st.incidents.items()},
        st.last_acted,
        st.acted_times,
        {
            k: _WindowRow(_packed(w.times), _packed(w.values), _packed(w.sidx), w.series,
                          w.run_start, w.latest)
            for k, w in st.windows.items()
        },
        st.dedup,
        row.applied,
    ))


def decode_row(raw: bytes | None) -> TargetRow:
    """A row from :func:`encode_row`'s form, or the JSON rows earlier versions wrote."""
    if not raw:
        return TargetRow()
    if raw[:1] == b"{":
        return _legacy_row(json.loads(raw))
    r = _decoder.decode(raw)
    windows: dict[str, Window] = {}
    for k, wr in r.windows.items():
        w = Window()
        w.times = _unpacked("d", wr.times)
        w.values = _unpacked("d", wr.values)
        w.sidx = _unpacked("I", wr.sidx)
        w.series = list(wr.series)
        w.run_start, w.latest = wr.run_start, wr.latest
        windows[k] = w
    st = TargetState(
        incidents={k: Incident(key, started, pos) for k, (key, started, pos) in r.incidents.items()},
        last_acted=dict(r.last_acted),
        acted_times={k: list(v) for k, v in r.acted_times.items()},
        windows=windows,
        dedup=dict(r.dedup),
    )
    return TargetRow(st, {k: (a, b) for k, (a, b) in r.applied.items()})


def _legacy_row(raw: dict[str, Any]) -> TargetRow:
    """Rows of healer <= 0.1 (JSON: state, applied signals offset, recent input ids):
    the newest remembered id per input partition becomes that partition's position."""
    row = TargetRow(TargetState.from_dict(raw.get("s")))
    seen = raw.get("seen")
    if isinstance(seen, dict):
        for src, deltas in (seen.get("src") or {}).items():
            off, best = 0, None
            for item in deltas:
                delta, idx = (item[0], item[1]) if isinstance(item, list) else (item, 0)
                off += int(delta)
                pos = (off, int(idx))
                best = pos if best is None or pos > best else best
            if best is not None:
                row.applied[str(src)] = best
    return row
