"""Embedded single-node Apache Kafka broker (KRaft) on loopback.

Fetches the Apache Kafka jars once from Maven Central with ``mvn`` into
``${XDG_CACHE_HOME:-~/.cache}/healer/kafka/<version>/libs``, formats a KRaft
data directory and runs ``java kafka.Kafka`` detached in its own session, so it
outlives the command that started it. State (pid, ports, bootstrap) is kept in
``state.json`` in the state directory, which makes ``start`` idempotent and lets
``stop`` find the process from another command.

Called by ``healer kafka up|down|status`` (healer/cli/kafka_cmd.py), by the
pytest plugin ``tests/kafka_fixture.py`` and by the demo and the benchmark.

Why Kafka 3.9 and not 4.x: 3.9 is the last line that accepts every old protocol
version (Kafka 4.0 removed many by KIP-896, e.g. CreateTopics v0-v1, which
faust-streaming sends when paired with aiokafka < 0.13), and it logs through
log4j 1.x (reload4j), whose one-file configuration is simple to generate. The
aiokafka 0.14 we pin negotiates versions that Kafka 4.x still accepts, so moving
to 4.x later needs a log4j2 configuration here, not client changes.

Start time matters on 2 cores (tests start several brokers): the JVM runs with
the C1 JIT only, and the first clean stop records a class-data-sharing archive
(``<version>/cds``) that later starts map; a warm start takes about 3 s instead of 7.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"
# The versions Apache Kafka 3.9.1's own distribution ships for logging.
SLF4J_VERSION = "1.7.36"
RELOAD4J_VERSION = "1.2.25"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MIN_JAVA = 17
HOST = "127.0.0.1"

DEFAULT_HEAP = "512m"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
MVN_TIMEOUT_S = 900.0
STORAGE_TIMEOUT_S = 120.0

STATE_FILE = "state.json"
LOG_FILE = "kafka.log"  # log4j output
OUT_FILE = "kafka.out"  # the JVM's stdout/stderr (crashes, early errors)
JARS_MARKER = ".complete"
JVM_OPTS_ENV = "HEALER_KAFKA_JVM_OPTS"
CDS_STALE_S = 600.0
_PR_SET_PDEATHSIG = 1

_JAVA_INSTALL_HINT = "install a Java 17+ runtime, e.g. `apt-get install openjdk-17-jre-headless`"
_MVN_INSTALL_HINT = "install Apache Maven, e.g. `apt-get install maven`"


class BrokerError(RuntimeError):
    """The embedded broker could not be provisioned, started or stopped."""


class ToolMissing(BrokerError):
    """A required program (java, mvn) is absent or too old; the message says what to install."""


# --------------------------------------------------------------------------- pure pieces


@dataclass(frozen=True)
class BrokerConfig:
    """Everything server.properties depends on."""

    port: int
    controller_port: int
    data_dir: Path
    partitions: int = 1
    node_id: int = 1


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/healer/kafka``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "healer" / "kafka"


def default_state_dir(name: str = "default") -> Path:
    return cache_root() / "run" / name


def render_pom(version: str = KAFKA_VERSION) -> str:
    """A pom whose only purpose is ``mvn dependency:copy-dependencies`` of the broker's jars."""
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", version),
        # kafka_2.13's pom leaves the logging backend to the distribution; kafka.Kafka
        # needs log4j 1.x classes (Log4jController) at runtime.
        ("org.slf4j", "slf4j-reload4j", SLF4J_VERSION),
        ("ch.qos.reload4j", "reload4j", RELOAD4J_VERSION),
    ]
    dep_xml = "\n".join(
        "    <dependency>"
        f"<groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
        "</dependency>"
        for g, a, v in deps
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>dev.healer</groupId>\n"
        "  <artifactId>embedded-kafka-jars</artifactId>\n"
        f"  <version>{version}</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n"
        f"{dep_xml}\n"
        "  </dependencies>\n"
        "</project>\n"
    )


def render_server_properties(cfg: BrokerConfig) -> str:
    """server.properties for a combined broker+controller node on loopback."""
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": cfg.node_id,
        "controller.quorum.voters": f"{cfg.node_id}@{HOST}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{cfg.port},CONTROLLER://{HOST}:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{cfg.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        "num.partitions": cfg.partitions,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        # One node: internal topics must not ask for 3 replicas, or consumer groups
        # and transactions (exactly-once) never become available.
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        # 50 partitions each (the default) cost seconds on first use on 2 cores.
        "offsets.topic.num.partitions": 8,
        "transaction.state.log.num.partitions": 8,
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": 0,
        # After a crash (SIGKILL) the restarted node must wait for its old registration
        # to expire before it may serve: 9 s by default; kept short for chaos tests.
        "broker.session.timeout.ms": 3000,
        "broker.heartbeat.interval.ms": 750,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "log.retention.hours": 168,
        "log.segment.bytes": 64 * 1024 * 1024,
    }
    lines = ["# Generated by healer (streams/broker.py); rewritten on every start."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j(log_file: Path) -> str:
    """log4j 1.x configuration: everything to one size-capped file."""
    return (
        "log4j.rootLogger=INFO, file\n"
        "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
        f"log4j.appender.file.File={log_file}\n"
        "log4j.appender.file.MaxFileSize=10MB\n"
        "log4j.appender.file.MaxBackupIndex=2\n"
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.request.logger=WARN\n"
        "log4j.logger.state.change.logger=WARN\n"
        "log4j.logger.org.apache.zookeeper=WARN\n"
    )


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output (``1.8.0_x`` -> 8, ``17.0.15`` -> 17)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if m is None:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2) is not None:
        return int(m.group(2))
    return major


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, URL-safe base64 without padding (Kafka's format)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):  # Kafka's own generator avoids these too (CLI-unfriendly)
            return cid


def metadata_request(correlation_id: int, client_id: str = "healer-probe") -> bytes:
    """A framed Metadata v1 request for all topics (null topic array)."""
    cid = client_id.encode()
    body = struct.pack(">hhih", 3, 1, correlation_id, len(cid)) + cid + struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


def parse_metadata_brokers(payload: bytes, correlation_id: int) -> list[tuple[int, str, int]]:
    """Brokers (node id, host, port) from a Metadata v1 response payload (without its size)."""
    (cid, count) = struct.unpack_from(">ii", payload, 0)
    if cid != correlation_id:
        raise ValueError(f"correlation id {cid} != {correlation_id}")
    pos = 8
    brokers: list[tuple[int, str, int]] = []
    for _ in range(count):
        (node_id, host_len) = struct.unpack_from(">ih", payload, pos)
        pos += 6
        host = payload[pos : pos + host_len].decode()
        pos += host_len
        (port, rack_len) = struct.unpack_from(">ih", payload, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((node_id, host, port))
    return brokers


# --------------------------------------------------------------------------- I/O helpers


def probe(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a Kafka broker at ``host:port`` answers a Metadata request listing a broker."""
    host, _, port_s = bootstrap.rpartition(":")
    correlation_id = int(time.monotonic_ns() & 0x7FFFFFFF)
    try:
        with socket.create_connection((host, int(port_s)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(metadata_request(correlation_id))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 0 < size < 16 * 1024 * 1024:
                return False
            brokers = parse_metadata_brokers(_recv_exact(sock, size), correlation_id)
    except (OSError, ValueError, struct.error):
        return False
    return len(brokers) > 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port
    raise BrokerError("no free loopback port found")


@dataclass(frozen=True)
class Java:
    """The ``java`` launcher in use and what ``java -version`` said about it."""

    path: str
    major: int
    version_text: str


def find_java() -> Java:
    """A Java 17+ ``java`` (JAVA_HOME first, then PATH); raises ToolMissing."""
    candidates: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    if not candidates:
        raise ToolMissing(f"java not found on PATH: {_JAVA_INSTALL_HINT}")
    java = candidates[0]
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"{java} -version failed ({exc}): {_JAVA_INSTALL_HINT}") from exc
    text = out.stderr + out.stdout
    major = parse_java_major(text)
    if major is None or major < MIN_JAVA:
        found = "unknown" if major is None else str(major)
        raise ToolMissing(
            f"java {found} at {java} is too old (need {MIN_JAVA}+): {_JAVA_INSTALL_HINT}"
        )
    return Java(path=java, major=major, version_text=text.strip())


def find_mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise ToolMissing(
            f"mvn not found on PATH (needed once to fetch Kafka jars): {_MVN_INSTALL_HINT}"
        )
    return mvn


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so parallel test sessions and CLIs do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def uptime(started_at: object, now: datetime | None = None) -> str:
    """``started_at`` (the state file's ISO time) to now as "3d04h", "2h05m", "4m10s"; "?" if unknown."""
    try:
        started = datetime.fromisoformat(str(started_at))
    except ValueError:
        return "?"
    seconds = max(int(((now or datetime.now(UTC)) - started).total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def _proc_state(pid: int) -> str | None:
    """Linux process state letter ('R', 'S', 'Z', ...) or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0]


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (else it is init's business)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _parent_death_signal() -> None:
    """In the forked child: get SIGTERM when the starting thread dies (Linux prctl).

    Used by test fixtures so a killed pytest never leaves a broker behind; the CLI
    does not use it because `healer kafka up` must outlive its own process.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


# --------------------------------------------------------------------------- the broker


class EmbeddedKafka:
    """A single-node KRaft Kafka broker in ``state_dir``, started and stopped by pid.

    ``port`` None means: the port remembered in the state file if it is free, else a
    free one. ``die_with_parent`` makes the JVM get SIGTERM when the thread that
    started it dies (fixtures; never the CLI, whose broker must outlive it).
    ``jvm_opts`` (then ``$HEALER_KAFKA_JVM_OPTS``) are appended to the JVM flags, so
    they win; e.g. ``-XX:TieredStopAtLevel=4`` restores the C2 compiler for a
    throughput benchmark of the broker itself. The data directory and ports survive ``stop``/``start`` so chaos tests
    can restart (or kill) the broker and find their data and bootstrap unchanged.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        port: int | None = None,
        partitions: int = 1,
        *,
        version: str = KAFKA_VERSION,
        heap: str = DEFAULT_HEAP,
        start_timeout: float = START_TIMEOUT_S,
        progress: Callable[[str], None] | None = None,
        die_with_parent: bool = False,
        jvm_opts: Sequence[str] = (),
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self.requested_port = port
        self.partitions = partitions
        self.version = version
        self.heap = heap
        self.start_timeout = start_timeout
        self._progress = progress
        self.die_with_parent = die_with_parent
        self.jvm_opts = [*jvm_opts, *shlex.split(os.environ.get(JVM_OPTS_ENV, ""))]
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- paths

    @property
    def version_dir(self) -> Path:
        return cache_root() / self.version

    @property
    def libs_dir(self) -> Path:
        return self.version_dir / "libs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_FILE

    @property
    def out_file(self) -> Path:
        return self.state_dir / OUT_FILE

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the running (or last) broker; BrokerError if never started."""
        port = self._read_state().get("port")
        if not isinstance(port, int):
            raise BrokerError(f"no broker has been started in {self.state_dir}")
        return f"{HOST}:{port}"

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    # ---- jars

    def jars_ready(self) -> bool:
        return (self.libs_dir / JARS_MARKER).is_file()

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars with mvn into the cache unless already complete."""
        if self.jars_ready():
            return self.libs_dir
        with _locked(self.version_dir / ".lock"):
            if self.jars_ready():  # another process finished it while we waited
                return self.libs_dir
            mvn = find_mvn()
            pom = self.version_dir / "pom.xml"
            pom.write_text(render_pom(self.version))
            if self.libs_dir.exists():
                shutil.rmtree(self.libs_dir)
            self._say(f"fetching Apache Kafka {self.version} jars from Maven Central (once)")
            t0 = time.monotonic()
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={self.libs_dir}",
                "-DincludeScope=runtime",
            ]
            try:
                res = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(f"mvn timed out after {MVN_TIMEOUT_S:.0f}s: {cmd}") from exc
            if res.returncode != 0:
                tail = "\n".join((res.stdout + res.stderr).splitlines()[-20:])
                raise BrokerError(
                    f"mvn failed to fetch Kafka {self.version} jars (exit {res.returncode}); "
                    f"check access to Maven Central:\n{tail}"
                )
            required = [
                f"kafka_{SCALA_VERSION}-{self.version}.jar",
                f"kafka-clients-{self.version}.jar",
                f"reload4j-{RELOAD4J_VERSION}.jar",
            ]
            missing = [j for j in required if not (self.libs_dir / j).is_file()]
            if missing:
                raise BrokerError(f"mvn finished but {missing} are missing in {self.libs_dir}")
            (self.libs_dir / JARS_MARKER).write_text(
                "\n".join(sorted(p.name for p in self.libs_dir.glob("*.jar"))) + "\n"
            )
            self._say(f"fetched Kafka jars in {time.monotonic() - t0:.1f}s")
        return self.libs_dir

    # ---- state

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def _is_our_broker(self, pid: int) -> bool:
        """The pid is alive and is a kafka.Kafka JVM using this state dir's properties."""
        if not _alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"kafka.Kafka" in cmdline and str(self.properties_file).encode() in cmdline

    def _live_pid(self, state: dict[str, Any]) -> int | None:
        pid = state.get("pid")
        if isinstance(pid, int) and self._is_our_broker(pid):
            return pid
        return None

    def status(self) -> dict[str, Any]:
        """The state file plus ``running`` (our JVM is alive) and ``answers`` (Metadata ok)."""
        state = self._read_state()
        pid = self._live_pid(state)
        answers = pid is not None and probe(f"{HOST}:{state.get('port')}")
        return {
            **state,
            "state_dir": str(self.state_dir),
            "log_file": str(self.log_file),
            "running": pid is not None,
            "answers": answers,
        }

    # ---- lifecycle

    def start(self) -> str:
        """Start the broker (or find it running) and return its bootstrap address."""
        with _locked(self.state_dir / ".lock"):
            return self._start_locked()

    def _start_locked(self) -> str:
        state = self._read_state()
        pid = self._live_pid(state)
        if pid is not None:
            port = int(state["port"])
            if self.requested_port is not None and self.requested_port != port:
                raise BrokerError(
                    f"a broker from {self.state_dir} already runs on port {port} (pid {pid}); "
                    f"stop it first (`healer kafka down`) to move it to {self.requested_port}"
                )
            if state.get("partitions") not in (None, self.partitions):
                self._say(
                    f"already running with num.partitions={state['partitions']}; "
                    f"restart it (down, up) to use {self.partitions}"
                )
            bootstrap = f"{HOST}:{port}"
            self._wait_ready(pid, bootstrap, time.monotonic() + self.start_timeout)
            # not started by this call: say whose it is, so that nobody mistakes it for a fresh
            # one, or stops a broker another terminal (or project) still uses
            self._say(
                f"reusing the broker already running from {self.state_dir} (pid {pid}, "
                f"up {uptime(state.get('started_at'))}); it was not started now. "
                f"`healer kafka down --state-dir {self.state_dir}` stops it"
            )
            return bootstrap

        java = find_java()
        libs = self.ensure_jars()
        t0 = time.monotonic()
        port, cport = self._choose_ports(state)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = BrokerConfig(
            port=port, controller_port=cport, data_dir=self.data_dir, partitions=self.partitions
        )
        self.properties_file.write_text(render_server_properties(cfg))
        log4j = self.state_dir / "log4j.properties"
        log4j.write_text(render_log4j(self.log_file))
        jvm = self._jvm_command(java, libs, log4j)
        if not (self.data_dir / "meta.properties").is_file():
            self._format(jvm)

        bootstrap = f"{HOST}:{port}"
        archive = self._cds_archive(java)
        for attempt in (1, 2):
            cds_dump = None if archive.is_file() else self._cds_dump_path(archive)
            cds_flag = (
                f"-XX:SharedArchiveFile={archive}"
                if cds_dump is None
                else f"-XX:ArchiveClassesAtExit={cds_dump}"
            )
            pid = self._launch([*jvm[:1], cds_flag, *jvm[1:], "kafka.Kafka"])
            self._write_state(
                {
                    "pid": pid,
                    "port": port,
                    "controller_port": cport,
                    "bootstrap": bootstrap,
                    "log_dir": str(self.data_dir),
                    "version": self.version,
                    "partitions": self.partitions,
                    "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "cds_archive": str(archive),
                    "cds_dump": None if cds_dump is None else str(cds_dump),
                }
            )
            try:
                self._wait_ready(pid, bootstrap, time.monotonic() + self.start_timeout)
                break
            except BrokerError:
                died = not _alive(pid)
                self._terminate(pid, kill=True)
                self._forget_pid()
                if not (attempt == 1 and died and cds_dump is None):
                    raise
                # A JVM that dies at once with a class-data archive may have hit a bad
                # archive (it crashes rather than ignoring one); retry once without it.
                archive.unlink(missing_ok=True)
                self._say("broker exited at startup; retrying without the class-data archive")
        self._say(
            f"Apache Kafka {self.version} ready on {bootstrap} in {time.monotonic() - t0:.1f}s"
        )
        return bootstrap

    def _jvm_command(self, java: Java, libs: Path, log4j: Path) -> list[str]:
        return [
            java.path,
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            # C1 only: on 2 cores C2 compilations compete with startup and halve its speed;
            # healer's Python clients, not the broker, bound throughput.
            "-XX:TieredStopAtLevel=1",
            f"-XX:ErrorFile={self.state_dir}/hs_err_pid%p.log",
            "-Xlog:cds=off,cds+dynamic=off",  # archive dumps list every skipped class
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.state_dir}",
            *self.jvm_opts,
            "-cp",
            f"{libs}/*",
        ]

    def _launch(self, cmd: list[str]) -> int:
        with self.out_file.open("ab") as out:
            self._proc = subprocess.Popen(
                [*cmd, str(self.properties_file)],
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal if self.die_with_parent else None,
            )
        return self._proc.pid

    # ---- class-data sharing (CDS): the first clean run records the classes it loaded,
    # later starts map them (about half the start time on 2 cores).

    def _cds_archive(self, java: Java) -> Path:
        marker = self.libs_dir / JARS_MARKER
        key = "\n".join(
            [os.path.realpath(java.path), java.version_text, str(marker.stat().st_mtime_ns)]
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.version_dir / "cds" / f"kafka-{digest}.jsa"

    def _cds_dump_path(self, archive: Path) -> Path:
        archive.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for stale in archive.parent.glob("*.tmp"):
            # dumps are written when a JVM exits; one nobody adopted is garbage
            with contextlib.suppress(OSError):
                if now - stale.stat().st_mtime > CDS_STALE_S:
                    stale.unlink()
        return archive.with_name(f"{archive.stem}.{uuid.uuid4().hex[:8]}.tmp")

    def _adopt_cds_dump(self, state: dict[str, Any], clean_exit: bool) -> None:
        dump, archive = state.get("cds_dump"), state.get("cds_archive")
        if not isinstance(dump, str) or not isinstance(archive, str):
            return
        path = Path(dump)
        if clean_exit and path.is_file() and self._cds_usable(path):
            path.replace(archive)
        else:
            path.unlink(missing_ok=True)

    def _cds_usable(self, path: Path) -> bool:
        """A truncated archive crashes the JVM, so try mapping it once before adopting it."""
        try:
            java = find_java()
            res = subprocess.run(
                [
                    java.path,
                    "-Xshare:on",
                    f"-XX:SharedArchiveFile={path}",
                    f"-XX:ErrorFile={self.state_dir}/hs_err_cds_pid%p.log",
                    "-cp",
                    f"{self.libs_dir}/*",
                    "-version",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (ToolMissing, OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0

    def _choose_ports(self, state: dict[str, Any]) -> tuple[int, int]:
        if self.requested_port is not None:
            if not port_is_free(self.requested_port):
                raise BrokerError(f"port {self.requested_port} on {HOST} is already in use")
            port = self.requested_port
        else:
            remembered = state.get("port")
            if isinstance(remembered, int) and port_is_free(remembered):
                port = remembered
            else:
                port = free_port()
        remembered_c = state.get("controller_port")
        if isinstance(remembered_c, int) and remembered_c != port and port_is_free(remembered_c):
            cport = remembered_c
        else:
            cport = free_port(exclude=frozenset({port}))
        return port, cport

    def _format(self, jvm: list[str]) -> None:
        cmd = [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.properties_file),
        ]
        try:
            res = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=STORAGE_TIMEOUT_S,
                check=False,
                cwd=self.state_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"formatting {self.data_dir} timed out") from exc
        if res.returncode != 0:
            raise BrokerError(
                f"kafka.tools.StorageTool format failed (exit {res.returncode}):\n"
                f"{(res.stdout + res.stderr).strip()[-2000:]}"
            )

    def _wait_ready(self, pid: int, bootstrap: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise BrokerError(
                    f"kafka broker (pid {pid}) exited during startup; {self._log_tails()}"
                )
            if probe(bootstrap, timeout=1.0):
                return
            time.sleep(0.25)
        raise BrokerError(
            f"kafka broker (pid {pid}) did not answer on {bootstrap} within "
            f"{self.start_timeout:.0f}s; {self._log_tails()}"
        )

    def _log_tails(self) -> str:
        parts = [f"log: {self.log_file}"]
        for path in (self.out_file, self.log_file):
            tail = _tail(path)
            if tail:
                parts.append(f"--- tail of {path.name} ---\n{tail}")
        return "\n".join(parts)

    def stop(self, kill: bool = False, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker: SIGTERM (controlled shutdown), SIGKILL after ``timeout``.

        ``kill=True`` sends SIGKILL at once (a crash, for chaos tests). Data and
        ports stay for the next ``start``. Returns whether a broker was running.
        """
        with _locked(self.state_dir / ".lock"):
            state = self._read_state()
            pid = self._live_pid(state)
            clean_exit = False
            if pid is not None:
                clean_exit = self._terminate(pid, kill=kill, timeout=timeout)
            self._adopt_cds_dump(state, clean_exit)
            if state.get("pid") is not None or state.get("cds_dump") is not None:
                self._forget_pid()
            return pid is not None

    def _terminate(self, pid: int, kill: bool, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Signal the broker's group and wait; True when it exited on SIGTERM alone."""
        # The broker leads its own session (start_new_session), so its pid is the group id;
        # signalling the group also takes any helper process the JVM may have spawned.
        sig = signal.SIGKILL if kill else signal.SIGTERM
        self._signal_group(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._group_alive(pid):
            time.sleep(0.1)
        clean_exit = not kill and not self._group_alive(pid)
        if self._group_alive(pid):
            self._signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and self._group_alive(pid):
                time.sleep(0.05)
        if self._proc is not None and self._proc.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)
            self._proc = None
        if self._group_alive(pid):
            raise BrokerError(f"kafka broker process group {pid} survived SIGKILL")
        return clean_exit

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise BrokerError(f"not allowed to signal kafka broker group {pgid}: {exc}") from exc

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        """Any non-zombie process left in the group (the JVM leads it)."""
        if _alive(pgid):
            return True
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split(" ")
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False

    def _forget_pid(self) -> None:
        state = self._read_state()
        state["pid"] = None
        state["cds_dump"] = None
        state["stopped_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_state(state)

    # ---- context manager

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
