"""Helpers shared by the Prometheus tests: the remote_write block for healer, raw records of a
topic with their partitions, the worker's remote-write counters, raw HTTP posts and polling."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.test_http_worker import samples, total
from tests.workers import Worker

TOKEN = "remote-write-test-token"
WRITE_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                 "X-Prometheus-Remote-Write-Version": "0.1.0"}


def remote_write(url: str, token_file: Path) -> dict[str, Any]:
    """A remote_write block for healer's receiver: short batches so tests see samples quickly."""
    return {
        "url": url,
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
    }


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: Any  # the JSON value


def read_records(bootstrap: str, topic: str, done: Callable[[list[Rec]], bool], timeout: float = 60.0) -> list[Rec]:
    """Records of ``topic`` from the start, with partition and key, until ``done(records)``."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[Rec]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        out: list[Rec] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    out += [Rec(m.partition, m.offset, m.key, json.loads(m.value)) for m in msgs]
                if done(out):
                    break
            return out
        finally:
            await c.stop()

    return asyncio.run(go())


def remote_write_samples(w: Worker, outcome: str) -> float:
    return total(samples(w), "healer_remote_write_samples_total", outcome=outcome)


def post(w: Worker, path: str, body: bytes, headers: dict[str, str] | None = None,
         token: str | None = TOKEN, timeout: float = 30.0, chunked: bool = False) -> tuple[int, dict[str, str], Any]:
    """POST raw bytes (``chunked``: without Content-Length); (status, headers, JSON body or None)."""
    hdrs = dict(WRITE_HEADERS if headers is None else headers)
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data: Any = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    req = urllib.request.Request(w.url(path), data=data, headers=hdrs, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, dict(e.headers), json.loads(raw) if raw else None


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0, every: float = 0.25) -> None:
    """Poll ``check`` until it holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def http_up(w: Worker) -> bool:
    try:
        w.get("/healthz")
        return True
    except OSError:
        return False
