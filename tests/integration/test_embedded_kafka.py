"""Integration tests of the embedded Kafka broker (streams/broker.py) and `healer kafka`.

Real JVM brokers only. The session broker (tests/kafka_fixture.py) serves the
client-level tests, which therefore also pass against Docker or an external
cluster; lifecycle tests (idempotent up, down, restart, no leftovers) run their
own broker in a temp state dir so they never disturb the session broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.broker import (
    HOST,
    BrokerError,
    EmbeddedKafka,
    ToolMissing,
    free_port,
    port_is_free,
    probe,
)
from tests.kafka_fixture import kafka_required

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def healer_kafka(*argv: str) -> subprocess.CompletedProcess[str]:
    """`healer kafka ...` in a separate process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "healer.cli.main", "kafka", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_gone(pid):
            return True
        time.sleep(0.1)
    return pid_gone(pid)


@pytest.fixture(scope="module")
def own_broker_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    broker = EmbeddedKafka(state_dir=tmp_path_factory.mktemp("own-kafka"), die_with_parent=True)
    try:
        broker.start()
    except ToolMissing as exc:
        if kafka_required():
            pytest.fail(str(exc))
        pytest.skip(f"embedded broker cannot start: {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_broker(own_broker_module: EmbeddedKafka) -> EmbeddedKafka:
    """The module's own broker, running (a previous test may have stopped it)."""
    own_broker_module.start()
    return own_broker_module


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str,
    topic: str,
    expected: int,
    *,
    group_id: str | None = None,
    isolation_level: str = "read_uncommitted",
    timeout: float = 30.0,
) -> list[bytes]:
    """Values from the start of partition 0 until ``expected`` arrived or ``timeout``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        if group_id is None:
            consumer.assign([TopicPartition(topic, 0)])
        else:
            consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values += [r.value for r in records if r.value is not None]
        if group_id is not None and values:
            await consumer.commit()
    finally:
        await consumer.stop()
    return values


# ---------------------------------------------------------------- client level (any broker)


def test_produce_and_consume_one_record(kafka_bootstrap: str, unique_app_id: str) -> None:
    topic = f"{unique_app_id}.roundtrip"

    async def scenario() -> list[bytes]:
        await produce(kafka_bootstrap, topic, [b"hello"])
        return await read_all(kafka_bootstrap, topic, 1, group_id=unique_app_id)

    assert asyncio.run(scenario()) == [b"hello"]


def test_transactions_commit_and_abort(kafka_bootstrap: str, unique_app_id: str) -> None:
    """Exactly-once needs the transaction log to work on this broker (min ISR, replicas)."""
    topic = f"{unique_app_id}.txn"

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"{unique_app_id}-txn"
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted", partition=0)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed", partition=0)
        finally:
            await producer.stop()
        committed = await read_all(
            kafka_bootstrap, topic, 1, isolation_level="read_committed", timeout=5.0
        )
        raw = await read_all(kafka_bootstrap, topic, 2, timeout=15.0)
        return committed, raw

    committed, raw = asyncio.run(scenario())
    assert committed == [b"committed"]
    assert raw == [b"aborted", b"committed"]  # the aborted record is in the log, but not visible


# ---------------------------------------------------------------- lifecycle (own broker)


def test_up_is_idempotent(own_broker: EmbeddedKafka) -> None:
    before = own_broker.status()
    assert before["running"] and before["answers"]

    first = healer_kafka("up", "--state-dir", str(own_broker.state_dir))
    second = healer_kafka("up", "--state-dir", str(own_broker.state_dir))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    line = f"bootstrap: {HOST}:{before['port']}"
    assert first.stdout.splitlines() == [line]
    assert second.stdout.splitlines() == [line]
    assert own_broker.start() == f"{HOST}:{before['port']}"
    after = own_broker.status()
    assert (after["pid"], after["port"], after["started_at"]) == (
        before["pid"],
        before["port"],
        before["started_at"],
    )

    status = healer_kafka("status", "--state-dir", str(own_broker.state_dir))
    assert status.returncode == 0, status.stderr
    assert line in status.stdout.splitlines()
    assert "state: running" in status.stdout.splitlines()


def test_state_file_contents(own_broker: EmbeddedKafka) -> None:
    state = json.loads((own_broker.state_dir / "state.json").read_text())
    assert set(state) >= {
        "pid",
        "port",
        "controller_port",
        "bootstrap",
        "log_dir",
        "version",
        "started_at",
    }
    assert state["bootstrap"] == f"{HOST}:{state['port']}" == own_broker.bootstrap
    assert state["port"] != state["controller_port"]
    assert (Path(state["log_dir"]) / "meta.properties").is_file()


def test_up_on_a_different_port_while_running_is_refused(own_broker: EmbeddedKafka) -> None:
    other = EmbeddedKafka(state_dir=own_broker.state_dir, port=free_port())
    with pytest.raises(BrokerError, match="already runs on port"):
        other.start()


def test_down_leaves_no_process(own_broker: EmbeddedKafka) -> None:
    state = own_broker.status()
    pid, port = state["pid"], state["port"]
    assert not pid_gone(pid)

    down = healer_kafka("down", "--state-dir", str(own_broker.state_dir))
    assert down.returncode == 0, down.stderr
    assert wait_gone(pid, timeout=5.0), f"broker pid {pid} still alive after down"
    leftovers = [
        p.parent.name
        for p in Path("/proc").glob("[0-9]*/stat")
        if _pgid_of(p) == pid and not pid_gone(int(p.parent.name))
    ]
    assert leftovers == []
    assert port_is_free(port)
    assert not probe(f"{HOST}:{port}")
    after = own_broker.status()
    assert after["pid"] is None
    assert not after["running"]
    assert "stopped_at" in after

    status = healer_kafka("status", "--state-dir", str(own_broker.state_dir))
    assert status.returncode == 1
    assert "state: stopped" in status.stdout


def _pgid_of(stat_path: Path) -> int | None:
    try:
        return int(stat_path.read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def test_restart_keeps_data_and_port(own_broker: EmbeddedKafka) -> None:
    topic = "restart.keeps.data"
    bootstrap = own_broker.bootstrap
    asyncio.run(produce(bootstrap, topic, [b"before-restart"]))
    old_pid = own_broker.status()["pid"]

    assert own_broker.stop() is True
    assert wait_gone(old_pid, timeout=5.0)
    assert own_broker.start() == bootstrap  # same port, remembered in the state file
    assert own_broker.status()["pid"] != old_pid

    asyncio.run(produce(bootstrap, topic, [b"after-restart"]))
    values = asyncio.run(read_all(bootstrap, topic, 2))
    assert values == [b"before-restart", b"after-restart"]


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_is_free(port)
        assert not probe(f"{HOST}:{port}", timeout=0.5)  # listens, but is no Kafka broker
        with pytest.raises(BrokerError, match=f"port {port} .* already in use"):
            EmbeddedKafka(state_dir=tmp_path / "state", port=port).start()
    assert not (tmp_path / "state" / "state.json").exists()


def test_broker_dies_with_its_parent_when_asked(tmp_path: Path) -> None:
    """A killed test session must not leave a JVM behind (die_with_parent)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from streams.broker import EmbeddedKafka
        k = EmbeddedKafka(state_dir=Path({str(tmp_path / "state")!r}), die_with_parent=True)
        print(k.start(), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.startswith(f"{HOST}:"), line
        pid = json.loads((tmp_path / "state" / "state.json").read_text())["pid"]
        assert not pid_gone(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_gone(pid, timeout=30.0), f"broker {pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        EmbeddedKafka(state_dir=tmp_path / "state").stop(kill=True)


# ---------------------------------------------------------------- the session broker


def test_session_broker_survives_a_crash(
    restartable_kafka: EmbeddedKafka, kafka_bootstrap: str, unique_app_id: str
) -> None:
    """SIGKILL (no controlled shutdown), restart: acknowledged records are still there."""
    topic = f"{unique_app_id}.crash"
    asyncio.run(produce(kafka_bootstrap, topic, [b"acked"]))
    pid = restartable_kafka.status()["pid"]

    restartable_kafka.stop(kill=True)
    assert wait_gone(pid, timeout=5.0)
    assert restartable_kafka.start() == kafka_bootstrap

    assert asyncio.run(read_all(kafka_bootstrap, topic, 1)) == [b"acked"]


def test_corrupt_class_data_archive_does_not_block_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated CDS archive crashes the JVM; start() must drop it and start anyway."""
    real_libs = EmbeddedKafka().ensure_jars()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kafka = EmbeddedKafka(state_dir=tmp_path / "state", die_with_parent=True)
    kafka.version_dir.mkdir(parents=True)
    kafka.libs_dir.symlink_to(real_libs)  # a private archive dir without a second download
    try:
        kafka.start()
        kafka.stop()  # a clean exit adopts the archive the first run dumped
        archives = list((kafka.version_dir / "cds").glob("*.jsa"))
        assert len(archives) == 1
        with archives[0].open("r+b") as fh:
            fh.truncate(archives[0].stat().st_size // 2)

        assert kafka.start() == kafka.bootstrap
        assert kafka.status()["answers"]
        assert not archives[0].exists()  # dropped; the next clean stop writes a new one
    finally:
        kafka.stop(kill=True)
