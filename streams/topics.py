"""Topic names. Every topic is ``{app_id}.<name>`` (DESIGN.md, Topics)."""

from __future__ import annotations

from dataclasses import dataclass


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
