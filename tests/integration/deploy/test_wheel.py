"""The container image's install recipe, without a Docker engine: run deploy/Dockerfile's build
stage RUN commands (from a copy of the files it COPYs), then its runtime stage's install RUN into a
clean virtualenv, check that this virtualenv holds exactly requirements/runtime.txt (and
``pip check`` is clean), and run the installed ``healer`` from outside the repository. Also runs
the Dockerfile's HEALTHCHECK command against a real worker.

Needs PyPI (dependency wheels; pip's cache makes reruns fast) and, for the health check, Kafka.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import ROOT
from tests.lockfile import (
    LOCK_RUNTIME,
    applicable,
    differences,
    installed_versions,
    marker_environment,
    pip_check,
    read_lock,
)
from tests.workers import WorkerFactory, free_port

pytestmark = pytest.mark.integration

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PIP_TIMEOUT_S = 900


def _copied_sources(dst: Path) -> list[str]:
    """Copy what the Dockerfile's build stage COPYs; return those paths."""
    copied = re.findall(r"^COPY (?!--)(.+) \S+$", _stage(DOCKERFILE.read_text(), "build"), re.M)
    paths = [p for line in copied for p in line.split()]
    for p in paths:
        src = ROOT / p.rstrip("/")
        if src.is_dir():
            shutil.copytree(src, dst / p.rstrip("/"), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dst / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / p)
    return paths


def _stage(text: str, name: str) -> str:
    m = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert m, f"no stage {name} in the Dockerfile"
    return m.group(1)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HEALER_", "PIP_"))}
    env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra})
    return env


def _runs(stage: str) -> list[str]:
    """The stage's RUN commands as shell text (continuations joined, --mount flags dropped)."""
    text = re.sub(r"\\\n", " ", stage)
    runs = re.findall(r"^RUN (.+)$", text, re.M)
    return [re.sub(r"--mount=\S+\s*", "", r).strip() for r in runs]


def _localised(command: str, wheels: Path, env_dir: Path) -> str:
    """A Dockerfile command for this machine: our interpreter, temp dirs for /wheels and the venv."""
    command = command.replace("/opt/healer", str(env_dir)).replace("/wheels", str(wheels))
    return re.sub(r"(?<![\w/.-])python(?= )", sys.executable, command)


def _shell(command: str, cwd: Path) -> None:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with healer installed from wheels, the Dockerfile's way; returns its bin dir."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, wheels, env_dir = tmp / "src", tmp / "wheels", tmp / "venv"
    src.mkdir()
    copied = _copied_sources(src)
    assert {"pyproject.toml", "requirements/runtime.txt", "healer/", "actions/", "streams/"} <= set(copied)
    text = DOCKERFILE.read_text()
    build = _runs(_stage(text, "build"))
    assert any("--require-hashes -r requirements/runtime.txt" in r for r in build), build
    for command in build:
        _shell(_localised(command, wheels, env_dir), src)
    install = [r for r in _runs(_stage(text, "runtime")) if "/wheels" in r]
    assert len(install) == 1 and "pip check" in install[0], install
    _shell(_localised(install[0], wheels, env_dir), tmp)
    return env_dir / "bin"


def test_installed_versions_are_the_runtime_lock(installed: Path) -> None:
    python = installed / "python"
    have = installed_versions(python)
    diffs = differences(applicable(read_lock(LOCK_RUNTIME), marker_environment(python)), have)
    assert not diffs, "the image recipe did not install requirements/runtime.txt:\n" + "\n".join(diffs)
    assert "healer" in have and "pytest" not in have
    check = pip_check(python)
    assert check.returncode == 0, check.stdout + check.stderr


def _run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)


def test_wheel_contents(installed: Path) -> None:
    wheel = next((installed.parents[1] / "wheels").glob("healer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("healer-")}
    assert tops == {"healer", "actions", "streams"}, tops
    assert "healer/py.typed" in names
    assert not any(n.startswith(("tests/", "deploy/", "bench/")) for n in names)


def test_installed_cli_runs_outside_the_repo(installed: Path, tmp_path: Path) -> None:
    helped = _run(installed, "healer", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "policy", "emit", "audit", "approvals", "kafka"):
        assert command in helped.stdout
    version = _run(installed, "healer", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip().startswith("healer ")
    where = _run(installed, "python", "-c",
                 "import healer, actions, streams; print(healer.__file__, streams.__file__)",
                 cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert str(ROOT) not in where.stdout and str(installed.parent) in where.stdout


def test_installed_cli_validates_the_policy_library(installed: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    ok = _run(installed, "healer", "policy", "validate", "policies/", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "policies" / "broken.yaml"
    bad.write_text("apiVersion: healer/v1\nkind: Policy\nmetadata: {name: x}\nspec: {bogus: 1}\n")
    failed = _run(installed, "healer", "policy", "validate", "policies/", cwd=tmp_path)
    assert failed.returncode == 1 and "broken.yaml" in (failed.stdout + failed.stderr)


def _healthcheck_argv() -> list[str]:
    m = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", DOCKERFILE.read_text(), re.M | re.S)
    assert m, "no HEALTHCHECK CMD in the Dockerfile"
    argv = json.loads(m.group(1).replace("\\\n", ""))
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_dockerfile_healthcheck_command(healer_worker: WorkerFactory, unique_app_id: str) -> None:
    """HEALTHCHECK exits 0 against a healthy worker and non-zero when nothing answers."""
    argv = _healthcheck_argv()
    closed = subprocess.run(argv, env=_clean_env(HEALER_HTTP_PORT=str(free_port())),
                            capture_output=True, timeout=30, check=False)
    assert closed.returncode != 0
    worker = healer_worker.start(ROOT / "deploy" / "demo" / "policies", unique_app_id)
    import time

    deadline = time.monotonic() + 60
    while True:  # /healthz turns 200 once the worker's first broker check passed
        ok = subprocess.run(argv, env=_clean_env(HEALER_HTTP_PORT=str(worker.http_port)),
                            capture_output=True, timeout=30, check=False)
        if ok.returncode == 0:
            break
        assert time.monotonic() < deadline, ok.stderr
        time.sleep(1)
