"""The broker stops mid-stream and comes back: the worker reconnects and
continues; nothing is lost and nothing runs twice.

Mid-stream is observed, not slept for: the broker stops once the audit shows
some of the first half received (the second half goes in after the restart),
and the outage lasts until the worker itself reports the broker gone
(/healthz 503), at least ``HEALER_TEST_OUTAGE_SECONDS``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedKafka
from tests.streamcheck import Scenario, check_invariants, emit_batch
from tests.workers import EffectReceiver, WorkerFactory, read_until, wait_for

pytestmark = pytest.mark.integration


def test_worker_rides_out_a_broker_restart(
    healer_worker: WorkerFactory, restartable_kafka: EmbeddedKafka, kafka_bootstrap: str,
    unique_app_id: str, tmp_path: Path, effect_receiver: EffectReceiver,
) -> None:
    sc = Scenario.build(tmp_path, 2000, seed=31, hook_url=effect_receiver.url)
    app = unique_app_id
    batches = sc.batches(app, 4)
    w = healer_worker.start(sc.policies, app, **sc.env)
    emit_batch(kafka_bootstrap, batches[0])
    emit_batch(kafka_bootstrap, batches[1])

    def some_received(recs: list[dict]) -> bool:
        return any(r.get("kind") == "event.received" for r in recs)

    seen = read_until(kafka_bootstrap, f"{app}.audit", some_received, timeout=120)
    assert some_received(seen), "the worker received nothing\n" + w.log_tail()
    received_before = sum(r.get("kind") == "event.received" for r in seen)
    restartable_kafka.stop()  # mid-stream: half the input is not even sent yet
    t0 = time.monotonic()
    noticed = wait_for(lambda: w.get("/healthz")[0] == 503, "the worker to report the broker gone", timeout=90)
    time.sleep(max(0.0, float(os.environ.get("HEALER_TEST_OUTAGE_SECONDS", "10")) - (time.monotonic() - t0)))
    outage = time.monotonic() - t0
    assert w.proc.poll() is None, "the worker must not die while the broker is away\n" + w.log_tail()
    restartable_kafka.start()
    for batch in batches[2:]:
        emit_batch(kafka_bootstrap, batch)
    stats = check_invariants(sc, kafka_bootstrap, app, w.log_tail(), effects=effect_receiver)
    print(f"stopped after {received_before} of {len(sc.lines)} received; the worker noticed in {noticed:.1f}s; "
          f"outage {outage:.1f}s; {stats}")
    assert w.proc.poll() is None
    w.stop()
