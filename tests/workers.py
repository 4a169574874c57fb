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

Reading topics: ``read_until(done)`` stops as soon as ``done(records)`` holds;
``read_to_quiet(done)`` goes on to a quiet point (every partition read to its
end offset, the end offsets unchanged for a settle period), so a record written
after the ones a test waited for, e.g. a duplicate on another partition, is in
what the test checks. ``wait_for(condition)`` polls an observable condition.
``EffectReceiver`` is a local endpoint for ``webhook.notify`` that counts the
requests per action id: the effect itself, which the audit cannot show twice
(a replayed entry has the same id and the sealer drops it).
Tests read only public topics (inputs, ``{app}.audit``, ``{app}.deadletter``)
and the worker's public HTTP, never the records of internal topics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")

# how long a topic's end offsets must stay unchanged to count as quiet; the worker
# pipeline hands records through several stages, a few seconds apart under load
QUIET_SECONDS = float(os.environ.get("HEALER_TEST_QUIET_SECONDS", "5"))


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

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` on /metrics whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as r:
            text = r.read().decode()
        want = labels.items()
        return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                   if s.name == name and want <= s.labels.items())

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


class EffectReceiver:
    """A local HTTP endpoint for ``webhook.notify`` (``url``): records every request body and
    answers 200. ``hold_first``: the first request is held open until ``close()``, so its
    arrival proves the executor is running and stays so; later ones are answered at once."""

    def __init__(self, hold_first: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first = threading.Event()
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                receiver.requests.append(body)
                if not receiver.first.is_set():
                    receiver.first.set()
                    if hold_first:
                        receiver._closing.wait(timeout=900)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self) -> Counter[str]:
        """Requests per action id."""
        return Counter(str(b.get("action_id")) for b in list(self.requests))

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def effect_receiver() -> Iterator[EffectReceiver]:
    r = EffectReceiver()
    yield r
    r.close()


def emit(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None,
         timestamps_ms: list[int | None] | None = None) -> None:
    recs = [
        OutRecord((keys or [None] * len(values))[i], v, (timestamps_ms or [None] * len(values))[i])
        for i, v in enumerate(values)
    ]
    asyncio.run(produce(bootstrap, topic, recs))


@dataclass(frozen=True)
class Record:
    """One record of a topic, undecoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _json(rec: Record) -> Any:
    try:
        return json.loads(rec.value or b"")
    except ValueError:
        return {"__raw__": rec.value}


def _read(
    bootstrap: str, topic: str, convert: Callable[[Record], T], done: Callable[[list[T]], bool],
    timeout: float, settle: float | None, quiet_timeout: float = 180.0,
) -> list[T]:
    """Read ``topic`` from the start until ``done`` holds, then (``settle`` not None) on to a
    quiet point; see the module docstring. Without ``done`` holding: what was read."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[T]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        out: list[T] = []
        try:
            deadline = time.monotonic() + timeout
            satisfied = False
            quiet_ends: dict[Any, int] | None = None
            quiet_since = 0.0
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                got = 0
                for msgs in batch.values():
                    for m in msgs:
                        out.append(convert(Record(m.topic, m.partition, m.offset, m.key, m.value)))
                        got += 1
                if not satisfied:
                    satisfied = done(out)
                    if not satisfied:
                        continue
                    if settle is None:
                        return out
                    deadline = time.monotonic() + quiet_timeout
                tps = list(c.assignment())
                ends = await c.end_offsets(tps) if tps else {}
                caught_up = bool(tps) and all([await c.position(tp) >= ends[tp] for tp in tps])
                now = time.monotonic()
                if got or not caught_up or ends != quiet_ends:
                    quiet_ends, quiet_since = (ends if caught_up else None), now
                elif now - quiet_since >= (settle or 0.0):
                    return out
            if satisfied:
                raise AssertionError(f"{topic} did not go quiet within {quiet_timeout:g}s: records kept "
                                     f"arriving ({len(out)} read)")
            return out
        finally:
            await c.stop()

    return asyncio.run(go())


def read_until(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``done(records)`` holds; JSON values."""
    return _read(bootstrap, topic, _json, done, timeout, settle=None)


def read_to_quiet(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool] = lambda recs: True,
    timeout: float = 120.0, settle: float = QUIET_SECONDS,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``done(records)`` holds, then on until every
    partition is read to its end offset and the end offsets stayed the same for ``settle``
    seconds; JSON values. ``done`` not holding within ``timeout``: what was read (the
    caller's assertions say what is missing). Never quiet: AssertionError."""
    return _read(bootstrap, topic, _json, done, timeout, settle=settle)


def read_records(bootstrap: str, topic: str, count: int, timeout: float = 120.0) -> list[Record]:
    """The first ``count`` records of ``topic`` (at least; all of it once quiet), undecoded."""
    return _read(bootstrap, topic, lambda r: r, lambda recs: len(recs) >= count, timeout, settle=1.0)


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> dict[tuple[str, int], int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await c.start()
        try:
            await c._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or set())]
            ends = await c.end_offsets(tps)
            return {(tp.topic, tp.partition): off for tp, off in ends.items()}
        finally:
            await c.stop()

    return asyncio.run(go())


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0, every: float = 0.3) -> float:
    """Poll ``condition`` until it holds; the seconds it took. AssertionError naming ``what``
    after ``timeout``. Exceptions while polling (a worker still starting) count as "not yet"."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if condition():
                return time.monotonic() - t0
        except (OSError, ValueError):
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def dead_letter_bytes(dead: dict[str, Any]) -> bytes:
    """The input bytes a dead letter kept: ``raw`` (UTF-8 text) or ``raw_base64``."""
    if dead.get("raw_base64") is not None:
        return base64.b64decode(dead["raw_base64"], validate=True)
    if dead.get("raw") is not None:
        return str(dead["raw"]).encode("utf-8")
    return b""


def dead_letter_problems(dead: list[dict[str, Any]], inputs: list[Record], cap: int) -> list[str]:
    """How ``dead`` (records of ``{app}.deadletter``) differs from the inputs they name: each
    names an input by topic, partition and offset, keeps its first ``cap`` bytes exactly and
    says how long it was and whether it was cut; no input is dead-lettered twice."""
    by_coord: dict[tuple[Any, ...], bytes] = {(r.topic, r.partition, r.offset): r.value or b"" for r in inputs}
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for d in dead:
        coord = (d.get("topic"), d.get("partition"), d.get("offset"))
        name = "{}[{}]@{}".format(*coord)
        if coord not in by_coord:
            problems.append(f"{name}: names no input record")
            continue
        if coord in seen:
            problems.append(f"{name}: dead-lettered twice")
        seen.add(coord)
        raw = by_coord[coord]
        try:
            kept = dead_letter_bytes(d)
        except ValueError as exc:
            problems.append(f"{name}: raw_base64 does not decode: {exc}")
            continue
        if kept != raw[:cap]:
            problems.append(f"{name}: keeps {len(kept)} bytes that are not the input's first {min(cap, len(raw))}")
        if d.get("raw") is not None and d.get("raw_base64") is not None:
            problems.append(f"{name}: both raw and raw_base64 set")
        if d.get("raw_bytes") != len(raw):
            problems.append(f"{name}: raw_bytes {d.get('raw_bytes')} != {len(raw)}")
        if d.get("raw_truncated") is not (len(raw) > cap):
            problems.append(f"{name}: raw_truncated {d.get('raw_truncated')} for {len(raw)} bytes (cap {cap})")
        if not d.get("error"):
            problems.append(f"{name}: no error")
    return problems


def healer_cli(bootstrap: str, app_id: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``healer`` CLI against ``bootstrap`` / ``app_id`` (signing as alice, see above)."""
    full = {**os.environ, "HEALER_BOOTSTRAP_SERVERS": bootstrap, "HEALER_APP_ID": app_id,
            "HEALER_KEYRING_FILE": str(keyring_for(app_id)), "HEALER_SIGNING_KEY": "alice", **env}
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *args], env=full,
                          capture_output=True, text=True, timeout=180, check=False)
