"""Fixtures for the tests with a real Prometheus and Alertmanager (tests/harness/prometheus.py):
the binaries (Debian's packages, unpacked into ~/.cache/healer/debian on first use), and
factories for Prometheus, Alertmanager and fake inference servers that stop what they started.

Without apt and without a cached install the tests skip with the reason, except under CI
(``CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.prometheus import (
    PACKAGES,
    Alertmanager,
    Prometheus,
    PrometheusUnavailable,
    ensure,
)
from tests.integration.prometheus.exporter import InferenceServer
from tests.integration.prometheus.kit import TOKEN


@pytest.fixture(scope="session")
def prometheus_binaries() -> dict[str, Path]:
    try:
        return {pkg: ensure(pkg) for pkg in PACKAGES}
    except PrometheusUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "healer-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def prometheus(prometheus_binaries: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(config: dict[str, Any], rules: dict[str, Any] | None = None) -> Prometheus:
        p = Prometheus(tmp_path / f"prometheus-{len(started)}")
        started.append(p)
        return p.start(config, rules)

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def alertmanager(prometheus_binaries: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    started: list[Alertmanager] = []

    def start(config: dict[str, Any]) -> Alertmanager:
        a = Alertmanager(tmp_path / f"alertmanager-{len(started)}")
        started.append(a)
        return a.start(config)

    yield start
    for a in started:
        a.stop()


@pytest.fixture
def inference_server() -> Iterator[Callable[..., InferenceServer]]:
    started: list[InferenceServer] = []

    def start(model: str, error_ratio: float = 0.0, gpu_util: float = 50.0) -> InferenceServer:
        s = InferenceServer(model, error_ratio, gpu_util).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()

