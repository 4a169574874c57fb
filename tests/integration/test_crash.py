"""Crash safety: SIGKILL the worker again and again mid-stream.

5,000 alerts and metric samples for 50 targets go through real `healer run`
processes that are killed with SIGKILL at random moments (at least 5 times)
and restarted. Afterwards:
- every valid input appears in the audit as `event.received` exactly once;
- no action id runs twice (`action.running` at most once per id);
- the set of executed actions equals what `healer policy test` computes offline
  for the same input;
- every audit chain verifies.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healer.chain import verify
from healer.cli.emit_cmd import parse_input
from healer.loader import load_policy_set
from healer.replay import Replayer, read_lines
from streams.client import OutRecord, produce
from tests.workers import WorkerFactory, read_until

pytestmark = pytest.mark.integration

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: crash-alert}
spec:
  trigger:
    alert:
      matchers: ['alertname="InferenceDegraded"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}, times: 2}
    - {use: healer.noop, with: {message: page}}
  guards:
    cooldown: 20s
    budget: {max: 6, per: 10m}
---
apiVersion: healer/v1
kind: Policy
metadata: {name: crash-metric}
spec:
  trigger:
    metric:
      name: llm_request_latency_p99_seconds
      group_by: [namespace, deployment]
      aggregate: avg
      window: 1m
      op: ">"
      threshold: 5
      for: 10s
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}}
  guards: {cooldown: 45s}
"""

N_EVENTS = 5000
KILLS = 6


def make_events(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    lines = []
    for i in range(N_EVENTS):
        t = t0 + timedelta(seconds=i * 0.5)
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if i % 2 == 0:
            dep = f"svc-{(i // 2) % 25}"
            status = "resolved" if rng.random() < 0.08 else "firing"
            starts = (t - timedelta(seconds=rng.randrange(0, 600))).strftime("%Y-%m-%dT%H:%M:%SZ")
            alert = {"status": status, "labels": {"alertname": "InferenceDegraded", "namespace": "llm-prod",
                                                  "deployment": dep}, "startsAt": starts}
            lines.append(json.dumps({"time": ts, "alert": alert}))
        else:
            dep = f"svc-{25 + (i // 2) % 25}"
            value = rng.uniform(2.0, 8.0) if (i // 100) % 3 else rng.uniform(5.5, 9.0)
            sample = {"name": "llm_request_latency_p99_seconds", "value": round(value, 3),
                      "labels": {"namespace": "llm-prod", "deployment": dep}, "timestamp": ts}
            lines.append(json.dumps({"time": ts, "metric": sample}))
    return lines


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or set())]
        if not tps:
            await c._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or set())]
        ends = await c.end_offsets(tps)
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await c.stop()


def test_sigkill_mid_stream_loses_nothing_and_runs_nothing_twice(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICIES)
    lines = make_events()

    replayer = Replayer(load_policy_set([pol]))
    plan = replayer.run(read_lines(lines))
    expected = {d.action_id for d in plan if d.decision == "execute"}
    assert len(expected) > 50, "the scenario should make plenty of actions"

    app = unique_app_id
    records = parse_input("\n".join(lines), None)
    by_topic: dict[str, list[OutRecord]] = {}
    batches = []
    chunk = N_EVENTS // 10
    for start in range(0, len(records), chunk):
        by_topic = {}
        for topic, key, value, ts in records[start:start + chunk]:
            by_topic.setdefault(f"{app}.{topic}", []).append(OutRecord(key, value, ts))
        batches.append(by_topic)

    rng = random.Random(5)
    worker = healer_worker.start(pol, app)
    kills = 0
    for i, batch in enumerate(batches):
        for topic, recs in batch.items():
            asyncio.run(produce(kafka_bootstrap, topic, recs))
        if (kills < KILLS and i % 2 == 1) or (kills < KILLS and i >= len(batches) - (KILLS - kills)):
            time.sleep(rng.uniform(0.2, 2.5))
            worker.kill()
            kills += 1
            worker = healer_worker.start(pol, app)
    assert kills >= 5

    def settled(recs: list[dict]) -> bool:
        ended = {r["action_id"] for r in recs if r.get("kind") in ("action.verified", "action.failed")}
        received = {r["event"]["id"] for r in recs if r.get("kind") == "event.received"}
        return len(received) >= N_EVENTS and ended >= expected

    audit = read_until(kafka_bootstrap, f"{app}.audit", settled, timeout=300)
    received = Counter(r["event"]["id"] for r in audit if r.get("kind") == "event.received")
    if len(received) != N_EVENTS:
        # where were the missing ones lost: before the audit-log (ingest) or in sealing?
        ends = asyncio.run(_end_offsets(kafka_bootstrap, [f"{app}.alerts", f"{app}.metrics"]))
        all_ids = {f"{t}:{p}:{o}" for (t, p), end in ends.items() for o in range(end)}
        missing = sorted(all_ids - set(received))
        log = read_until(kafka_bootstrap, f"{app}.audit-log", lambda r: False, timeout=20)
        in_log = {r["event"]["id"] for r in log if r.get("kind") == "event.received"} & set(missing)
        pytest.fail(f"{len(received)} of {N_EVENTS} inputs received; missing {missing[:20]}; "
                    f"of those in audit-log: {sorted(in_log)[:20]}\n{worker.log_tail()}")
    assert max(received.values()) == 1, [k for k, v in received.items() if v > 1][:5]

    running = Counter(r["action_id"] for r in audit if r.get("kind") == "action.running")
    assert max(running.values()) == 1, [k for k, v in running.items() if v > 1]
    interrupted = {r["action_id"] for r in audit if r.get("kind") == "action.failed"
                   and (r.get("detail") or {}).get("interrupted")}
    executed = set(running)
    assert interrupted <= executed
    assert executed == expected, (
        f"missing {sorted(expected - executed)[:5]}, unexpected {sorted(executed - expected)[:5]}"
    )
    queued = Counter(r["action_id"] for r in audit if r.get("kind") == "action.queued")
    assert set(queued) == expected and max(queued.values()) == 1
    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    print(f"kills={kills} inputs={N_EVENTS} actions={len(expected)} interrupted={len(interrupted)} "
          f"audit_records={len(audit)}")
    worker.stop()
