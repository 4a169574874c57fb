"""Topic names and the topic layout of a worker. Every topic is ``{app_id}.<name>``.

``layout`` is what ``healer run`` creates at start and ``healer topics list|create``
shows: every topic a worker reads or writes (the table changelogs included),
without building a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLES = ("targets", "ledger", "pending")


@dataclass(frozen=True)
class TopicNames:
    app_id: str

    def _t(self, name: str) -> str:
        return f"{self.app_id}.{name}"

    @property
    def alerts(self) -> str:
        return self._t("alerts")

    @property
    def metrics(self) -> str:
        return self._t("metrics")

    @property
    def approvals(self) -> str:
        return self._t("approvals")

    @property
    def actions(self) -> str:
        return self._t("actions")

    @property
    def audit(self) -> str:
        return self._t("audit")

    @property
    def deadletter(self) -> str:
        return self._t("deadletter")

    # internal
    @property
    def signals(self) -> str:
        return self._t("signals")

    @property
    def audit_log(self) -> str:
        """Unsealed audit entries, sealed into ``audit`` partition by partition."""
        return self._t("audit-log")

    @property
    def approval_requests(self) -> str:
        return self._t("approval-requests")

    def changelog(self, table: str) -> str:
        """Faust's changelog topic of a table (``{app_id}-{table}-changelog``)."""
        return f"{self.app_id}-{table}-changelog"

    def consumed(self) -> set[str]:
        """The topics the stages consume through Faust (their offsets are the app id's group's;
        ingest reads the input topics in a group of its own, streams.stages.ingest)."""
        return {self.signals, self.actions, self.approvals, self.approval_requests}


def layout(app_id: str, partitions: int) -> dict[str, int]:
    """Every topic a worker reads or writes, with its partition count."""
    n = TopicNames(app_id)
    names = [n.alerts, n.metrics, n.signals, n.actions, n.approvals, n.approval_requests,
             n.audit_log, n.audit, n.deadletter, *(n.changelog(t) for t in TABLES)]
    return {name: partitions for name in names}


def configs(app_id: str) -> dict[str, dict[str, str]]:
    """Topic configs the worker sets when it creates topics (changelogs are compacted)."""
    n = TopicNames(app_id)
    return {n.changelog(t): {"cleanup.policy": "compact"} for t in TABLES}


def partition_problems(names: TopicNames, counts: dict[str, int]) -> list[str]:
    """Partition counts a worker cannot run with (topics created elsewhere, or earlier with
    other settings), each said with its fix; empty when the layout is consistent."""
    out = []
    log_n, audit_n = counts.get(names.audit_log), counts.get(names.audit)
    if log_n is not None and audit_n is not None and audit_n < log_n:
        out.append(f"{names.audit} has {audit_n} partitions but {names.audit_log} has {log_n}: chain p is "
                   f"written to partition p of {names.audit}; add partitions to {names.audit} "
                   f"(kafka-topics --alter --partitions {log_n})")
    asked, decided = counts.get(names.approval_requests), counts.get(names.approvals)
    if asked is not None and decided is not None and asked != decided:
        out.append(f"{names.approvals} has {decided} partitions and {names.approval_requests} {asked}: "
                   "an approval and its request must share a partition number; give both the same count")
    return out
