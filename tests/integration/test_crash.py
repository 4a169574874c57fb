"""Crash safety: SIGKILL the worker again and again mid-stream.

5,000 alerts and metric samples for 50 targets go through real `healer run`
processes that are killed with SIGKILL at random moments (6 times) and
restarted. Afterwards (tests/streamcheck.py): every valid input appears in
the audit as `event.received` exactly once; no action id runs twice; the set
of executed actions equals what `healer policy test` computes offline for the
same input; every audit chain verifies.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.streamcheck import Scenario, check_invariants, emit_batch
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

N_EVENTS = 5000
KILLS = 6


def test_sigkill_mid_stream_loses_nothing_and_runs_nothing_twice(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    sc = Scenario.build(tmp_path, N_EVENTS)
    app = unique_app_id
    batches = sc.batches(app, 10)
    rng = random.Random(5)
    worker = healer_worker.start(sc.policies, app)
    kills = 0
    for i, batch in enumerate(batches):
        emit_batch(kafka_bootstrap, batch)
        if kills < KILLS and (i % 2 == 1 or i >= len(batches) - (KILLS - kills)):
            time.sleep(rng.uniform(0.2, 2.5))
            worker.kill()
            kills += 1
            worker = healer_worker.start(sc.policies, app)
    assert kills >= 5
    stats = check_invariants(sc, kafka_bootstrap, app, worker.log_tail())
    print(f"kills={kills} {stats}")
    worker.stop()
