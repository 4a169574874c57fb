"""Helpers of the security tests: a worker on one policy file, an alert record."""

from __future__ import annotations

import json
from pathlib import Path

from tests.workers import Worker, WorkerFactory


def worker_with_policy(factory: WorkerFactory, app_id: str, policy: str, tmp: Path) -> Worker:
    """A real ``healer run`` worker loading ``policy`` (YAML text) as its only file."""
    pol = tmp / "policies"
    pol.mkdir()
    (pol / "policy.yaml").write_text(policy)
    return factory.start(pol, app_id)


def alert_record(labels: dict[str, str], fingerprint: str) -> bytes:
    """One firing alert as Alertmanager's webhook (version 4) carries it."""
    return json.dumps({
        "version": "4", "status": "firing", "receiver": "healer", "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                    "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint}],
    }).encode()
