"""Apache Kafka's own command-line tools (kafka-tools 3.9.1) for the benchmarks.

``org.apache.kafka.tools.ConsumerPerformance`` (what ``kafka-consumer-perf-test.sh``
runs) lives in the ``kafka-tools`` artifact, which drags in Kafka Connect, Jersey
and Jetty. So it gets its own classpath, fetched once with ``mvn`` into
``~/.cache/healer/kafka/<version>/tools/libs`` (same cache root and same Kafka
version as the embedded broker in streams/broker.py), and the broker's own
classpath stays as it is. Used by ``bench/bench_throughput.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streams.broker import (
    DEPENDENCY_PLUGIN,
    KAFKA_VERSION,
    _locked,
    cache_root,
    find_java,
    find_mvn,
)

MARKER = ".complete"


def tools_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / version / "tools"


def render_tools_pom(version: str = KAFKA_VERSION) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>dev.healer</groupId><artifactId>kafka-tools-jars</artifactId>\n"
        f"  <version>{version}</version><packaging>pom</packaging>\n"
        "  <dependencies>\n"
        "    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>"
        f"<version>{version}</version></dependency>\n"
        "    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-nop</artifactId>"
        "<version>1.7.36</version></dependency>\n"
        "  </dependencies>\n"
        "</project>\n"
    )


def ensure_tools(version: str = KAFKA_VERSION, timeout: float = 900.0) -> tuple[Path, float]:
    """The tools' lib dir (fetching it once) and how long the fetch took (0 when cached)."""
    d = tools_dir(version)
    libs = d / "libs"
    if (libs / MARKER).is_file():
        return libs, 0.0
    with _locked(d / ".lock"):
        if (libs / MARKER).is_file():
            return libs, 0.0
        mvn = find_mvn()
        pom = d / "pom.xml"
        pom.write_text(render_tools_pom(version))
        if libs.exists():
            shutil.rmtree(libs)
        t0 = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
               f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0 or not (libs / f"kafka-tools-{version}.jar").is_file():
            raise RuntimeError(f"mvn could not fetch kafka-tools {version}:\n"
                               + "\n".join((res.stdout + res.stderr).splitlines()[-20:]))
        (libs / MARKER).write_text("\n".join(sorted(p.name for p in libs.glob("*.jar"))) + "\n")
        return libs, time.monotonic() - t0


@dataclass(frozen=True)
class PerfResult:
    messages: int
    fetch_seconds: float
    total_seconds: float
    mb: float

    @property
    def rate(self) -> float:
        return self.messages / self.fetch_seconds if self.fetch_seconds else 0.0


def consumer_performance(bootstrap: str, topic: str, messages: int, group: str,
                         timeout: float = 300.0) -> PerfResult:
    """Run ConsumerPerformance once on ``topic`` from the beginning (its own group)."""
    libs, _ = ensure_tools()
    java = find_java()
    cmd = [java.path, "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ConsumerPerformance",
           "--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(messages),
           "--group", group, "--timeout", str(int(timeout * 1000))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ConsumerPerformance failed ({res.returncode}):\n{res.stderr[-3000:]}")
    # header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    #         rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    lines = [ln for ln in res.stdout.splitlines() if re.match(r"^\d{4}-", ln.strip())]
    if not lines:
        raise RuntimeError(f"unexpected ConsumerPerformance output:\n{res.stdout[-2000:]}")
    f = [x.strip() for x in lines[-1].split(",")]
    mb, n = float(f[2]), int(f[4])
    total_s = n / float(f[5]) if float(f[5]) else 0.0
    fetch_ms = float(f[7])
    return PerfResult(messages=n, fetch_seconds=fetch_ms / 1000.0, total_seconds=total_s, mb=mb)
