"""Real Prometheus and Alertmanager for integration tests: Debian's packages, never a service.

:func:`ensure` unpacks a package with ``tests.harness.debian.debian_binary`` (``apt-get download``
+ ``dpkg -x`` into ``~/.cache/healer/debian/<package>/``, ``apt-get update`` first when needed;
nothing is installed system-wide, no maintainer script runs, no service starts) and checks that
it is the series the tests pin: ``prometheus`` 2.42 (``prometheus``, ``promtool``) and
``prometheus-alertmanager`` 0.25 (``prometheus-alertmanager``, ``amtool``), Debian 12's.

:class:`Prometheus` and :class:`Alertmanager` run one process each on a free loopback port with a
config the test writes (Alertmanager with clustering off), wait for ``/-/ready`` and stop what they
started (Alertmanager from a copy of the binary that finds Debian's templates, see
``AM_ASSETS``). :func:`rule_groups` turns a PrometheusRule (deploy/examples/prometheusrule.yaml) into a
rules file. Used by tests/integration/prometheus/; ``python -m tests.harness.prometheus`` unpacks
both packages and prints where (the Makefile's ``prometheus`` target).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.debian import DebianPackageUnavailable, debian_binary
from tests.workers import free_port

# Debian patches Alertmanager to read its notification templates (default.tmpl) from this
# absolute path instead of from the binary, with no flag to change it. The harness keeps a copy
# of the binary in which that string reads "./" * 17 (same length, so nothing else moves), which
# resolves to the process's working directory, and links the package's templates there.
AM_ASSETS = b"/usr/share/prometheus/alertmanager"
AM_ASSETS_RELATIVE = b"./" * (len(AM_ASSETS) // 2)
AM_RELOCATED = "healer/prometheus-alertmanager"  # under the package root

# package -> (the version series we test with, its binaries)
PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "prometheus": ("2.42", ("prometheus", "promtool")),
    "prometheus-alertmanager": ("0.25", ("prometheus-alertmanager", "amtool")),
}


class PrometheusUnavailable(RuntimeError):
    """The binaries cannot be had here (no apt, no package, another version); the message says why."""


def _run(cmd: list[str], timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


@functools.cache
def ensure(package: str) -> Path:
    """The unpacked package root (``<root>/usr/bin/...``), unpacking it on first use."""
    if package not in PACKAGES:
        raise ValueError(f"unknown package {package!r}; known: {', '.join(PACKAGES)}")
    series, binaries = PACKAGES[package]
    try:
        paths = [debian_binary(package, b) for b in binaries]
    except DebianPackageUnavailable as exc:
        raise PrometheusUnavailable(f"{package}: {exc}") from exc
    out = _run([str(paths[0]), "--version"], timeout=30)
    if f"version {series}." not in out.stdout + out.stderr:
        raise PrometheusUnavailable(
            f"{paths[0]} is not {package} {series}.x ({(out.stdout + out.stderr).strip()[:120]!r}): "
            f"these tests pin Debian 12's {series}; remove {paths[0].parents[2]} on another release")
    return paths[0].parents[2]


def relocated_alertmanager() -> tuple[Path, Path]:
    """(the Alertmanager binary that reads its templates from its working directory, the
    directory of the package's templates), made once from Debian's binary."""
    root = ensure("prometheus-alertmanager")
    out = root / AM_RELOCATED
    assets = root / "usr" / "share" / "prometheus" / "alertmanager"
    if not out.is_file():
        with open(root.parent / "prometheus-alertmanager.relocate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not out.is_file():
                raw = (root / "usr" / "bin" / "prometheus-alertmanager").read_bytes()
                if AM_ASSETS not in raw:
                    raise PrometheusUnavailable(f"{root}: the binary does not name {AM_ASSETS.decode()}; "
                                                "the relocation in tests/harness/prometheus.py needs updating")
                out.parent.mkdir(exist_ok=True)
                tmp = out.with_suffix(".tmp")
                tmp.write_bytes(raw.replace(AM_ASSETS, AM_ASSETS_RELATIVE))
                tmp.chmod(0o755)
                tmp.rename(out)
    return out, assets


def binary(name: str) -> Path:
    """A binary of one of the packages (``prometheus``, ``promtool``, ``prometheus-alertmanager``,
    ``amtool``), installed when missing."""
    for package, (_, binaries) in PACKAGES.items():
        if name in binaries:
            return ensure(package) / "usr" / "bin" / name
    raise ValueError(f"no package ships {name!r}")


def tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``promtool`` or ``amtool``."""
    return _run([str(binary(name)), *args], timeout=timeout)


def rule_groups(prometheus_rule: Path) -> dict[str, Any]:
    """The rules file inside a PrometheusRule custom resource (its ``spec.groups``)."""
    doc = yaml.safe_load(prometheus_rule.read_text())
    if doc.get("kind") != "PrometheusRule":
        raise ValueError(f"{prometheus_rule}: kind is {doc.get('kind')!r}, not PrometheusRule")
    return {"groups": doc["spec"]["groups"]}


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    """One process on 127.0.0.1:``port``, logging to ``log_path``."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, argv: list[str], timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusUnavailable(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise PrometheusUnavailable(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def get(self, path: str, **query: str) -> Any:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Prometheus(Server):
    def __init__(self, workdir: Path) -> None:
        super().__init__("prometheus", workdir)

    def start(self, config: dict[str, Any], rules: dict[str, Any] | None = None, timeout: float = 60) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if rules is not None:
            (self.workdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
            config = {**config, "rule_files": [str(self.workdir / "rules.yml")]}
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._start([
            str(binary("prometheus")),
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.console.templates={self.workdir}", f"--web.console.libraries={self.workdir}",
            "--storage.tsdb.retention.time=1h",
            "--storage.remote.flush-deadline=1s",  # stopping never waits long on a refusing receiver
        ], timeout)
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        out = self.get("/api/v1/query", query=expr)
        return list(out["data"]["result"])

    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]

    def own_metric(self, name: str) -> float:
        """The sum of a metric in Prometheus' own /metrics (e.g. its remote-write counters)."""
        total = 0.0
        for line in str(self.get("/metrics")).splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Alertmanager(Server):
    def __init__(self, workdir: Path) -> None:
        super().__init__("alertmanager", workdir)

    def start(self, config: dict[str, Any], timeout: float = 60) -> Alertmanager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        exe, assets = relocated_alertmanager()
        for tmpl in assets.glob("*.tmpl"):
            link = self.workdir / tmpl.name
            if not link.exists():
                link.symlink_to(tmpl)
        self._start([
            str(exe),
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: one instance, nothing listens beyond loopback
        ], timeout)
        return self


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    for pkg in PACKAGES:
        print(f"{pkg}: {ensure(pkg)}")
