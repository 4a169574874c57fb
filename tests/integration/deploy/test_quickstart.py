"""docs/quickstart.md works as written: its marked shell blocks run, in order, for real.

A block preceded by ``<!-- test -->`` runs in bash and must exit 0; ``<!-- test: background -->``
starts it in the background (the reader's second terminal) and waits for the worker's /readyz;
``<!-- test: until "TEXT" -->`` reruns it until its output contains TEXT (the reader's "after a
few seconds"). Exported variables carry over between blocks, like one terminal session.

Isolation without changing the commands: the blocks run in a temp copy of the checkout made of
symlinks to its top-level entries, so the quickstart's project-local ``--state-dir .healer/kafka``
is a fresh one (a reader's own quickstart broker in the real checkout is never reused or
stopped); XDG_CACHE_HOME points at a temp dir (the cached Kafka jars are linked in), the worker's
HTTP port and data dir come from HEALER_* variables, and the ``healer`` on PATH is this
interpreter's. Everything started is stopped at the end (worker process group, then ``healer
kafka down``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.broker import KAFKA_VERSION, cache_root
from tests.integration.deploy.conftest import ROOT
from tests.workers import free_port

pytestmark = pytest.mark.integration

QUICKSTART = ROOT / "docs" / "quickstart.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- test(?::\s*(?P<mode>background|until\s+\"(?P<text>[^\"]+)\"))?\s*-->\s*\n"
                   r"```sh\n(?P<body>.*?)```", re.S)
UNTIL_TIMEOUT_S = 120
BLOCK_TIMEOUT_S = 300
STATE_DIR = ".healer/kafka"  # the quickstart's project-local broker state


@dataclass(frozen=True)
class Block:
    mode: str  # run | background | until
    body: str
    until: str | None = None


def marked_blocks(text: str) -> list[Block]:
    out = []
    for m in BLOCK.finditer(text):
        mode = m.group("mode") or "run"
        out.append(Block("until" if mode.startswith("until") else mode, m.group("body"), m.group("text")))
    return out


def test_marked_blocks_are_found() -> None:
    blocks = marked_blocks(QUICKSTART.read_text())
    assert [b.mode for b in blocks].count("background") == 1
    assert len(blocks) >= 6
    assert "healer kafka up" in blocks[0].body and "healer kafka down" in blocks[-1].body
    # every sh block after "A local walk-through" except the install step is tested
    walk = QUICKSTART.read_text().split("## A local walk-through", 1)[1]
    fences = re.findall(r"```sh\n(.*?)```", walk, re.S)
    assert len(fences) == len(blocks) + 1, "an untested command block crept into the walk-through"
    # up, status and down name the project's own broker, so `down` never stops someone else's
    kafka = re.findall(r"healer kafka (up|status|down)([^\n|)]*)", "".join(b.body for b in blocks))
    assert {verb for verb, _ in kafka} == {"up", "status", "down"}
    assert all(f"--state-dir {STATE_DIR}" in rest for _, rest in kafka), kafka


def test_readme_commands_are_in_the_quickstart() -> None:
    readme = README.read_text()
    section = readme.split("## Two commands", 1)[1]
    commands = re.findall(r"^(make \w+)", re.search(r"```sh\n(.*?)```", section, re.S).group(1), re.M)  # type: ignore[union-attr]
    quick = re.search(r"## The two commands\n.*?```sh\n(.*?)```", QUICKSTART.read_text(), re.S)
    assert quick and commands
    assert re.findall(r"^(make \w+)", quick.group(1), re.M) == commands


class Session:
    """One reader's shell session: blocks share exported variables through a state file."""

    def __init__(self, tmp: Path, env: dict[str, str], cwd: Path) -> None:
        self.tmp = tmp
        self.env = env
        self.cwd = cwd
        self.state = tmp / "session.env"
        self.state.write_text("")
        self.background: list[subprocess.Popen[bytes]] = []

    def _script(self, body: str) -> str:
        return (f"set -euo pipefail\nsource {shlex.quote(str(self.state))}\ncd {shlex.quote(str(self.cwd))}\n"
                f"{body}\nexport -p > {shlex.quote(str(self.state))}\n")

    def run(self, body: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self._script(body)], env=self.env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S, check=False)

    def start(self, body: str, log: Path) -> subprocess.Popen[bytes]:
        script = f"source {shlex.quote(str(self.state))}\ncd {shlex.quote(str(self.cwd))}\n{body}"
        with open(log, "wb") as f:
            proc = subprocess.Popen(["bash", "-c", script], env=self.env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append(proc)
        return proc

    def stop_background(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError, ValueError), \
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"the worker was not ready after {timeout}s:\n{log.read_text()[-4000:]}")


def _isolated_cache(tmp: Path) -> Path:
    """A fresh XDG_CACHE_HOME whose Kafka jar cache is the real one (no second download)."""
    cache = tmp / "xdg-cache"
    (cache / "healer" / "kafka").mkdir(parents=True)
    real = cache_root() / KAFKA_VERSION
    if real.is_dir():
        (cache / "healer" / "kafka" / KAFKA_VERSION).symlink_to(real, target_is_directory=True)
    return cache


def _project_copy(tmp: Path) -> Path:
    """The checkout as the reader has it, minus local state: symlinks to its top-level entries."""
    project = tmp / "project"
    project.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".healer", ".venv"):
            (project / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return project


def test_quickstart_walkthrough(tmp_path: Path) -> None:
    blocks = marked_blocks(QUICKSTART.read_text())
    port = free_port()
    cache = _isolated_cache(tmp_path)
    project = _project_copy(tmp_path)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEALER_", "KAFKA_BOOTSTRAP", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "XDG_CACHE_HOME": str(cache),
        "HEALER_HTTP_PORT": str(port),
        "HEALER_HTTP_HOST": "127.0.0.1",
        "HEALER_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    })
    session = Session(tmp_path, env, project)
    outputs: list[str] = []
    try:
        for i, block in enumerate(blocks):
            if block.mode == "background":
                log = tmp_path / f"block-{i}.log"
                proc = session.start(block.body, log)
                _wait_ready(port, proc, log)
                continue
            deadline = time.monotonic() + (UNTIL_TIMEOUT_S if block.mode == "until" else 0)
            while True:
                done = session.run(block.body)
                ok = done.returncode == 0 and (block.until is None or block.until in done.stdout)
                if ok or time.monotonic() >= deadline:
                    break
                time.sleep(2)
            assert ok, (f"quickstart block {i} failed ({done.returncode}):\n{block.body}\n"
                        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
            outputs.append(done.stdout)
    finally:
        session.stop_background()
        subprocess.run([sys.executable, "-m", "healer.cli.main", "kafka", "down", "--kill",
                        "--state-dir", STATE_DIR], env=env, cwd=project, capture_output=True,
                       timeout=120, check=False)
    text = "\n".join(outputs)
    # what the page tells the reader they will see
    assert re.search(r"^bootstrap: 127\.0\.0\.1:\d+$", outputs[0], re.M)
    assert "namespace_denied" in text and "invalid_target" in text
    assert "event.duplicate" in text and "decision.suppressed" in text
    assert "duplicate (alert LLMHighLatency, line 2)" in text and "resolved (alert" in text
    assert re.search(r"^ok: \d+ records", text, re.M)
    assert re.search(r"^queued m-\w+: healer.noop on Deployment/llm-prod/vllm-llama3$", text, re.M)
    assert re.search(r"action.verified .*actor=user:", text)
    status = subprocess.run([sys.executable, "-m", "healer.cli.main", "kafka", "status",
                             "--state-dir", STATE_DIR], env=env, cwd=project,
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 1, "the broker is still running after `healer kafka down`"
