"""pytest plugin: one real Kafka broker per test session.

Loaded from tests/conftest.py (``pytest_plugins = ["tests.kafka_fixture"]``).
Where the broker comes from, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that cluster is used as is.
2. A Docker engine answers a ping: testcontainers' Kafka module (KRaft).
3. Otherwise the embedded broker (streams/broker.py) in a fresh temp state dir,
   started once per session and stopped at its end; ``HEALER_TEST_PARTITIONS``
   sets its default partitions per topic (default 1).

When java or mvn is missing the embedded broker cannot start: Kafka tests are
skipped with the reason, unless ``HEALER_REQUIRE_KAFKA`` is set, in which case
they fail. Under ``CI`` every skip fails anyway (tests/ci_skips.py).

Fixtures: ``kafka_bootstrap`` (str); ``embedded_kafka`` (the EmbeddedKafka, or
None for an external/container broker); ``restartable_kafka`` (per test: the
EmbeddedKafka for tests that stop, kill or restart the broker; skips, saying
why, when the broker is not embedded, which under ``CI`` is a failure, and
makes sure it runs again after the test); ``unique_app_id`` (fresh per test, so
every test has its own topics and groups).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from streams.broker import EmbeddedKafka, ToolMissing

DOCKER_PING_TIMEOUT_S = 3
CONTAINER_START_TIMEOUT_S = 180


@dataclass(frozen=True)
class KafkaBackend:
    """The session's broker: where it is and, when embedded, the object that runs it."""

    bootstrap: str
    kind: str  # "external" | "testcontainers" | "embedded"
    embedded: EmbeddedKafka | None = None


def partitions_from_env() -> int:
    raw = os.environ.get("HEALER_TEST_PARTITIONS", "1")
    try:
        value = int(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"HEALER_TEST_PARTITIONS must be an integer, got {raw!r}") from exc
    if value < 1:
        raise pytest.UsageError(f"HEALER_TEST_PARTITIONS must be >= 1, got {value}")
    return value


def docker_available() -> bool:
    """A Docker engine answers a ping; any failure (no SDK, no socket, timeout) means no."""
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # the docker SDK raises many unrelated types; all mean "no Docker"
        return False


def kafka_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("HEALER_REQUIRE_KAFKA"))


def _start_container(partitions: int) -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # older testcontainers layout
        from testcontainers.kafka import KafkaContainer

    container = (
        KafkaContainer()
        .with_kraft()
        .with_env("KAFKA_NUM_PARTITIONS", str(partitions))
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
        # single node: transactions (exactly-once) need these at 1
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    container.start(timeout=CONTAINER_START_TIMEOUT_S)
    return container


@pytest.fixture(scope="session")
def kafka_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBackend]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield KafkaBackend(bootstrap=external, kind="external")
        return

    partitions = partitions_from_env()
    if docker_available():
        container = _start_container(partitions)
        try:
            yield KafkaBackend(bootstrap=container.get_bootstrap_server(), kind="testcontainers")
        finally:
            container.stop()
        return

    broker = EmbeddedKafka(
        state_dir=tmp_path_factory.mktemp("kafka"),
        partitions=partitions,
        die_with_parent=True,
    )
    try:
        bootstrap = broker.start()
    except ToolMissing as exc:
        message = f"no Kafka broker: embedded broker cannot start: {exc}"
        if kafka_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield KafkaBackend(bootstrap=bootstrap, kind="embedded", embedded=broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_backend: KafkaBackend) -> str:
    """``host:port`` of a real Kafka broker for this session."""
    return kafka_backend.bootstrap


@pytest.fixture(scope="session")
def embedded_kafka(kafka_backend: KafkaBackend) -> EmbeddedKafka | None:
    """The session's embedded broker, or None when the broker is external or a container."""
    return kafka_backend.embedded


@pytest.fixture
def unique_app_id() -> str:
    """A fresh app id (``t`` + 12 hex digits): own topics, consumer groups, transactional ids."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def restartable_kafka(kafka_backend: KafkaBackend) -> Iterator[EmbeddedKafka]:
    """The embedded broker for a test that stops/kills/restarts it; running again afterwards.
    Another kind of session broker: a skip with the reason (a failure under CI, tests/ci_skips.py)."""
    broker = kafka_backend.embedded
    if broker is None:
        pytest.skip(
            f"needs the embedded broker to restart it; the session uses a {kafka_backend.kind} "
            f"broker at {kafka_backend.bootstrap} (unset KAFKA_BOOTSTRAP_SERVERS and make Docker "
            "unreachable, e.g. DOCKER_HOST=unix:///nonexistent, to use the embedded one)"
        )
    try:
        yield broker
    finally:
        broker.start()  # no-op when the test left it running
