"""The HTTP API of a real ``healer run`` worker process on the real broker.

One worker per test (they take seconds to start), many checks each:
Alertmanager v4 payload -> webhook -> Kafka -> action verified; webhook and
approvals auth through the single-token shorthands (401 on a missing token,
403 when the token's identity lacks the role: the API token cannot post
alerts, the webhook token cannot approve; audited as event.rejected, never
the token); approve through the API end to end, audited as the token's
identity whatever the body says; 409/404/400 answers (audited too);
/metrics with non-zero counts after the traffic; JSON logs with action ids
and no secrets; and schemathesis fuzzing the live OpenAPI document with the
factory's admin token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_http_api import am_payload
from tests.workers import Worker, WorkerFactory, emit, read_until

pytestmark = pytest.mark.integration

API_TOKEN = "api-7f3c9e1d2b4a6f8e0c"
HOOK_TOKEN = "hook-5a1b2c3d4e5f60718"

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: latency-scale}
spec:
  trigger:
    alert:
      matchers: ['alertname="LLMHighLatency"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - use: healer.noop
      with: {message: "scale out"}
---
apiVersion: healer/v1
kind: Policy
metadata: {name: gpu-drain}
spec:
  trigger:
    alert:
      matchers: ['alertname="GPUXidError"']
  target: {kind: Node, name: "{{ labels.node }}"}
  actions:
    - use: healer.noop
      with: {message: "cordon and drain"}
  guards: {approval: manual, approval_timeout: 10m}
"""


def call(w: Worker, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(w.url(path), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def samples(w: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(w.url("/metrics"), timeout=10) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(smp: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lb), v in smp.items() if n == name and want <= set(lb))


def gauge_settles(w: Worker, name: str, want: float, timeout: float = 30.0) -> float:
    """The pending table is written after the audit entry it follows: poll the gauge until it agrees."""
    deadline = time.monotonic() + timeout
    while True:
        got = total(samples(w), name)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def policies(tmp: Path) -> Path:
    pol = tmp / "policies"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    return pol


def gpu_alert(node: str) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": "GPUXidError", "node": node},
            "startsAt": "2026-11-21T10:00:00Z"}


def test_webhook_auth_approvals_metrics_and_logs(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    app = unique_app_id
    token_file = tmp_path / "api-token"
    token_file.write_text(API_TOKEN + "\n")
    w = healer_worker.start(policies(tmp_path), app, tokens=False, HEALER_API_TOKEN_FILE=str(token_file),
                            HEALER_WEBHOOK_TOKEN=HOOK_TOKEN, HEALER_LOG_FORMAT="json")

    assert call(w, "GET", "/healthz")[0] == 200
    code, doc = call(w, "GET", "/api/v1/openapi.json")
    assert code == 200 and doc["openapi"] == "3.0.3"

    # webhook: refused without a token and with the API token (no role ingest; audited),
    # accepted with the webhook token
    assert call(w, "POST", "/api/v1/alerts", am_payload("vllm-a"))[0] == 401
    code, body = call(w, "POST", "/api/v1/alerts", am_payload("vllm-a"), token=API_TOKEN)
    assert code == 403 and "needs role ingest" in body["error"]
    code, body = call(w, "POST", "/api/v1/alerts", am_payload("vllm-a", "vllm-b"), token=HOOK_TOKEN)
    assert (code, body) == (200, {"status": "accepted", "alerts": 2, "records": 2})
    code, body = call(w, "POST", "/api/v1/alerts", gpu_alert("gpu-7"), token=HOOK_TOKEN)
    assert code == 200 and body["records"] == 1
    emit(kafka_bootstrap, f"{app}.alerts", [b"not json at all"])  # one rejected input for the metrics

    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda r: sum(x["kind"] == "action.verified" for x in r) >= 2
                       and any(x["kind"] == "action.pending_approval" for x in r), timeout=90)
    verified = sorted(x["target"]["name"] for x in audit if x["kind"] == "action.verified")
    assert verified == ["vllm-a", "vllm-b"], w.log_tail()
    aid = next(x["action_id"] for x in audit if x["kind"] == "action.pending_approval")
    hook_refusals = sorted(x["reason"] for x in audit if x["kind"] == "event.rejected"
                           and (x.get("detail") or {}).get("http"))
    assert hook_refusals == ["alert webhook attempt by api refused: needs role ingest",
                             "unauthenticated alert webhook attempt"]

    # approvals: listed; pending gauge set; refused without / with a wrong token
    code, body = call(w, "GET", "/api/v1/approvals")
    assert code == 200 and [a["action_id"] for a in body["approvals"]] == [aid]
    assert body["approvals"][0]["state"] == "pending" and body["approvals"][0]["target"]["name"] == "gpu-7"
    assert gauge_settles(w, "healer_pending_approvals", 1) == 1
    assert call(w, "POST", f"/api/v1/approvals/{aid}/approve", {"actor": "mallory"})[0] == 401
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve", {"actor": "mallory"}, token=HOOK_TOKEN)
    assert code == 403 and "identity webhook may not approve" in body["error"]  # the receiver cannot approve
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/deny", {"actor": "bob"}, token=API_TOKEN)
    assert code == 400 and "reason is required" in body["error"]
    code, body = call(w, "POST", "/api/v1/approvals/a-unknown/approve", {}, token=API_TOKEN)
    assert code == 404 and "no pending approval" in body["error"]

    # the body's actor is ignored: the decision is the token's identity's (api)
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve",
                      {"actor": "alice", "reason": "driver fixed"}, token=API_TOKEN)
    assert code == 202 and body["status"] == "sent" and body["actor"] == "user:api", body
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda r: any(x["kind"] == "action.verified" and x["action_id"] == aid for x in r), timeout=60)
    kinds = [x["kind"] for x in audit if x.get("action_id") == aid]
    assert kinds[0] == "action.pending_approval" and kinds.count("event.rejected") == 3
    assert [k for k in kinds if k.startswith("action.")] == [
        "action.pending_approval", "action.approved", "action.queued", "action.running",
        "action.succeeded", "action.verified"]
    approved = next(x for x in audit if x["kind"] == "action.approved")
    assert approved["actor"] == "user:api" and approved["reason"] == "driver fixed"
    refused = {x["reason"]: x["actor"] for x in audit if x["kind"] == "event.rejected" and x.get("action_id") == aid}
    assert refused == {"approve attempt by webhook refused: needs role approve": "user:webhook",
                       "deny refused: no reason given": "user:api", "unauthenticated approve attempt": "healer"}
    for x in audit:
        assert API_TOKEN not in json.dumps(x) and HOOK_TOKEN not in json.dumps(x)

    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve", {"actor": "alice"}, token=API_TOKEN)
    assert code == 409 and "already approved by user:api" in body["error"]
    code, body = call(w, "GET", "/api/v1/approvals?all=1")
    assert [a["state"] for a in body["approvals"]] == ["approved"]

    # metrics after the traffic
    assert gauge_settles(w, "healer_pending_approvals", 0) == 0
    smp = samples(w)
    assert total(smp, "healer_events_total", topic="alerts", outcome="received") >= 2
    assert total(smp, "healer_events_total", topic="alerts", outcome="rejected") >= 1
    assert total(smp, "healer_decisions_total", policy="latency-scale", decision="execute") >= 2
    assert total(smp, "healer_decisions_total", policy="gpu-drain", decision="pending_approval") >= 1
    assert total(smp, "healer_actions_total", use="healer.noop", outcome="verified") >= 3
    assert total(smp, "healer_action_duration_seconds_count", use="healer.noop") >= 3
    assert total(smp, "healer_alert_to_action_seconds_count") >= 2
    assert total(smp, "healer_ready") == 1
    assert any(n == "healer_consumer_lag" for n, _ in smp)
    assert total(smp, "healer_http_requests_total", route="/api/v1/alerts", code="401") == 1
    assert total(smp, "healer_http_requests_total", route="/api/v1/alerts", code="403") == 1

    assert w.stop() == 0
    log_text = w.log_path.read_text(errors="replace")
    assert API_TOKEN not in log_text and HOOK_TOKEN not in log_text
    lines = [json.loads(x) for x in log_text.splitlines() if x.startswith("{")]
    assert len(lines) >= 10
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any(x.get("action_id") == aid and x["logger"] == "healer.http" for x in lines)
    not_json = [x for x in log_text.splitlines() if x.strip() and not x.startswith("{")]
    assert len(not_json) <= 5, not_json[:10]


def test_schemathesis_against_live_worker(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    """No server errors (5xx) and responses as documented, for generated requests."""
    app = unique_app_id
    w = healer_worker.start(policies(tmp_path), app)
    admin = w.tokens["admin"]
    # a real pending approval, so approve/deny reach past the 404 of unknown ids
    assert call(w, "POST", "/api/v1/alerts", gpu_alert("gpu-1"), token=w.tokens["ingest"])[0] == 200
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda r: any(x["kind"] == "action.pending_approval" for x in r), timeout=60)
    aid = next(x["action_id"] for x in audit if x["kind"] == "action.pending_approval")
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.action_id" = "{aid}"\n')
    report = tmp_path / "schemathesis.xml"
    st = Path(sys.executable).with_name("schemathesis")
    if not st.exists():
        pytest.fail(f"schemathesis is not installed in {sys.prefix}: pip install schemathesis")
    proc = subprocess.run(
        [str(st), "--config-file", str(config), "run", w.url("/api/v1/openapi.json"),
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", "50", "--seed", "7", "--workers", "1",
         "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
         "--request-timeout", "30", "-H", f"Authorization: Bearer {admin}",
         "--report", "junit", "--report-junit-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,  # its cache dir
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:] + w.log_tail()
    assert "HTTP handler failed" not in w.log_path.read_text(errors="replace")
    assert "Missing test data" not in proc.stdout  # approve/deny were exercised past 404
    decided = read_until(kafka_bootstrap, f"{app}.audit",
                         lambda r: any(x["kind"] in ("action.approved", "action.denied") for x in r), timeout=30)
    assert any(x["kind"] in ("action.approved", "action.denied") and x["action_id"] == aid for x in decided)
