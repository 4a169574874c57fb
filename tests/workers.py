"""pytest plugin: start real ``healer run`` worker processes and read topics.

``healer_worker`` is a factory: ``start(policies_dir, app_id, **env)`` launches
``python -m healer.cli.main run`` as a subprocess, waits for /readyz and
returns a handle whose ``kill()`` sends SIGKILL (crash tests) and ``stop()``
SIGTERM. Every worker is stopped at the end of the test.

Auth is real: the factory writes a tokens file (HEALER_TOKENS_FILE) with one
identity per role and random tokens, stored as digests for two of them and
as literal tokens for the others, so both forms are exercised. A test calls
the API with ``worker.tokens["approve"]``; the audited actor is then
``f"user:{worker.identities['approve']}"``. ``start(..., tokens=False)`` starts
a worker without it (the caller passes its own token settings, or expects
the start to fail).

Commands are signed for real too (healer.commands): every app id gets a keyring
(:func:`keyring_for`, in a temp dir the workers and :func:`healer_cli` both
point at with HEALER_KEYRING_FILE) holding the worker's and the sealer's keys
and one operator key each for ``alice``, ``bob`` and ``carol`` (roles operate and
approve). The CLI signs as alice unless ``--actor`` names another.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.client import OutRecord, produce

# role -> identity of the factory's tokens file
IDENTITIES = {"ingest": "test-alertmanager", "approve": "test-approver", "operate": "test-operator",
              "admin": "test-admin"}
DIGESTED = ("ingest", "approve")  # written as sha256 digests; the others as literal tokens


def write_tokens_file(path: Path) -> dict[str, str]:
    """A tokens file with one identity per role; returns role -> token."""
    tokens = {role: secrets.token_hex(16) for role in IDENTITIES}
    lines = ["tokens:"]
    for role, name in IDENTITIES.items():
        if role in DIGESTED:
            secret = f"digest: sha256:{hashlib.sha256(tokens[role].encode()).hexdigest()}"
        else:
            secret = f"token: '{tokens[role]}'"
        lines.append(f"  - {{identity: {name}, roles: [{role}], {secret}}}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    http_port: int
    log_path: Path
    app_id: str
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token
    identities: dict[str, str] = field(default_factory=dict)  # role -> identity name

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                code, _ = self.get("/readyz")
                if code == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in lines if not line.startswith(("|", "〃", "+")))[-8000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


KEYRINGS = Path(os.environ.get("TMPDIR", "/tmp")) / "healer-test-keyrings"
PEOPLE = ("alice", "bob", "carol")


def keyring_for(app_id: str) -> Path:
    """The keyring of ``app_id``'s workers and CLI in tests (created on first use)."""
    path = KEYRINGS / f"{app_id}.yaml"
    if not path.exists():
        KEYRINGS.mkdir(parents=True, exist_ok=True)
        lines = ["sign: worker", "seal: audit", "keys:",
                 f"  - {{id: worker, secret: {secrets.token_hex(32)}, identity: healer, roles: [worker]}}",
                 f"  - {{id: audit, secret: {secrets.token_hex(32)}, roles: [audit]}}"]
        lines += [f"  - {{id: {p}, secret: {secrets.token_hex(32)}, identity: {p}, roles: [operate, approve]}}"
                  for p in PEOPLE]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
    return path


@dataclass
class WorkerFactory:
    bootstrap: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    def start(
        self, policies: Path | str, app_id: str, wait: bool = True, partitions: int = 3,
        tokens: bool = True, args: Sequence[str] = (), **env: str,
    ) -> Worker:
        port = free_port()
        n = len(self.workers)
        log_path = self.tmp / f"worker-{app_id}-{n}.log"
        data_dir = self.tmp / f"data-{n}"
        auth: dict[str, str] = {}
        token_of: dict[str, str] = {}
        if tokens:
            tokens_file = self.tmp / f"tokens-{n}.yaml"
            token_of = write_tokens_file(tokens_file)
            auth["HEALER_TOKENS_FILE"] = str(tokens_file)
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("HEALER_TOKENS_FILE", "HEALER_API_TOKEN", "HEALER_WEBHOOK_TOKEN",
                                          "HEALER_INSECURE_NO_AUTH", "HEALER_HTTP_HOST"))}
        full_env = {
            **inherited,
            **auth,
            "HEALER_BOOTSTRAP_SERVERS": self.bootstrap,
            "HEALER_APP_ID": app_id,
            "HEALER_POLICIES": str(policies),
            "HEALER_HTTP_PORT": str(port),  # the host is the default: loopback
            "HEALER_DATA_DIR": str(data_dir),
            "HEALER_TOPIC_PARTITIONS": str(partitions),
            "HEALER_KEYRING_FILE": str(keyring_for(app_id)),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "healer.cli.main", "run", *args],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        w = Worker(proc, port, log_path, app_id, token_of, dict(IDENTITIES) if tokens else {})
        self.workers.append(w)
        if wait:
            w.wait_ready()
        return w

    def stop_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait(timeout=10)


@pytest.fixture
def healer_worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    f = WorkerFactory(kafka_bootstrap, tmp_path)
    yield f
    f.stop_all()


def emit(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None,
         timestamps_ms: list[int | None] | None = None) -> None:
    recs = [
        OutRecord((keys or [None] * len(values))[i], v, (timestamps_ms or [None] * len(values))[i])
        for i, v in enumerate(values)
    ]
    asyncio.run(produce(bootstrap, topic, recs))


def read_until(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``done(records)`` holds; JSON values."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[dict[str, Any]]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        out: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        try:
                            out.append(json.loads(m.value))
                        except ValueError:
                            out.append({"__raw__": m.value})
                if done(out):
                    return out
            return out
        finally:
            await c.stop()

    return asyncio.run(go())


def healer_cli(bootstrap: str, app_id: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``healer`` CLI against ``bootstrap`` / ``app_id`` (signing as alice, see above)."""
    full = {**os.environ, "HEALER_BOOTSTRAP_SERVERS": bootstrap, "HEALER_APP_ID": app_id,
            "HEALER_KEYRING_FILE": str(keyring_for(app_id)), "HEALER_SIGNING_KEY": "alice", **env}
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *args], env=full,
                          capture_output=True, text=True, timeout=180, check=False)
