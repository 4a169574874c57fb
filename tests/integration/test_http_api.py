"""The HTTP API in process (aiohttp server around a real HealerApp, Faust not
running) against a real broker, a stopped broker and a closed port.

Covers what needs no running agents: webhook -> Kafka with acks, per-target
split, 400/413 on bad payloads, 503 when the broker is down or does not ack
(and recovery when it comes back, with --insecure-no-auth's anonymous
ingest), 403 + audit when the webhook token tries to decide, /healthz before
and after the first broker check, /metrics and the OpenAPI document. Full flows with a worker process live in
test_http_worker.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from actions.noop import NoopExecutor
from actions.registry import ExecutorRegistry
from healer.ingest import partition_key
from healer.loader import load_policy_set
from healer.settings import Settings
from healer.timeutil import parse_time
from streams import http
from streams.app import HealerApp
from streams.broker import EmbeddedKafka
from streams.client import ensure_topics
from tests.workers import free_port, keyring_for, read_until

pytestmark = pytest.mark.integration

HOOK = "hook-token-0123456789abcdef"
API = "api-token-0123456789abcdef"

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
"""


def am_payload(*deployments: str) -> dict[str, Any]:
    """An Alertmanager v4 webhook body as Alertmanager 0.27 sends it."""
    alerts = [{
        "status": "firing",
        "labels": {"alertname": "LLMHighLatency", "namespace": "llm-prod", "deployment": d,
                   "severity": "critical"},
        "annotations": {"summary": f"P99 latency of {d} above 5s"},
        "startsAt": "2026-11-21T10:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=llm_p99%3E5",
        "fingerprint": f"fp{i:014x}",
    } for i, d in enumerate(deployments)]
    return {
        "receiver": "healer", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "LLMHighLatency"},
        "commonLabels": {"alertname": "LLMHighLatency", "namespace": "llm-prod"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "version": "4", "groupKey": '{}:{alertname="LLMHighLatency"}', "truncatedAlerts": 0,
    }


def unsealed(bootstrap: str, app: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` unsealed entries the API wrote to ``{app}.audit-log`` (no sealer runs in
    these in-process tests), unpacked from their batch records (healer.wire.AuditBatch)."""
    def entries(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for r in recs for e in r.get("entries", [])]

    return entries(read_until(bootstrap, f"{app}.audit-log", lambda r: len(entries(r)) >= n, timeout=30))


def make_healer(tmp: Path, app_id: str, bootstrap: str, **settings: Any) -> HealerApp:
    pol = tmp / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(POLICY)
    s = Settings(app_id=app_id, bootstrap_servers=bootstrap, policies=[str(pol)],
                 data_dir=str(tmp / "data"), topic_partitions=3, keyring_file=str(keyring_for(app_id)),
                 **settings)
    reg = ExecutorRegistry()
    reg.register(NoopExecutor())
    return HealerApp(s, load_policy_set(s.policies), reg)


@asynccontextmanager
async def serve(healer: HealerApp, publish_timeout: float = 5.0) -> AsyncIterator[str]:
    runner = web.AppRunner(http.build(healer, publish_timeout=publish_timeout), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def post(s: aiohttp.ClientSession, url: str, body: Any, token: str | None = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    async with s.post(url, data=data, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def test_webhook_lands_on_kafka_split_by_target_and_rejects_bad_payloads(
    kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    app = unique_app_id
    healer = make_healer(tmp_path, app, kafka_bootstrap, webhook_token=HOOK)
    asyncio.run(ensure_topics(kafka_bootstrap, healer.topic_layout()))
    single = json.dumps(am_payload("vllm-a")).encode()
    multi = am_payload("vllm-b", "vllm-c", "vllm-b")

    async def go() -> None:
        async with serve(healer) as base, aiohttp.ClientSession() as s:
            url = f"{base}/api/v1/alerts"
            assert await post(s, url, None, token=HOOK, raw=single) == (
                200, {"status": "accepted", "alerts": 1, "records": 1})
            code, body = await post(s, url, multi, token=HOOK)
            assert (code, body["records"], body["alerts"]) == (200, 2, 3)
            code, body = await post(s, url, {**multi, "version": "3"}, token=HOOK)
            assert code == 400 and "unsupported Alertmanager payload version" in body["error"]
            code, body = await post(s, url, None, token=HOOK, raw=b"{not json")
            assert code == 400 and body["error"].startswith("not JSON")
            code, body = await post(s, url, {"labels": {"alertname": 5}}, token=HOOK)
            assert code == 400 and body["error"].startswith("schema:")
            code, body = await post(s, url, None, token=HOOK, raw=b"x" * (2 * 1024 * 1024))
            assert code == 413
            assert (await post(s, url, multi))[0] == 401  # no token
            async with s.get(f"{base}/api/v1/openapi.json") as r:
                doc = await r.json()
                assert doc["openapi"].startswith("3.") and "/api/v1/alerts" in doc["paths"]

    asyncio.run(go())
    recs = read_until(kafka_bootstrap, f"{app}.alerts", lambda r: len(r) >= 3, timeout=30)
    assert len(recs) == 3
    from aiokafka import AIOKafkaConsumer

    async def raw_records() -> list[tuple[bytes, bytes]]:
        c = AIOKafkaConsumer(f"{app}.alerts", bootstrap_servers=kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            out: list[tuple[bytes, bytes]] = []
            deadline = time.monotonic() + 20
            while len(out) < 3 and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    out.extend((m.key, m.value) for m in msgs)
            return out
        finally:
            await c.stop()

    got = dict(asyncio.run(raw_records()))
    key_a = partition_key(am_payload("vllm-a")["alerts"][0]["labels"])
    assert got[key_a] == single  # one target: the payload exactly as received
    key_b = partition_key(multi["alerts"][0]["labels"])
    key_c = partition_key(multi["alerts"][1]["labels"])
    b, c = json.loads(got[key_b]), json.loads(got[key_c])
    assert [x["fingerprint"] for x in b["alerts"]] == [multi["alerts"][0]["fingerprint"],
                                                        multi["alerts"][2]["fingerprint"]]
    assert [x["labels"]["deployment"] for x in c["alerts"]] == ["vllm-c"]
    assert b["version"] == c["version"] == "4" and b["groupKey"] == multi["groupKey"]
    # every refused payload is audited (under the refusal rate limit), as the webhook identity
    audit = unsealed(kafka_bootstrap, app, 5)
    assert sorted((r["reason"], r["actor"], r["detail"]["http"]["status"]) for r in audit) == [
        ("alert webhook payload refused: not JSON", "user:webhook", 400),
        ("alert webhook payload refused: schema", "user:webhook", 400),
        ("alert webhook payload refused: unsupported Alertmanager payload version", "user:webhook", 400),
        ("request body too large", "user:webhook", 413),
        ("unauthenticated alert webhook attempt", "healer", 401),
    ]


def test_webhook_token_cannot_decide_403_and_audits(
    kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    app = unique_app_id
    healer = make_healer(tmp_path, app, kafka_bootstrap, webhook_token=HOOK)  # no identity may approve
    asyncio.run(ensure_topics(kafka_bootstrap, healer.topic_layout()))

    async def go() -> None:
        async with serve(healer) as base, aiohttp.ClientSession() as s:
            code, body = await post(s, f"{base}/api/v1/approvals/a-123/approve", {"actor": "mallory"}, token=HOOK)
            assert code == 403 and body["error"].startswith("identity webhook may not approve")
            code, body = await post(s, f"{base}/api/v1/approvals/a-123/deny", {"reason": "x"},
                                    token="anything-at-all")
            assert code == 401 and body["error"] == "invalid bearer token"
            async with s.get(f"{base}/api/v1/approvals") as r:
                assert r.status == 200 and (await r.json()) == {"approvals": []}

    asyncio.run(go())
    recs = unsealed(kafka_bootstrap, app, 2)
    got = sorted((r["reason"], r["actor"], r["detail"]["http"]["status"]) for r in recs if r["kind"] == "event.rejected")
    assert got == [("approve attempt by webhook refused: needs role approve", "user:webhook", 403),
                   ("deny attempt with an invalid token", "healer", 401)]
    assert all(r["action_id"] == "a-123" for r in recs)
    assert "anything-at-all" not in json.dumps(recs) and HOOK not in json.dumps(recs)


def test_refusals_beyond_the_burst_are_aggregated_and_flushed_at_shutdown(
    kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    """The refusal rate limit in the server: 1 refusal audited, 4 counted; the open window's
    summary is written when the server stops (the window is an hour: no timer ends it)."""
    app = unique_app_id
    healer = make_healer(tmp_path, app, kafka_bootstrap, webhook_token=HOOK, http_refusal_burst=1,
                         http_refusal_window="1h")
    asyncio.run(ensure_topics(kafka_bootstrap, healer.topic_layout()))

    async def go() -> None:
        async with serve(healer) as base, aiohttp.ClientSession() as s:
            for i in range(5):
                code, _ = await post(s, f"{base}/api/v1/alerts", am_payload("x"), token=f"bad-token-{i:012d}")
                assert code == 401

    asyncio.run(go())
    # each entry has its own event id, so its own audit-log partition: no order between them is
    # read back, only the one they were written in (the summary at shutdown comes second)
    recs = sorted(unsealed(kafka_bootstrap, app, 2),
                  key=lambda r: (parse_time(r["time"]), "(aggregated)" in r["reason"]))
    assert [r["reason"] for r in recs] == ["alert webhook attempt with an invalid token",
                                           "4 more refused requests in 3600s (aggregated)"]
    counted = recs[1]["detail"]["refusals"]
    assert (counted["count"], counted["by_reason"], counted["by_remote"]) == (
        4, {"alert webhook attempt with an invalid token": 4}, {"127.0.0.1": 4})
    assert "bad-token" not in json.dumps(recs)


def test_closed_port_answers_503_and_healthz_reports_it(unique_app_id: str, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    healer = make_healer(tmp_path, unique_app_id, dead, api_token=API, webhook_token=HOOK)

    async def go() -> None:
        app = http.build(healer, publish_timeout=3.0)
        api: http.Api = app[http.API_KEY]
        api.broker.interval = 0.2
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                t0 = time.monotonic()
                code, body = await post(s, f"{base}/api/v1/alerts", am_payload("vllm-a"), token=HOOK)
                assert code == 503 and "Kafka" in body["error"]
                assert time.monotonic() - t0 < 10
                code, _ = await post(s, f"{base}/api/v1/approvals/a-1/approve", {}, token=API)
                assert code == 503
                async with s.get(f"{base}/api/v1/approvals") as r:
                    assert r.status == 503
                deadline = time.monotonic() + 15
                status = None
                while time.monotonic() < deadline:
                    async with s.get(f"{base}/healthz") as r:
                        status = (r.status, (await r.json())["status"])
                    if status == (503, "degraded"):
                        break
                    await asyncio.sleep(0.2)
                assert status == (503, "degraded")
                async with s.get(f"{base}/metrics") as r:
                    text = await r.text()
                    assert r.status == 200 and "healer_ready 0.0" in text
                    assert 'healer_http_requests_total{code="503",route="/api/v1/alerts"} 1.0' in text
        finally:
            await runner.cleanup()

    asyncio.run(go())


def test_healthz_starting_before_first_check(unique_app_id: str, tmp_path: Path) -> None:
    healer = make_healer(tmp_path, unique_app_id, f"127.0.0.1:{free_port()}")

    async def go() -> None:
        app = http.build(healer)
        api: http.Api = app[http.API_KEY]
        request = web.Request.__new__(web.Request)  # the handler does not read the request
        resp = await api.healthz(request)
        assert resp.status == 200 and json.loads(resp.body) == {"status": "starting", "broker": None}

    asyncio.run(go())


class ServerThread:
    """The HTTP app on its own event loop in a thread, so the main thread can stop and
    start the broker (the embedded broker dies with the thread that started it)."""

    def __init__(self, healer: HealerApp, publish_timeout: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.app = http.build(healer, publish_timeout=publish_timeout)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self._call(self.runner.setup())
        self._call(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self.runner.cleanup(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def post_alert(self, name: str) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/alerts", data=json.dumps(am_payload(name)).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)


def test_broker_stop_gives_503_then_recovers(
    restartable_kafka: EmbeddedKafka, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    app = unique_app_id
    healer = make_healer(tmp_path, app, kafka_bootstrap, insecure_no_auth=True)  # anonymous may post alerts
    asyncio.run(ensure_topics(kafka_bootstrap, healer.topic_layout()))
    with ServerThread(healer, publish_timeout=4.0) as srv:
        assert srv.post_alert("before") == 200
        restartable_kafka.stop()
        t0 = time.monotonic()
        assert srv.post_alert("during") == 503
        assert time.monotonic() - t0 < 15
        restartable_kafka.start()
        deadline = time.monotonic() + 60
        code = 0
        while time.monotonic() < deadline:
            code = srv.post_alert("after")
            if code == 200:
                break
            time.sleep(1)
        assert code == 200  # the producer was recreated: no restart of the worker needed
    recs = read_until(kafka_bootstrap, f"{app}.alerts",
                      lambda r: any(x["alerts"][0]["labels"]["deployment"] == "after" for x in r), timeout=30)
    names = [x["alerts"][0]["labels"]["deployment"] for x in recs]
    assert "before" in names and "after" in names
