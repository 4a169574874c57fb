"""The broker stops mid-stream and comes back: the worker reconnects and
continues; nothing is lost and nothing runs twice."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedKafka
from tests.streamcheck import Scenario, check_invariants, emit_batch
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration


def test_worker_rides_out_a_broker_restart(
    healer_worker: WorkerFactory, restartable_kafka: EmbeddedKafka, kafka_bootstrap: str,
    unique_app_id: str, tmp_path: Path,
) -> None:
    sc = Scenario.build(tmp_path, 2000, seed=31)
    app = unique_app_id
    batches = sc.batches(app, 4)
    w = healer_worker.start(sc.policies, app)
    emit_batch(kafka_bootstrap, batches[0])
    emit_batch(kafka_bootstrap, batches[1])
    time.sleep(1.0)
    restartable_kafka.stop()  # mid-stream: the worker is still digesting the first half
    time.sleep(float(os.environ.get("HEALER_TEST_OUTAGE_SECONDS", "10")))
    assert w.proc.poll() is None, "the worker must not die while the broker is away\n" + w.log_tail()
    restartable_kafka.start()
    for batch in batches[2:]:
        emit_batch(kafka_bootstrap, batch)
    stats = check_invariants(sc, kafka_bootstrap, app, w.log_tail())
    print(stats)
    assert w.proc.poll() is None
    w.stop()
