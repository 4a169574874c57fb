"""Engine state: what ``decide()`` remembers per routing key (one target).

Plain dataclasses with a JSON form (``to_dict``/``from_dict``) so the Faust
worker can keep them in changelog-backed tables and the replay harness in a
dict. Times are epoch seconds (floats) for speed; the engine converts.

Memory bounds: a metric window keeps at most ``max_samples`` points (oldest
dropped first) and only points inside its window; dedup entries live for the
dedup window; budgets keep only acted times inside ``budget.per``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class Window:
    """Points of one (policy, group), sorted by time: (time, series, value)."""

    points: list[tuple[float, str, float]] = field(default_factory=list)
    run_start: float | None = None
    latest: float | None = None

    def add(self, t: float, series: str, value: float, max_samples: int) -> bool:
        """Insert a point; a point for the same (time, series) replaces it (redelivery)."""
        i = bisect.bisect_left(self.points, (t,))
        j = i
        while j < len(self.points) and self.points[j][0] == t:
            if self.points[j][1] == series:
                self.points[j] = (t, series, value)
                break
            j += 1
        else:
            self.points.insert(j, (t, series, value))
        if len(self.points) > max_samples:
            del self.points[: len(self.points) - max_samples]
        if self.latest is None or t > self.latest:
            self.latest = t
        return True

    def prune(self, start_exclusive: float) -> None:
        i = bisect.bisect_right(self.points, (start_exclusive, "\U0010ffff"))
        if i:
            del self.points[:i]

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points],
            "run_start": self.run_start,
            "latest": self.latest,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        return cls(
            [(float(t), str(s), float(v)) for t, s, v in d.get("points", [])],
            d.get("run_start"),
            d.get("latest"),
        )


@dataclass
class TargetState:
    incidents: dict[str, Incident] = field(default_factory=dict)
    last_acted: dict[str, float] = field(default_factory=dict)
    acted_times: dict[str, list[float]] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    dedup: dict[str, float] = field(default_factory=dict)

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
