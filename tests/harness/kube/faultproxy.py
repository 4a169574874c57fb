"""A fault-injecting HTTP proxy in front of the test kube-apiserver.

Serves plain HTTP on 127.0.0.1 and forwards every request over TLS to the apiserver (checking
its CA), passing the client's headers through unchanged: the client's bearer token is what the
apiserver authenticates and authorises, so RBAC is as real through the proxy as without it.

Faults (:class:`Fault`) match on method and path (regexes) and either answer themselves (an
API ``Status`` with the configured code: 403 Forbidden, 409 Conflict, 429 TooManyRequests with
Retry-After, 500/503 ...) for the first N matches, a random fraction of them or one code per
match from a ``sequence``, add latency, run a hook before forwarding (used to make a *real*
conflict: the hook changes the object, then the client's stale write reaches the apiserver) or
run a hook once a request went through to the apiserver (``after``: e.g. arm a fault for the
read that follows a write, or let another writer undo it). Every request is logged in
``requests`` so tests can count attempts.

Used by ``tests/integration/kubernetes`` (retry and rollback-failure tests). Not for production
use.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REASONS = {
    403: "Forbidden",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection"}


@dataclass
class Fault:
    """One rule. ``status=0`` injects no error (only ``delay`` and/or the hooks).

    ``sequence``: the n-th match is answered with ``sequence[n-1]`` (0 lets it through), later
    matches go through. ``after(method, path, status)`` runs when a matching request was
    forwarded, before its response reaches the client.
    """

    status: int = 500
    method: str = ".*"
    path: str = ".*"
    first: int | None = None
    fraction: float | None = None
    sequence: tuple[int, ...] = ()
    delay: float = 0.0
    before: Callable[[str, str], None] | None = None
    after: Callable[[str, str, int], None] | None = None
    message: str = "injected by faultproxy"
    matched: int = 0
    injected: int = 0

    def matches(self, method: str, path: str) -> bool:
        return bool(re.fullmatch(self.method, method)) and re.search(self.path, path) is not None


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    injected: bool
    seconds: float


@dataclass
class FaultProxy:
    upstream: str
    ca_file: Path
    seed: int = 0
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        up = urlsplit(self.upstream)
        self._host, self._port = up.hostname or "127.0.0.1", up.port or 443
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        self._local = threading.local()

    # -- control -------------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def count(self, method: str = ".*", path: str = ".*", injected: bool | None = None) -> int:
        with self._lock:
            return sum(
                1 for r in self.requests
                if re.fullmatch(method, r.method) and re.search(path, r.path)
                and (injected is None or r.injected == injected)
            )

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request path --------------------------------------------------------------------
    def _decide(self, method: str, path: str) -> tuple[tuple[int, str] | None, float,
                                                        list[Callable[[str, str], None]],
                                                        list[Callable[[str, str, int], None]]]:
        """The (status, message) to answer with (None: forward), extra delay, and the
        before/after hooks."""
        delay = 0.0
        hooks: list[Callable[[str, str], None]] = []
        afters: list[Callable[[str, str, int], None]] = []
        answer: tuple[int, str] | None = None
        with self._lock:
            for f in self.faults:
                if not f.matches(method, path):
                    continue
                f.matched += 1
                status = f.status
                if f.sequence:
                    status = f.sequence[f.matched - 1] if f.matched <= len(f.sequence) else 0
                    hit = status != 0
                elif f.first is not None:
                    hit = f.matched <= f.first
                elif f.fraction is not None:
                    hit = self._rng.random() < f.fraction
                else:
                    hit = True
                if f.after is not None:
                    afters.append(f.after)
                if not hit:
                    continue
                f.injected += 1
                delay += f.delay
                if f.before is not None:
                    hooks.append(f.before)
                if status and answer is None:
                    answer = (status, f.message)
        return answer, delay, hooks, afters

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=60)
            self._local.conn = conn
        return conn

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        method, path = h.command, h.path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        answer, delay, hooks, afters = self._decide(method, path)
        if delay:
            time.sleep(delay)
        for hook in hooks:
            hook(method, path)
        if answer is not None:
            status, message = answer
            payload = json.dumps({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": REASONS.get(status, "InternalError"), "code": status,
            }).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            if status == 429:
                h.send_header("Retry-After", "1")
            h.end_headers()
            h.wfile.write(payload)
            self._log(method, path, status, True, started)
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            status, resp_headers, data = self._forward(method, path, headers, body)
        except (http.client.HTTPException, OSError) as exc:
            payload = json.dumps({"kind": "Status", "status": "Failure", "code": 502,
                                  "reason": "BadGateway", "message": f"faultproxy upstream: {exc}"}).encode()
            status, resp_headers, data = 502, [("Content-Type", "application/json")], payload
        for after in afters:
            after(method, path, status)
        h.send_response(status)
        for k, v in resp_headers:
            if k.lower() not in HOP_BY_HOP:
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)
        self._log(method, path, status, False, started)

    def _log(self, method: str, path: str, status: int, injected: bool, started: float) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(method, path, status, injected, time.monotonic() - started))
