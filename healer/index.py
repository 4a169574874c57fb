"""PolicySet: the loaded policies and silences, indexed for matching.

Alert policies are indexed by the values their ``alertname`` matcher pins:
``alertname="A"`` or an alternation of literal names ``alertname=~"A|B"``
(others go to a wildcard bucket); metric policies by metric name. Matching an
input therefore costs in proportion to the policies that could match it, not
to all loaded policies. ``wants_series`` answers, from the same index, whether a metric
series could match any metric policy (the remote-write receiver's filter).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

from healer.matchers import match_all
from healer.models import Signal
from healer.policy import AlertTrigger, CompiledPolicy, MetricTrigger, Silence

_LITERALS = re.compile(r"^[A-Za-z0-9_:-]+(?:\|[A-Za-z0-9_:-]+)*$")


def _pinned_alertnames(trigger: AlertTrigger) -> list[str] | None:
    """The alertnames a trigger can match, when its matchers pin them; else None."""
    for m in trigger.matchers:
        if m.name != "alertname":
            continue
        if m.op == "=":
            return [m.value]
        if m.op == "=~" and _LITERALS.fullmatch(m.value):
            return list(dict.fromkeys(m.value.split("|")))
    return None


class PolicySet:
    def __init__(
        self, policies: Iterable[CompiledPolicy], silences: Iterable[Silence] = ()
    ) -> None:
        self.policies: dict[str, CompiledPolicy] = {}
        self.silences: tuple[Silence, ...] = tuple(silences)
        self._by_alertname: dict[str, list[CompiledPolicy]] = defaultdict(list)
        self._alert_wild: list[CompiledPolicy] = []
        self._by_metric: dict[str, list[CompiledPolicy]] = defaultdict(list)
        for p in sorted(policies, key=lambda p: (p.priority, p.name)):
            if p.name in self.policies:
                raise ValueError(f"duplicate policy name {p.name!r}")
            self.policies[p.name] = p
            if isinstance(p.trigger, MetricTrigger):
                self._by_metric[p.trigger.name].append(p)
                continue
            pinned = _pinned_alertnames(p.trigger)
            if pinned is None:
                self._alert_wild.append(p)
            else:
                for name in pinned:
                    self._by_alertname[name].append(p)
        # per alertname, its pinned policies merged with the wildcard ones, in
        # (priority, name) order, computed once: matching an alert sorts nothing
        order = list(self.policies)
        rank = {name: i for i, name in enumerate(order)}
        wild = tuple(self._alert_wild)
        self._alert_pools: dict[str, tuple[CompiledPolicy, ...]] = {
            name: tuple(
                sorted({p.name: p for p in (*bucket, *wild)}.values(), key=lambda p: rank[p.name])
            )
            for name, bucket in self._by_alertname.items()
        }
        self._wild = wild
        self.revision = ",".join(f"{p.name}@{p.revision}" for p in self.policies.values())

    def __len__(self) -> int:
        return len(self.policies)

    def candidates(self, signal: Signal) -> list[CompiledPolicy]:
        """Policies whose trigger matchers match ``signal`` (status not considered)."""
        if signal.kind == "metric":
            bucket = self._by_metric.get(signal.name or "")
            if not bucket:
                return []
            labels = signal.match_labels()
            return [p for p in bucket if match_all(p.trigger.matchers, labels)]
        pool = self._alert_pools.get(signal.labels.get("alertname", ""), self._wild)
        labels = signal.labels
        return [p for p in pool if match_all(p.trigger.matchers, labels)]

    def wants_series(self, name: str, labels: Mapping[str, str]) -> bool:
        """Could a sample of this series (metric ``name``, ``labels`` without ``__name__``)
        match any metric policy's trigger? The same test as :meth:`candidates` for a metric
        signal; the remote-write receiver drops the series for which it is False."""
        bucket = self._by_metric.get(name)
        if not bucket:
            return False
        full = {**labels, "__name__": name}
        return any(match_all(p.trigger.matchers, full) for p in bucket)

    def get(self, name: str) -> CompiledPolicy | None:
        return self.policies.get(name)
