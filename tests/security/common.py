"""Helpers of the security tests: a worker on one policy file, an alert record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.workers import Worker, WorkerFactory, read_until


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


def settled_records(bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 120.0, quiet: float = 3.0) -> list[dict[str, Any]]:
    """``topic``'s records once ``done`` holds and then nothing new arrived for ``quiet`` seconds
    (so a duplicate or a late effect written afterwards is seen too)."""
    deadline = time.monotonic() + timeout
    recs = read_until(bootstrap, topic, done, timeout=timeout)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        seen = len(recs)
        again = read_until(bootstrap, topic, lambda rs, seen=seen: len(rs) >= seen, timeout=30)
        if len(again) == len(recs):
            return again
        recs = again
    return recs
