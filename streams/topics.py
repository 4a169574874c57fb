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
        """The topics the stages consume through Faust (their offsets are the group's)."""
        return {self.alerts, self.metrics, self.signals, self.actions, self.approvals, self.approval_requests}


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
