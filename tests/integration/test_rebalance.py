"""Two workers in one consumer group share the partitions; killing one moves
its targets (state, ledger, audit chains) to the other without duplicate or
lost actions (invariants in tests/streamcheck.py). Worker A is killed only once
its own /metrics show it finished actions, so the handover is of a worker that
was doing work, not of an idle one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.streamcheck import Scenario, check_invariants, emit_batch
from tests.workers import EffectReceiver, Worker, WorkerFactory, wait_for

pytestmark = pytest.mark.integration


def assigned(w: Worker) -> bool:
    _, body = w.get("/readyz")
    return bool(body and body.get("assigned"))


def test_two_workers_share_partitions_and_survive_losing_one(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    effect_receiver: EffectReceiver,
) -> None:
    sc = Scenario.build(tmp_path, 3000, seed=23, hook_url=effect_receiver.url)
    app = unique_app_id
    batches = sc.batches(app, 6)
    a = healer_worker.start(sc.policies, app, partitions=6, **sc.env)
    b = healer_worker.start(sc.policies, app, partitions=6, **sc.env)
    deadline = time.monotonic() + 60
    while not (assigned(a) and assigned(b)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert assigned(a) and assigned(b), "both workers should own partitions\n" + b.log_tail()
    for i, batch in enumerate(batches):
        emit_batch(kafka_bootstrap, batch)
        if i == 2:
            took = wait_for(lambda: a.metric("healer_actions_total") > 0, "worker A to finish an action",
                            timeout=180)
            done_by_a = a.metric("healer_actions_total")
            a.kill()  # its partitions move to b
    stats = check_invariants(sc, kafka_bootstrap, app, b.log_tail(), effects=effect_receiver)
    print(f"A finished {done_by_a:.0f} actions ({took:.1f}s after batch 3) before it was killed; {stats}")
    assert b.stop() == 0
