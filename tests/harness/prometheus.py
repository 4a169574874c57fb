"""Real Prometheus and Alertmanager for integration tests: Debian's packages, never a service.

:func:`ensure` installs a package's binaries into ``~/.cache/healer/prometheus/<package>_<version>/``
when they are missing: ``apt-get download`` of the version Debian has in the wanted series
(``apt-get update`` first when apt's lists do not know it), then ``dpkg -x``. Nothing is installed
system-wide, no maintainer script runs and no service starts. Series: ``prometheus`` 2.42
(``prometheus``, ``promtool``) and ``prometheus-alertmanager`` 0.25 (``prometheus-alertmanager``,
``amtool``), the versions of Debian 12.

:class:`Prometheus` and :class:`Alertmanager` run one process each on a free loopback port with a
config the test writes (Alertmanager with clustering off), wait for ``/-/ready`` and stop what they
started (Alertmanager from a copy of the binary that finds Debian's templates, see
``AM_ASSETS``). :func:`rule_groups` turns a PrometheusRule (deploy/examples/prometheusrule.yaml) into a
rules file. Used by tests/integration/prometheus/; ``python -m tests.harness.prometheus`` installs
both packages and prints where (the Makefile's ``prometheus`` target).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    """The binaries cannot be had here (no apt, no package, no network); the message says why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "healer" / "prometheus"


def _cached(package: str) -> Path | None:
    series, binaries = PACKAGES[package]
    for d in sorted(cache_root().glob(f"{package}_{series}*")):
        if all((d / "usr" / "bin" / b).is_file() for b in binaries):
            return d
    return None


def _run(cmd: list[str], timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def _candidate(package: str) -> str | None:
    """The version of ``package`` in its series that apt's lists offer, newest first."""
    series, _ = PACKAGES[package]
    out = _run(["apt-cache", "madison", package])
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[1].startswith(series):
            return parts[1]
    return None


def ensure(package: str) -> Path:
    """The extracted package root (``<root>/usr/bin/...``), installing it once under a lock."""
    if package not in PACKAGES:
        raise ValueError(f"unknown package {package!r}; known: {', '.join(PACKAGES)}")
    found = _cached(package)
    if found is not None:
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise PrometheusUnavailable(
            f"{package} is not in {cache_root()} and this machine has no apt-get/dpkg to fetch "
            f"Debian's package; install {package} {PACKAGES[package][0]}.x and extract it there")
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing it right now
        found = _cached(package)
        if found is not None:
            return found
        return _install(package)


def _install(package: str) -> Path:
    series, _ = PACKAGES[package]
    version = _candidate(package)
    if version is None:
        if os.geteuid() != 0:
            raise PrometheusUnavailable(
                f"apt does not know {package} {series}.x; run `sudo apt-get update` and retry")
        upd = _run(["apt-get", "update"], timeout=600)
        if upd.returncode != 0:
            raise PrometheusUnavailable(f"apt-get update failed:\n{upd.stderr[-2000:]}")
        version = _candidate(package)
        if version is None:
            raise PrometheusUnavailable(
                f"Debian's archive has no {package} {series}.x for this release "
                f"(apt-cache madison {package}); these tests need it")
    with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
        # root downloads through apt's sandbox user, which cannot write to a private temp dir
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        dl = _run(["apt-get", "download", *sandbox, f"{package}={version}"], cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if dl.returncode != 0 or len(debs) != 1:
            raise PrometheusUnavailable(f"apt-get download {package}={version} failed:\n{dl.stderr[-2000:]}")
        root = Path(tmp) / "root"
        x = _run(["dpkg", "-x", str(debs[0]), str(root)])
        if x.returncode != 0:
            raise PrometheusUnavailable(f"dpkg -x {debs[0].name} failed:\n{x.stderr[-2000:]}")
        dest = cache_root() / f"{package}_{version.replace(':', '_')}"
        shutil.rmtree(dest, ignore_errors=True)
        root.rename(dest)
    found = _cached(package)
    if found is None:
        raise PrometheusUnavailable(f"{package} {version} has no {PACKAGES[package][1]} under usr/bin")
    return found


def relocated_alertmanager() -> tuple[Path, Path]:
    """(the Alertmanager binary that reads its templates from its working directory, the
    directory of the package's templates), made once from Debian's binary."""
    root = ensure("prometheus-alertmanager")
    out = root / AM_RELOCATED
    assets = root / "usr" / "share" / "prometheus" / "alertmanager"
    if not out.is_file():
        with open(cache_root() / ".lock", "w") as lock:
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
