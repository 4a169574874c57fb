"""Unit tests for the pure pieces of streams/broker.py and the `healer kafka` CLI's errors.

No broker is started here: properties/pom/log4j rendering, java version parsing, the
Metadata probe's wire format, and the one-line errors when java or mvn is missing.
"""

from __future__ import annotations

import argparse
import base64
import os
import stat
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from healer.cli import kafka_cmd
from streams import broker
from streams.broker import (
    BrokerConfig,
    EmbeddedKafka,
    ToolMissing,
    metadata_request,
    new_cluster_id,
    parse_java_major,
    parse_metadata_brokers,
    render_log4j,
    render_pom,
    render_server_properties,
)


def _props(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in out, f"duplicate key {key}"
            out[key] = value
    return out


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    cfg = BrokerConfig(port=39092, controller_port=39093, data_dir=tmp_path / "data", partitions=6)
    p = _props(render_server_properties(cfg))
    assert p["process.roles"] == "broker,controller"
    assert p["node.id"] == "1"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["log.dirs"] == str(tmp_path / "data")
    assert p["num.partitions"] == "6"
    assert p["auto.create.topics.enable"] == "true"
    assert p["group.initial.rebalance.delay.ms"] == "0"


@pytest.mark.parametrize(
    "key",
    [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ],
)
def test_server_properties_one_replica_everywhere(key: str, tmp_path: Path) -> None:
    # Any of these above 1 makes groups or transactions unavailable on one node.
    p = _props(render_server_properties(BrokerConfig(1, 2, tmp_path)))
    assert p[key] == "1"


def test_server_properties_only_loopback(tmp_path: Path) -> None:
    text = render_server_properties(BrokerConfig(1234, 1235, tmp_path))
    assert "0.0.0.0" not in text
    assert "localhost" not in text


def test_pom_lists_broker_and_logging_backend() -> None:
    root = ET.fromstring(render_pom("3.9.1"))
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {
        (
            d.findtext("m:groupId", namespaces=ns),
            d.findtext("m:artifactId", namespaces=ns),
        ): d.findtext("m:version", namespaces=ns)
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }
    assert deps[("org.apache.kafka", "kafka_2.13")] == "3.9.1"
    assert ("ch.qos.reload4j", "reload4j") in deps
    assert ("org.slf4j", "slf4j-reload4j") in deps
    assert root.findtext("m:packaging", namespaces=ns) == "pom"


def test_log4j_writes_to_given_file(tmp_path: Path) -> None:
    text = render_log4j(tmp_path / "kafka.log")
    assert f"log4j.appender.file.File={tmp_path / 'kafka.log'}" in text
    assert text.startswith("log4j.rootLogger=INFO, file")


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('openjdk version "21-ea" 2023-09-19', 21),
        ('openjdk version "25" 2025-09-16', 25),
        ("bash: java: command not found", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_cluster_id_format() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_metadata_request_wire_format() -> None:
    frame = metadata_request(7, client_id="probe")
    (size,) = struct.unpack_from(">i", frame, 0)
    assert size == len(frame) - 4
    api_key, api_version, correlation_id, client_len = struct.unpack_from(">hhih", frame, 4)
    assert (api_key, api_version, correlation_id) == (3, 1, 7)
    assert frame[14 : 14 + client_len] == b"probe"
    assert struct.unpack_from(">i", frame, 14 + client_len) == (-1,)  # all topics


def _metadata_v1_payload(
    correlation_id: int, brokers: list[tuple[int, str, int, str | None]]
) -> bytes:
    out = struct.pack(">ii", correlation_id, len(brokers))
    for node_id, host, port, rack in brokers:
        out += struct.pack(">ih", node_id, len(host)) + host.encode() + struct.pack(">i", port)
        out += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    return out + struct.pack(">ii", 1, 0)  # controller id, no topics


def test_parse_metadata_brokers() -> None:
    payload = _metadata_v1_payload(9, [(1, "127.0.0.1", 9092, None), (2, "h2", 9093, "rack-a")])
    assert parse_metadata_brokers(payload, 9) == [(1, "127.0.0.1", 9092), (2, "h2", 9093)]
    with pytest.raises(ValueError, match="correlation"):
        parse_metadata_brokers(payload, 10)


# ---------------------------------------------------------------- missing tools


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with neither java nor mvn, no JAVA_HOME, and an empty jar cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return bin_dir


def _fake_tool(bin_dir: Path, name: str, stderr: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho '{stderr}' >&2\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_missing_java_says_what_to_install(bare_path: Path) -> None:
    with pytest.raises(ToolMissing, match=r"java not found on PATH: install a Java 17\+") as err:
        broker.find_java()
    assert "\n" not in str(err.value)


def test_old_java_is_refused(bare_path: Path) -> None:
    _fake_tool(bare_path, "java", 'java version "1.8.0_392"')
    with pytest.raises(ToolMissing, match=r"java 8 .* too old \(need 17\+\)"):
        broker.find_java()


def test_missing_mvn_says_what_to_install(bare_path: Path, tmp_path: Path) -> None:
    kafka = EmbeddedKafka(state_dir=tmp_path / "state")
    with pytest.raises(ToolMissing, match=r"mvn not found on PATH .*apt-get install maven") as err:
        kafka.ensure_jars()
    assert "\n" not in str(err.value)


def test_start_without_java_fails_before_touching_anything(bare_path: Path, tmp_path: Path) -> None:
    kafka = EmbeddedKafka(state_dir=tmp_path / "state")
    with pytest.raises(ToolMissing, match="java not found"):
        kafka.start()
    assert not (tmp_path / "cache" / "healer" / "kafka" / broker.KAFKA_VERSION / "libs").exists()
    assert not (tmp_path / "state" / "state.json").exists()


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="healer")
    kafka_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_up_without_java_exits_1_with_one_line(
    bare_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli("kafka", "up", "--state-dir", str(tmp_path / "state"))
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "java not found" in lines[0]
    assert "apt-get install openjdk-17-jre-headless" in lines[0]


def test_cli_status_of_never_started_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli("kafka", "status", "--state-dir", str(tmp_path / "state"))
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "state: stopped" in out
    assert "bootstrap:" not in out


def test_cli_down_when_nothing_runs_is_ok(tmp_path: Path) -> None:
    args = _cli("kafka", "down", "--state-dir", str(tmp_path / "state"))
    assert args.func(args) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["kafka"],
        ["kafka", "up", "--port", "0"],
        ["kafka", "up", "--port", "70000"],
        ["kafka", "up", "--partitions", "0"],
        ["kafka", "up", "--partitions", "x"],
        ["kafka", "restart"],
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli(*argv)
    assert exc.value.code == 2


def test_embedded_kafka_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="partitions"):
        EmbeddedKafka(partitions=0)
    with pytest.raises(ValueError, match="port"):
        EmbeddedKafka(port=70000)


def test_cache_root_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert broker.cache_root() == tmp_path / "healer" / "kafka"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert broker.cache_root() == Path(os.path.expanduser("~")) / ".cache" / "healer" / "kafka"


def test_jvm_flags_from_env_come_last_so_they_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(broker.JVM_OPTS_ENV, "-XX:TieredStopAtLevel=4 -Dx='a b'")
    kafka = EmbeddedKafka(state_dir=tmp_path, heap="256m", jvm_opts=["-Dfrom.arg=1"])
    java = broker.Java(path="/usr/bin/java", major=17, version_text='openjdk version "17"')
    cmd = kafka._jvm_command(java, tmp_path / "libs", tmp_path / "log4j.properties")
    assert cmd[0] == "/usr/bin/java"
    assert "-Xmx256m" in cmd
    assert cmd[-2:] == ["-cp", f"{tmp_path / 'libs'}/*"]
    tail = cmd[-5:-2]
    assert tail == ["-Dfrom.arg=1", "-XX:TieredStopAtLevel=4", "-Dx=a b"]
    assert cmd.index("-XX:TieredStopAtLevel=1") < cmd.index("-XX:TieredStopAtLevel=4")


def test_class_data_archive_is_keyed_by_java(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kafka = EmbeddedKafka(state_dir=tmp_path / "state")
    kafka.libs_dir.mkdir(parents=True)
    (kafka.libs_dir / broker.JARS_MARKER).write_text("x.jar\n")
    j17 = broker.Java(path="/usr/bin/java", major=17, version_text='openjdk version "17.0.15"')
    j21 = broker.Java(path="/usr/bin/java", major=21, version_text='openjdk version "21.0.2"')
    a17, a21 = kafka._cds_archive(j17), kafka._cds_archive(j21)
    assert a17 != a21
    assert a17 == kafka._cds_archive(j17)
    assert a17.parent == kafka.version_dir / "cds"
