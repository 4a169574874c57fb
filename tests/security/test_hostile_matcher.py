"""Issue 13, finding 4: one hostile alert must not stall the worker.

With Python's backtracking ``re``, the policy matcher ``pod=~"(a+)+$"`` and one alert
whose ``pod`` is 29 ``a``s and a ``b`` blocked the worker's event loop for seconds
(x1.8 per character; labels may be 16 KiB): /healthz timed out, the consumer's
heartbeat expired and the replay hit the next worker. On RE2 the same match is
linear in the label's length. This test sends the finding's alert, a 16 KiB one
that does not match and a 16 KiB one that does, then a normal alert, to a real
worker on the real broker, polling /healthz all along; every alert must be
audited (``event.received``) and the normal one acted on. The per-match cost is
measured and printed, never asserted.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from healer.matchers import Matcher
from healer.models import MAX_LABEL_VALUE
from tests.security.common import alert_record, worker_with_policy
from tests.workers import Worker, WorkerFactory, emit, read_until

pytestmark = pytest.mark.integration

HOSTILE = 'pod=~"(a+)+$"'
POLICY = f"""
apiVersion: healer/v1
kind: Policy
metadata: {{name: crashloop-delete}}
spec:
  trigger:
    alert:
      matchers: ['alertname="KubePodCrashLooping"', '{HOSTILE}']
  target: {{kind: Pod, namespace: "{{{{ labels.namespace }}}}", name: "{{{{ labels.pod }}}}"}}
  actions:
    - use: healer.noop
      with: {{message: "delete the pod"}}
"""
FINDING = "a" * 29 + "b"  # the finding's label
MISS_16K = "a" * (MAX_LABEL_VALUE - 1) + "b"  # the longest allowed label, no match
HIT_16K = "a" * MAX_LABEL_VALUE  # matches; the target is then invalid (name too long)
NORMAL = "aaaa"


def alert(pod: str, fingerprint: str) -> bytes:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "llm-prod", "pod": pod}
    return alert_record(labels, fingerprint)


class HealthPoller(threading.Thread):
    """Polls /healthz until stopped; records every answer (or the error) and its latency."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.answers: list[tuple[Any, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = time.perf_counter()
            try:
                # a 10 s bound per request: a stalled event loop never answers within it
                status: Any = self.worker.get("/healthz", timeout=10)[0]
            except OSError as exc:
                status = repr(exc)
            self.answers.append((status, time.perf_counter() - t0))
            self.halt.wait(0.05)


def per_match_us(matcher: Matcher, value: str, n: int = 200) -> float:
    labels = {"pod": value}
    t0 = time.perf_counter()
    for _ in range(n):
        matcher.matches(labels)
    return (time.perf_counter() - t0) / n * 1e6


def test_a_hostile_alert_costs_microseconds_and_the_worker_keeps_answering(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    w = worker_with_policy(healer_worker, unique_app_id, POLICY, tmp_path)
    app = unique_app_id
    poller = HealthPoller(w)
    poller.start()
    try:
        emit(kafka_bootstrap, f"{app}.alerts",
             [alert(FINDING, "fp-finding"), alert(MISS_16K, "fp-miss"), alert(HIT_16K, "fp-hit"),
              alert(NORMAL, "fp-normal")],
             keys=[b"k"] * 4)  # one partition: the normal alert queues behind the hostile ones

        def done(recs: list[dict[str, Any]]) -> bool:
            return any(r.get("kind") == "action.succeeded" for r in recs) and sum(
                r.get("kind") == "event.received" for r in recs) >= 4

        audit = read_until(kafka_bootstrap, f"{app}.audit", done, timeout=120)
    finally:
        poller.halt.set()
        poller.join(timeout=30)
    statuses = [s for s, _ in poller.answers]
    assert statuses and all(s == 200 for s in statuses), f"/healthz: {statuses}\n{w.log_tail()}"
    assert done(audit), f"{[r.get('kind') for r in audit]}\n{w.log_tail()}"

    received = [r for r in audit if r["kind"] == "event.received"]
    assert sorted(r["event"]["fingerprint"] for r in received) == [
        "fp-finding", "fp-hit", "fp-miss", "fp-normal"]
    [acted] = [r for r in audit if r["kind"] == "action.succeeded"]
    assert acted["target"]["name"] == NORMAL
    # the 16 KiB label that matches is decided too: refused as a target, not acted on
    assert [r["reason"] for r in audit if r["kind"] == "decision.suppressed"] == ["invalid_target"]

    slowest = max(t for _, t in poller.answers)
    print(f"/healthz answered {len(statuses)} times while the worker took the alerts; "
          f"slowest answer {slowest * 1e3:.0f} ms")

    m = Matcher.parse(HOSTILE)
    for name, value in (("finding (30 chars)", FINDING), ("16 KiB, no match", MISS_16K),
                        ("16 KiB, match", HIT_16K)):
        print(f"\nRE2 {HOSTILE} on {name}: {per_match_us(m, value):.1f} us per match")
    backtracking = re.compile("(?:(a+)+$)")
    t0 = time.perf_counter()
    backtracking.fullmatch("a" * 20 + "b")
    print(f"Python re (before the fix) on 20 a's and a b: {(time.perf_counter() - t0) * 1e3:.1f} ms "
          "(x1.8 per further character)")
