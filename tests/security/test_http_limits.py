"""Issue 13, finding 7 (HTTP bounds): slow bodies, half-open connections, refusal floods.

Tried against a local worker, a request body sent slowly stayed open for more than 60 s, 300
half-open connections (a partial request line, never finished) all stayed open, and 300
refused requests in 0.3 s wrote 304 audit records. Here a real ``healer run`` worker on the
real broker runs with short limits (body and header timeouts of a few seconds, at most 64
connections): the slow body is answered 408 and closed long before the client would finish;
each of 300 half-open connections is either refused by the cap (503) or closed at the header
deadline, the worker's metrics count both, and it answers normally afterwards; 300 refused
requests produce at most ``burst + 1`` audit records per refusal window, every refusal
accounted for (counted on ``{app}.audit``, read to a quiet point). Times are printed, never
asserted.
"""

from __future__ import annotations

import selectors
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_http_worker import call, policies, samples, total
from tests.workers import Worker, WorkerFactory, read_until

pytestmark = pytest.mark.integration

BODY_TIMEOUT_S = 3
HEADER_TIMEOUT_S = 5
MAX_CONNECTIONS = 64
HALF_OPEN = 300
FLOOD = 300
WAIT_S = 180.0  # generous bound for any observable condition on a loaded machine


def start(healer_worker: WorkerFactory, tmp: Path, app: str, **env: str) -> Worker:
    return healer_worker.start(policies(tmp), app, HEALER_HTTP_BODY_TIMEOUT=f"{BODY_TIMEOUT_S}s",
                               HEALER_HTTP_HEADER_TIMEOUT=f"{HEADER_TIMEOUT_S}s",
                               HEALER_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS), **env)


def read_to_quiet_point(bootstrap: str, topic: str, settled: Any, quiet_s: float = 5.0) -> list[dict[str, Any]]:
    """Read ``topic`` until ``settled(records)`` holds and then nothing new arrives for ``quiet_s``."""
    seen = {"n": -1, "since": time.monotonic()}

    def done(records: list[dict[str, Any]]) -> bool:
        if len(records) != seen["n"]:
            seen["n"], seen["since"] = len(records), time.monotonic()
            return False
        return bool(settled(records)) and time.monotonic() - seen["since"] >= quiet_s

    return read_until(bootstrap, topic, done, timeout=WAIT_S)


def test_slow_body_is_cut_off(healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str,
                              tmp_path: Path) -> None:
    w = start(healer_worker, tmp_path, unique_app_id)
    length = 100_000  # at 10 bytes per 0.5 s the client would need more than an hour
    head = (f"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {w.tokens['ingest']}\r\nContent-Length: {length}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    sock.sendall(head)
    t0 = time.monotonic()
    sent, answer, closed = 0, b"", False
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    try:
        while time.monotonic() - t0 < WAIT_S and not closed:
            try:
                sock.send(b'{"aaaaaaa"'[: min(10, length - sent)])
                sent += 10
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            for _ in sel.select(timeout=0.5):
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = True
                answer += chunk
    finally:
        sel.close()
        sock.close()
    elapsed = time.monotonic() - t0
    print(f"slow body: answered and closed after {elapsed:.1f}s, {sent} of {length} bytes sent "
          f"(http_body_timeout {BODY_TIMEOUT_S}s)")
    assert closed, f"the connection was still open after {WAIT_S}s"
    assert sent < length
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request body not received within 3s" in answer
    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda r: any(x["kind"] == "event.rejected" for x in r), timeout=60)
    rejected = [x for x in audit if x["kind"] == "event.rejected"]
    assert [(x["reason"], x["actor"], x["detail"]["http"]["status"]) for x in rejected] == [
        (f"request body not received within {BODY_TIMEOUT_S}s (http_body_timeout)", "user:test-alertmanager", 408)]
    assert w.tokens["ingest"] not in str(audit)


def test_half_open_connections_do_not_stay(healer_worker: WorkerFactory, kafka_bootstrap: str,
                                           unique_app_id: str, tmp_path: Path) -> None:
    w = start(healer_worker, tmp_path, unique_app_id)
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.monotonic()
    for _ in range(HALF_OPEN):
        s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
        s.sendall(b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, data=bytearray())
        socks.append(s)
    opened = time.monotonic() - t0
    busy = silent = 0
    open_ = set(socks)
    try:
        while open_ and time.monotonic() - t0 < WAIT_S:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    key.data.extend(chunk)
                    continue
                sel.unregister(s)
                open_.discard(s)
                if bytes(key.data).startswith(b"HTTP/1.1 503"):
                    busy += 1
                else:
                    assert not key.data, bytes(key.data)[:200]
                    silent += 1
    finally:
        sel.close()
        for s in socks:
            s.close()
    print(f"half-open: {HALF_OPEN} opened in {opened:.2f}s; all closed after {time.monotonic() - t0:.1f}s: "
          f"{busy} refused by the cap (503), {silent} closed at the header deadline ({HEADER_TIMEOUT_S}s)")
    assert not open_, f"{len(open_)} of {HALF_OPEN} half-open connections still open after {WAIT_S}s"
    assert busy + silent == HALF_OPEN
    assert busy >= 1 and silent >= 1
    # the worker counted what it did, and serves again
    with urllib.request.urlopen(w.url("/healthz"), timeout=30) as r:
        assert r.status == 200
    smp = samples(w)
    assert total(smp, "healer_http_connections_closed_total", reason="limit") == busy
    assert total(smp, "healer_http_connections_closed_total", reason="header_timeout") == silent
    # and audited them under the refusal rate limit: a bounded number of records, all accounted for
    audit = read_to_quiet_point(kafka_bootstrap, f"{unique_app_id}.audit",
                                lambda r: accounted(r) == HALF_OPEN)
    records = [x for x in audit if x["kind"] == "event.rejected"]
    windows = sum(1 for x in records if "refusals" in (x.get("detail") or {}))
    print(f"half-open: {len(records)} audit records ({windows} aggregated) for {HALF_OPEN} closed connections")
    assert windows >= 1 and len(records) <= 11 * windows


def accounted(audit: list[dict[str, Any]]) -> int:
    """Refusals an audit trail accounts for: one per record, or the count of an aggregated one."""
    n = 0
    for x in audit:
        if x["kind"] != "event.rejected":
            continue
        refusals = (x.get("detail") or {}).get("refusals")
        n += refusals["count"] if refusals else 1
    return n


def test_refusal_flood_costs_bounded_audit_records(healer_worker: WorkerFactory, kafka_bootstrap: str,
                                                   unique_app_id: str, tmp_path: Path) -> None:
    window_s = 20
    w = start(healer_worker, tmp_path, unique_app_id, HEALER_HTTP_REFUSAL_WINDOW=f"{window_s}s")
    t0 = time.monotonic()
    codes = [call(w, "POST", "/api/v1/alerts", {"labels": {"alertname": "x"}}, token=f"wrong-token-{i:08d}")[0]
             for i in range(FLOOD)]
    flood_s = time.monotonic() - t0
    assert codes == [401] * FLOOD
    audit = read_to_quiet_point(kafka_bootstrap, f"{unique_app_id}.audit", lambda r: accounted(r) == FLOOD)
    records = [x for x in audit if x["kind"] == "event.rejected"]
    single = [x for x in records if "refusals" not in (x.get("detail") or {})]
    aggregated = [x for x in records if "refusals" in (x.get("detail") or {})]
    print(f"refusal flood: {FLOOD} refused in {flood_s:.2f}s -> {len(records)} audit records "
          f"({len(single)} one by one, {len(aggregated)} aggregated); window {window_s}s, burst 10")
    assert accounted(audit) == FLOOD  # every refusal is in the audit, one by one or counted
    assert len(aggregated) >= 1
    assert len(single) <= 10 * len(aggregated) + 10 and len(records) <= 11 * len(aggregated) + 10
    assert {x["reason"] for x in single} == {"alert webhook attempt with an invalid token"}
    for x in aggregated:
        r = x["detail"]["refusals"]
        assert r["by_reason"] == {"alert webhook attempt with an invalid token": r["count"]}
        assert r["by_remote"] == {"127.0.0.1": r["count"]}
    assert not any("wrong-token" in str(x) for x in audit)  # never the presented token
    log = w.log_path.read_text(errors="replace")
    assert log.count("refused POST /api/v1/alerts") == len(single)  # the log is bounded too
