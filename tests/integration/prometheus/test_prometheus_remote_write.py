"""``POST /api/v1/write`` of a real ``healer run`` worker: fed by a real Prometheus 2.42 process
(scraping fake inference servers), by hand-made requests, and by malformed ones.

- Real Prometheus: only the series a policy could match reach ``{app}.metrics``, as healer metric
  samples, one record per destination partition; the staleness markers Prometheus writes when a
  target disappears are dropped and counted; Prometheus itself records no failed sample.
- Malformed bodies (bad snappy, bad protobuf, oversize, a snappy bomb) get 400, are audited as
  ``event.rejected`` and leave nothing on the topic; other protocols get 415, a wrong token 401.
- Broker down: 503 with Retry-After, and real Prometheus retries instead of dropping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cramjam
import pytest

from healer.ingest import partition_key
from healer.partitioner import partition_for
from healer.remote_write import WriteRequest
from tests.harness.prometheus import Prometheus
from tests.integration.prometheus.exporter import InferenceServer
from tests.integration.prometheus.kit import (
    TOKEN,
    Rec,
    http_up,
    post,
    read_records,
    remote_write,
    remote_write_samples,
    wait_for,
)
from tests.integration.test_http_worker import samples, total
from tests.workers import Worker, WorkerFactory, free_port, read_until

pytestmark = pytest.mark.integration

PARTITIONS = 3
GPU_POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: gpu-busy}
spec:
  trigger:
    metric:
      name: DCGM_FI_DEV_GPU_UTIL
      matchers: ['namespace="llm-rw"']
      group_by: [namespace, deployment]
      aggregate: avg
      window: 30s
      op: ">"
      threshold: 1000        # never: this file tests the way in, not the decision
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - use: healer.noop
      with: {message: "scale out"}
"""


def start_worker(healer_worker: WorkerFactory, tmp_path: Path, app: str, **env: str) -> Worker:
    pol = tmp_path / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "gpu.yaml").write_text(GPU_POLICY)
    return healer_worker.start(pol, app, partitions=PARTITIONS, HEALER_WEBHOOK_TOKEN=TOKEN, **env)


def write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    req = WriteRequest()
    for labels, points in series:
        ts = req.timeseries.add()
        for k, v in sorted(labels.items()):
            lb = ts.labels.add()
            lb.name, lb.value = k, v
        for value, ms in points:
            s = ts.samples.add()
            s.value, s.timestamp = value, ms
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def check_partitioning(records: list[Rec]) -> None:
    """Every sample of a record hashes to the record's partition, like the record's key."""
    for r in records:
        assert r.key is not None and partition_for(r.key, PARTITIONS) == r.partition
        for s in r.value:
            assert partition_for(partition_key(s["labels"]), PARTITIONS) == r.partition, (r, s)


def metric_records_read(w: Worker) -> float:
    """Records of {app}.metrics the ingest stage parsed or dead-lettered."""
    return total(samples(w), "healer_events_total", topic="metrics")


def scrape_config(*servers: tuple[InferenceServer, str]) -> dict[str, object]:
    return {"job_name": "triton", "static_configs": [
        {"targets": [s.target], "labels": {"namespace": "llm-rw", "deployment": d}} for s, d in servers]}


def test_real_prometheus_writes_only_the_series_policies_want(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
    prometheus: Callable[..., Prometheus], inference_server: Callable[..., InferenceServer], token_file: Path,
) -> None:
    w = start_worker(healer_worker, tmp_path, unique_app_id)
    a = inference_server("llm-a", gpu_util=97.0)
    b = inference_server("llm-b", gpu_util=50.0)
    prom = prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [scrape_config((a, "a"), (b, "b"))],
        "remote_write": [remote_write(w.url("/api/v1/write"), token_file)],
    })
    topic = f"{unique_app_id}.metrics"

    def both(rs: list[Rec]) -> bool:
        seen = {(s["labels"]["deployment"], s["value"]) for r in rs for s in r.value}
        return {("a", 97.0), ("b", 50.0)} <= seen

    records = read_records(kafka_bootstrap, topic, both, timeout=90)
    assert both(records), f"{records[:3]}\n{w.log_tail()}\n{prom.log_tail()}"
    # b disappears: Prometheus writes a staleness marker for each of its series
    b.stop()
    wait_for("healer to count Prometheus' staleness markers", lambda: remote_write_samples(w, "stale") > 0, 90)
    accepted = remote_write_samples(w, "accepted")
    records = read_records(kafka_bootstrap, topic, lambda rs: sum(len(r.value) for r in rs) >= accepted, 30)

    written = [s for r in records for s in r.value]
    assert {s["name"] for s in written} == {"DCGM_FI_DEV_GPU_UTIL"}  # not up, nv_*, the histogram...
    for s in written:
        assert set(s) == {"name", "value", "labels", "timestamp"} and s["timestamp"].endswith("Z")
        assert "__name__" not in s["labels"] and s["labels"]["namespace"] == "llm-rw"
        assert s["labels"]["job"] == "triton" and s["labels"]["gpu"] == "0"
    check_partitioning(records)
    assert len(written) >= accepted  # every accepted sample is on the topic (and maybe later ones)
    assert remote_write_samples(w, "no_policy") > accepted > 0
    # Prometheus saw every request succeed: nothing failed, nothing dropped
    assert prom.own_metric("prometheus_remote_storage_samples_failed_total") == 0, prom.log_tail()
    assert prom.own_metric("prometheus_remote_storage_samples_total") > 0
    # and the ingest stage parsed every record as samples (none dead-lettered)
    wait_for("ingest to read the records", lambda: metric_records_read(w) >= len(records), 60)
    assert total(samples(w), "healer_events_total", topic="metrics", outcome="rejected") == 0
    assert "HTTP handler failed" not in w.log_path.read_text(errors="replace")


BAD_BODIES = {
    "bad snappy": (b"\xff\xff\xff\xff\xff\xff not snappy", "bad snappy"),
    "bad protobuf": (bytes(cramjam.snappy.compress_raw(b"\x0a\x7f\x0a")), "bad protobuf"),
    "oversize": (os.urandom(4 * 1024 * 1024 + 1), "oversize: body is larger than"),
    "snappy bomb": (b"\x80\x80\x80\x80\x08" + b"\x00" * 64, "oversize: body decompresses to 2147483648"),
    "real bomb": (bytes(cramjam.snappy.compress_raw(b"\x00" * (17 << 20))), "oversize: body decompresses to"),
}


def test_malformed_bodies_get_400_and_leave_nothing_on_the_topic(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
) -> None:
    w = start_worker(healer_worker, tmp_path, unique_app_id)
    for name, (raw, reason) in BAD_BODIES.items():
        code, _, body = post(w, "/api/v1/write", raw)
        assert code == 400 and body["error"].startswith(reason), (name, code, body)
    # a sender that streams without Content-Length is cut off at the limit too
    code, _, body = post(w, "/api/v1/write", BAD_BODIES["oversize"][0], chunked=True)
    assert code == 400 and body["error"].startswith("oversize: body is larger than"), (code, body)
    for headers in ({"Content-Encoding": "gzip"},
                    {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}):
        code, _, body = post(w, "/api/v1/write", write_request([]), headers=headers)
        assert code == 415, (headers, code, body)
    code, hdrs, _ = post(w, "/api/v1/write", write_request([]), token="wrong")
    assert code == 401 and hdrs.get("WWW-Authenticate", "").startswith("Bearer")

    # then one good request for 12 targets: one record per destination partition, in order
    ms = 1_790_000_000_000
    good = [({"__name__": "DCGM_FI_DEV_GPU_UTIL", "namespace": "llm-rw", "deployment": f"d{i}", "gpu": "0"},
             [(float(i), ms), (float(i) + 0.5, ms + 1000)]) for i in range(12)]
    unwanted = [({"__name__": "up", "namespace": "llm-rw"}, [(1.0, ms)]),
                ({"__name__": "DCGM_FI_DEV_GPU_UTIL", "namespace": "batch"}, [(1.0, ms)])]
    code, _, body = post(w, "/api/v1/write", write_request(good + unwanted))
    expected_parts = {partition_for(partition_key(labels), PARTITIONS) for labels, _ in good}
    assert code == 200 and body == {"status": "accepted", "accepted": 24, "dropped": {"no_policy": 2},
                                    "records": len(expected_parts)}, body
    records = read_records(kafka_bootstrap, f"{unique_app_id}.metrics",
                           lambda rs: sum(len(r.value) for r in rs) >= 24, timeout=30)
    # nothing but the good request's records: the refused ones produced nothing
    assert sorted(r.partition for r in records) == sorted(expected_parts)
    check_partitioning(records)
    by_deployment: dict[str, list[float]] = {}
    for r in records:
        for s in r.value:
            by_deployment.setdefault(s["labels"]["deployment"], []).append(s["value"])
    assert by_deployment == {f"d{i}": [float(i), i + 0.5] for i in range(12)}

    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda rs: sum(r.get("kind") == "event.rejected" for r in rs) >= 9, timeout=30)
    reasons = [r["reason"] for r in audit if r.get("kind") == "event.rejected"]
    for _, reason in BAD_BODIES.values():  # audited under the reason's category (a bounded set)
        category = reason.split(":", 1)[0]
        assert f"remote write refused: {category}" in reasons, (reason, reasons)
    assert "remote write attempt with an invalid token" in reasons
    assert sum("is not supported" in x for x in reasons) == 2
    assert TOKEN not in w.log_path.read_text(errors="replace")


def test_broker_down_answers_503_and_prometheus_retries(
    healer_worker: WorkerFactory, unique_app_id: str, tmp_path: Path,
    prometheus: Callable[..., Prometheus], inference_server: Callable[..., InferenceServer], token_file: Path,
) -> None:
    # a worker whose broker is a closed port: its HTTP server is up from process start
    dead = f"127.0.0.1:{free_port()}"
    w = start_worker(healer_worker, tmp_path, unique_app_id, wait=False, HEALER_BOOTSTRAP_SERVERS=dead)
    wait_for("the worker's HTTP server", lambda: http_up(w), 60)
    wanted = ({"__name__": "DCGM_FI_DEV_GPU_UTIL", "namespace": "llm-rw", "deployment": "x"}, [(1.0, 1_790_000_000_000)])
    code, hdrs, body = post(w, "/api/v1/write", write_request([wanted]))
    assert code == 503 and hdrs.get("Retry-After") == "5", (code, body, w.log_tail())
    # nothing to produce: accepted without the broker; bad data is still bad data
    assert post(w, "/api/v1/write", write_request([({"__name__": "up"}, [(1.0, 1)])]))[0] == 200
    assert post(w, "/api/v1/write", b"\xff\xff\xff\xff\xff\xff")[0] == 400
    assert remote_write_samples(w, "unavailable") == 1

    a = inference_server("llm-a", gpu_util=97.0)
    prom = prometheus({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [scrape_config((a, "a"))],
        "remote_write": [remote_write(w.url("/api/v1/write"), token_file)],
    })
    wait_for("Prometheus to retry", lambda: prom.own_metric("prometheus_remote_storage_samples_retried_total") > 0, 120)
    assert prom.own_metric("prometheus_remote_storage_samples_failed_total") == 0
    assert remote_write_samples(w, "unavailable") > 1
