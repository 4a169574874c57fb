"""Crash safety: SIGKILL the worker again and again mid-stream.

5,000 alerts and metric samples for 50 targets go through real `healer run`
processes that are killed with SIGKILL at random moments (6 times) and
restarted. Afterwards (tests/streamcheck.py): every valid input appears in
the audit as `event.received` exactly once; no action id runs twice; the set
of executed actions equals what `healer policy test` computes offline for the
same input; every audit chain verifies. Those kills hit instant actions, so
they seldom interrupt one: the number interrupted is reported.

An interrupted action on its own: a worker is SIGKILLed while an action's
executor runs (a `webhook.notify` whose receiver holds the request: its arrival
is the observable); the successor audits the action `action.failed`
`interrupted`, and never runs it again (one request, no later outcome).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from healer.chain import verify
from tests.streamcheck import Scenario, check_invariants, emit_batch, interrupted_actions
from tests.workers import EffectReceiver, WorkerFactory, emit, read_to_quiet

pytestmark = pytest.mark.integration

N_EVENTS = 5000
KILLS = 6


def test_sigkill_mid_stream_loses_nothing_and_runs_nothing_twice(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    effect_receiver: EffectReceiver,
) -> None:
    sc = Scenario.build(tmp_path, N_EVENTS, hook_url=effect_receiver.url)
    app = unique_app_id
    batches = sc.batches(app, 10)
    rng = random.Random(5)
    worker = healer_worker.start(sc.policies, app, **sc.env)
    kills = 0
    for i, batch in enumerate(batches):
        emit_batch(kafka_bootstrap, batch)
        if kills < KILLS and (i % 2 == 1 or i >= len(batches) - (KILLS - kills)):
            time.sleep(rng.uniform(0.2, 2.5))
            worker.kill()
            kills += 1
            worker = healer_worker.start(sc.policies, app, **sc.env)
    assert kills >= 5
    stats = check_invariants(sc, kafka_bootstrap, app, worker.log_tail(), effects=effect_receiver)
    print(f"kills={kills} {stats}")
    worker.stop()



SLOW_POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: slow-notify}
spec:
  trigger: {alert: {matchers: ['alertname="SlowFix"']}}
  target: {kind: Deployment, namespace: llm, name: "{{ labels.deployment }}"}
  actions:
    - {use: webhook.notify, with: {url: "%s", timeout_seconds: 120}}
  guards: {cooldown: 1h}
---
apiVersion: healer/v1
kind: Policy
metadata: {name: quick-fix}
spec:
  trigger: {alert: {matchers: ['alertname="QuickFix"']}}
  target: {kind: Deployment, namespace: llm, name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: quick}}
  guards: {cooldown: 1h}
"""


def _alert(name: str, deployment: str) -> bytes:
    return json.dumps({"status": "firing", "labels": {"alertname": name, "deployment": deployment},
                       "startsAt": "2026-11-21T10:00:00Z"}).encode()


def test_an_action_interrupted_by_sigkill_is_failed_and_never_run_again(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    # The executor of the action is held mid-request (a noop's sleep could not be observed:
    # action.running is audited before the ledger marks the action running, and a crash
    # between the two rightly re-runs an action whose executor never started)
    app = unique_app_id
    hook = EffectReceiver(hold_first=True)
    try:
        pol = tmp_path / "policies"
        pol.mkdir()
        (pol / "p.yaml").write_text(SLOW_POLICIES % hook.url)
        first = healer_worker.start(pol, app, HEALER_WEBHOOK_URLS=hook.url)
        emit(kafka_bootstrap, f"{app}.alerts", [_alert("SlowFix", "slow")])
        assert hook.first.wait(timeout=120), "the webhook was never called\n" + first.log_tail()
        first.kill()  # mid-action: the executor waits for the held answer
        slow_id = hook.requests[0]["action_id"]

        second = healer_worker.start(pol, app, HEALER_WEBHOOK_URLS=hook.url)
        emit(kafka_bootstrap, f"{app}.alerts", [_alert("QuickFix", "quick")])

        def settled(recs: list[dict]) -> bool:
            ended = any(r.get("kind") in ("action.failed", "action.verified") and r.get("action_id") == slow_id
                        for r in recs)
            quick = any(r.get("kind") == "action.verified" and r["target"]["name"] == "quick" for r in recs)
            return ended and quick

        audit = read_to_quiet(kafka_bootstrap, f"{app}.audit", settled, timeout=240)
        assert settled(audit), f"{[r.get('kind') for r in audit]}\n{second.log_tail()}"
        # its lifecycle (an event.duplicate for a redelivered request may follow: not a run)
        kinds = [r["kind"] for r in audit if r.get("action_id") == slow_id and r["kind"].startswith("action.")]
        assert kinds == ["action.queued", "action.running", "action.failed"], kinds
        assert interrupted_actions(audit) == {slow_id}
        failed = next(r for r in audit if r.get("action_id") == slow_id and r["kind"] == "action.failed")
        assert failed["detail"]["interrupted"] is True and failed["reason"].startswith("interrupted"), failed
        assert len(hook.requests) == 1, f"the webhook was called {len(hook.requests)} times"
        received = [r["event"]["id"] for r in audit if r.get("kind") == "event.received"]
        assert len(received) == len(set(received)) == 2, received
        report = verify(audit)
        assert report.ok, [str(p) for p in report.problems]
        print(f"{len(audit)} audit records; webhook calls {len(hook.requests)}")
        assert second.stop() == 0
    finally:
        hook.close()
