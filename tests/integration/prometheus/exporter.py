"""A small exporter that plays a Triton inference server for the Prometheus tests.

A background thread serves fake requests (20 per second): each is a success or, with
``error_ratio``, a failure, and its latency goes into a histogram. Metrics, in a registry of
their own, served by prometheus_client's HTTP server on a free loopback port:

- ``nv_inference_request_success`` / ``nv_inference_request_failure`` (Triton's names, counters
  without ``_total``: prometheus_client appends ``_total`` to a counter, so these are exposed
  untyped; PromQL's ``rate()`` does not care);
- ``inference_request_duration_seconds`` (histogram);
- ``DCGM_FI_DEV_GPU_UTIL`` (the DCGM exporter's GPU utilisation gauge, ``gpu`` label).

Used by tests/integration/prometheus/conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric

from tests.workers import free_port

REQUESTS_PER_SECOND = 20


class _TritonCounters:
    def __init__(self, server: InferenceServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        for name, value in (("nv_inference_request_success", self.server.successes),
                            ("nv_inference_request_failure", self.server.failures)):
            m = Metric(name, f"{name} (Triton's counter)", "unknown")
            m.add_sample(name, {"model": self.server.model}, float(value))
            yield m


class InferenceServer:
    def __init__(self, model: str, error_ratio: float, gpu_util: float, latency_s: float = 0.2) -> None:
        self.model, self.error_ratio, self.latency_s = model, error_ratio, latency_s
        self.port = free_port()
        self.successes = self.failures = 0
        self.registry = CollectorRegistry()
        self.registry.register(_TritonCounters(self))
        self.latency = Histogram("inference_request_duration_seconds", "Request latency",
                                 ["model"], registry=self.registry)
        self.gpu = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilisation (%)", ["gpu"], registry=self.registry)
        self.gpu.labels(gpu="0").set(gpu_util)
        self._stop = threading.Event()
        self._http: Any = None
        self._threads: list[threading.Thread] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        n = 0
        while not self._stop.wait(1.0 / REQUESTS_PER_SECOND):
            n += 1
            # every k-th request fails: an exact, steady error ratio
            if self.error_ratio and n % round(1 / self.error_ratio) == 0:
                self.failures += 1
            else:
                self.successes += 1
            self.latency.labels(model=self.model).observe(self.latency_s)

    def start(self) -> InferenceServer:
        server, thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._http = server
        traffic = threading.Thread(target=self._serve, name=f"traffic-{self.model}", daemon=True)
        traffic.start()
        self._threads = [thread, traffic]
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for t in self._threads:
            t.join(timeout=5)
