"""A forged early ``expire`` on ``{app}.approvals`` is ignored (streams/app.py ``_approval_one``:
an expiry before ``expires_at`` is not due): against a real worker and broker, the action stays
pending, and can then be approved and runs, once.

Whether the worker has handled the forged messages is observed, not slept on: its consumer
group's committed offsets on the approvals topic reach the end offsets, and the audit topic is
then read to a quiet point (end offsets unchanged for a few seconds).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from healer.chain import verify
from tests.workers import WorkerFactory, emit, read_until
from tests.workers import healer_cli as cli

pytestmark = pytest.mark.integration

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: gpu-drain}
spec:
  trigger: {alert: {matchers: ['alertname="GPUXidError"']}}
  target: {kind: Node, name: "{{ labels.node }}"}
  actions: [{use: healer.noop, with: {message: "cordon and drain"}}]
  guards: {approval: manual, approval_timeout: 10m}
"""


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    return {tp: int(off) for tp, off in (await consumer.end_offsets(tps)).items()} if tps else {}


def wait_consumed(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Until ``group`` has committed ``topic`` up to its end offsets (taken now)."""
    async def go() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await consumer.start()
        await admin.start()
        try:
            end = await _end_offsets(consumer, topic)
            deadline = time.monotonic() + timeout
            while True:
                committed = await admin.list_consumer_group_offsets(group, partitions=list(end))
                behind = {tp.partition: (committed[tp].offset if tp in committed else -1, off)
                          for tp, off in end.items()
                          if off > 0 and (tp not in committed or committed[tp].offset < off)}
                if not behind:
                    return
                assert time.monotonic() < deadline, f"{group} has not consumed {topic}: {behind}"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
            await consumer.stop()

    asyncio.run(go())


def read_to_quiet(bootstrap: str, topic: str, settle: float = 3.0, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` once its end offsets have not moved for ``settle`` seconds."""
    async def stable_ends() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            last = await _end_offsets(consumer, topic)
            since = time.monotonic()
            deadline = since + timeout
            while time.monotonic() - since < settle:
                assert time.monotonic() < deadline, f"{topic} did not go quiet within {timeout}s"
                await asyncio.sleep(0.5)
                now = await _end_offsets(consumer, topic)
                if now != last:
                    last, since = now, time.monotonic()
            return last
        finally:
            await consumer.stop()

    ends = asyncio.run(stable_ends())
    total = sum(ends.values())
    records = read_until(bootstrap, topic, lambda r: len(r) >= total, timeout=timeout)
    assert len(records) == total, (len(records), total)
    return records


def test_forged_early_expire_is_ignored_and_the_action_can_still_be_approved(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    app = unique_app_id
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    w = healer_worker.start(pol, app)
    emit(kafka_bootstrap, f"{app}.alerts", [json.dumps({
        "status": "firing", "labels": {"alertname": "GPUXidError", "node": "gpu-a"},
        "startsAt": "2026-11-21T10:00:00Z"}).encode()])
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda r: any(x.get("kind") == "action.pending_approval" for x in r))
    aid = next(r["action_id"] for r in audit if r.get("kind") == "action.pending_approval")
    # the worker's pending entry exists once it has consumed the approval request
    wait_consumed(kafka_bootstrap, app, f"{app}.approval-requests")

    # forged expiries long before expires_at: as the brief's bare message, keyed like the
    # worker's own (the owning partition), unkeyed (forwarded to it), and posing as the timer
    forged = [
        json.dumps({"action_id": aid, "decision": "expire"}).encode(),
        json.dumps({"action_id": aid, "decision": "expire"}).encode(),
        json.dumps({"action_id": aid, "decision": "expire", "actor": "healer"}).encode(),
    ]
    emit(kafka_bootstrap, f"{app}.approvals", forged, keys=[aid.encode(), None, aid.encode()])
    wait_consumed(kafka_bootstrap, app, f"{app}.approvals")
    audit = read_to_quiet(kafka_bootstrap, f"{app}.audit")
    assert [r["kind"] for r in audit if r.get("action_id") == aid] == ["action.pending_approval"], w.log_tail()
    listed = cli(kafka_bootstrap, app, "approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {json.loads(x)["action_id"]: json.loads(x)["state"] for x in listed.stdout.splitlines()}
    assert states[aid] == "pending"

    ok = cli(kafka_bootstrap, app, "approvals", "approve", aid, "--actor", "alice")
    assert ok.returncode == 0, ok.stderr + w.log_tail()
    read_until(kafka_bootstrap, f"{app}.audit", lambda r: any(
        x.get("action_id") == aid and x.get("kind") == "action.verified" for x in r))
    audit = read_to_quiet(kafka_bootstrap, f"{app}.audit")
    assert [r["kind"] for r in audit if r.get("action_id") == aid] == [
        "action.pending_approval", "action.approved", "action.queued", "action.running",
        "action.succeeded", "action.verified",
    ]
    report = verify(audit)
    assert report.ok, [str(p) for p in report.problems]
    assert w.stop() == 0
