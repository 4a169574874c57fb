"""Helpers for driving the Triton executors through a real Runner: a
list-collecting audit sink, TritonModel action requests, smoke specs.

Used by ``tests/integration/triton/`` and ``bench/bench_triton.py``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actions.base import Executor
from actions.registry import ExecutorRegistry
from actions.runner import RetryPolicy, Runner
from healer.audit import AuditEntry
from healer.models import ActionRequest, Target, VerifySpec
from tests.harness.triton_server import TritonServer, TritonUnavailable, find_dist

FAST_RETRY = RetryPolicy(attempts=3, max_seconds=20, initial_wait=0.05, max_wait=0.3, step_timeout=60)


@dataclass
class Harness:
    runner: Runner
    audit: list[AuditEntry] = field(default_factory=list)

    def kinds(self, action_id: str | None = None) -> list[str]:
        return [e.kind for e in self.audit if action_id is None or e.action_id == action_id]

    def entries(self, action_id: str) -> list[AuditEntry]:
        return [e for e in self.audit if e.action_id == action_id]


def make_harness(executors: list[Executor], retry: RetryPolicy = FAST_RETRY) -> Harness:
    registry = ExecutorRegistry()
    registry.register_all(executors)
    audit: list[AuditEntry] = []

    async def sink(entry: AuditEntry) -> None:
        audit.append(entry)

    return Harness(runner=Runner(registry, sink, retry=retry), audit=audit)


def request(
    use: str,
    model: str,
    server: str | None = None,
    servers: list[str] | None = None,
    with_: dict[str, Any] | None = None,
    version: str | None = None,
    verify_timeout: float = 30.0,
) -> ActionRequest:
    target = Target(kind="TritonModel", server=server,
                    servers=tuple(servers) if servers else None, model=model, version=version)
    return ActionRequest.model_validate({
        "action_id": f"{use}-{model}-{uuid.uuid4().hex[:8]}",
        "use": use,
        "target": target,
        "with": with_ or {},
        "verify": VerifySpec(timeout_seconds=verify_timeout, rollback=True),
    })


def smoke(data: list[float], expect: list[float] | None = None,
          shape: list[int] | None = None, output: str = "OUTPUT0") -> dict[str, Any]:
    out: dict[str, Any] = {"name": output}
    if expect is not None:
        out["data"] = expect
    if shape is not None:
        out["shape"] = shape
    return {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [len(data)], "data": data}],
            "outputs": [out]}


def _require_triton() -> None:
    try:
        find_dist()
    except TritonUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Triton server unavailable in CI: {exc}")
        pytest.skip(f"Triton server unavailable: {exc}")


def start_server(root: Path, extra_args: tuple[str, ...] = ()) -> TritonServer:
    _require_triton()
    return TritonServer(root=root, extra_args=extra_args).start()
