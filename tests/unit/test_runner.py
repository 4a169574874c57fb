"""actions.runner.Runner when an executor crashes or errs: every step still ends in one audited
record with the reason (StackStorm's "record in finally"), never a lost record or an exception
out of ``run``/``rollback``; transient errors are retried, permanent ones are not.

The runner is the unit under test: the executor is a small test class told where to fail,
the audit sink an in-memory list.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

import pytest

from actions.base import ActionContext, Executor, PermanentError, TransientError, VerificationFailed
from actions.registry import ExecutorRegistry
from actions.runner import Outcome, RetryPolicy, Runner
from healer.audit import AuditEntry
from healer.catalog import ALL_KINDS, ActionSpec, Params, default_catalog
from healer.models import ActionRequest, Target, VerifySpec

Step = Literal["snapshot", "execute", "verify", "rollback", "verify_rollback"]


class FaultParams(Params):
    # step -> how it fails: "crash" (a bug: RuntimeError), "transient:N" (N TransientErrors,
    # then success), "permanent", "unverified" (VerificationFailed)
    fail: dict[Step, str] = {}


class FaultyExecutor(Executor):
    """Counts calls per step and fails where the request's params say."""

    name: ClassVar[str] = "test.faulty"
    reversible: ClassVar[bool] = True

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _step(self, ctx: ActionContext, step: Step) -> None:
        self.calls[step] = self.calls.get(step, 0) + 1
        assert isinstance(ctx.params, FaultParams)
        how = ctx.params.fail.get(step)
        if how is None:
            return
        if how == "crash":
            raise RuntimeError(f"boom in {step}")
        if how == "permanent":
            raise PermanentError(f"{step}: 403 Forbidden")
        if how == "unverified":
            raise VerificationFailed(f"{step} not reached within 1s", {"waited": 1})
        if how.startswith("transient:") and self.calls[step] <= int(how.split(":")[1]):
            raise TransientError(f"{step}: 503 ServiceUnavailable")

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        self._step(ctx, "snapshot")
        return {"replicas": 1}

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        self._step(ctx, "execute")
        return {"replicas": 3}

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        self._step(ctx, "verify")
        return {"ready": 3}

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        self._step(ctx, "rollback")
        return dict(before)

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        self._step(ctx, "verify_rollback")
        return {**restored, "ready": 1}


class Sink:
    """In-memory audit sink."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def __call__(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.entries]


RETRY = RetryPolicy(attempts=4, max_seconds=10, initial_wait=0.001, max_wait=0.01, step_timeout=5)


def setup() -> tuple[Runner, FaultyExecutor, Sink]:
    registry = ExecutorRegistry(default_catalog([ActionSpec("test.faulty", FaultParams, ALL_KINDS, True)]))
    executor = FaultyExecutor()
    registry.register(executor)
    sink = Sink()
    return Runner(registry, sink, retry=RETRY), executor, sink


def request(fail: dict[str, str], rollback: bool = True) -> ActionRequest:
    return ActionRequest.model_validate({
        "action_id": "a-1", "use": "test.faulty",
        "target": Target(kind="Deployment", namespace="llm", name="web"),
        "verify": VerifySpec(timeout_seconds=1, rollback=rollback), "with": {"fail": fail},
    })


def run(fail: dict[str, str], rollback: bool = True) -> tuple[Outcome, FaultyExecutor, Sink]:
    runner, executor, sink = setup()
    out = asyncio.run(runner.run(request(fail, rollback)))
    return out, executor, sink


# (fail, final status, audit kinds, reason of the last record)
CRASHES: list[tuple[dict[str, str], str, list[str], str]] = [
    ({"snapshot": "crash"}, "failed", ["action.running", "action.failed"],
     "executor error: RuntimeError: boom in snapshot"),
    ({"execute": "crash"}, "failed", ["action.running", "action.failed"],
     "executor error: RuntimeError: boom in execute"),
    ({"verify": "crash"}, "rolled_back",
     ["action.running", "action.succeeded", "action.failed", "action.rolled_back"],
     "verification failed: RuntimeError: boom in verify"),
    ({"verify": "crash", "rollback": "crash"}, "rollback_failed",
     ["action.running", "action.succeeded", "action.failed", "action.rollback_failed"],
     "rollback error: RuntimeError: boom in rollback"),
    ({"verify": "unverified", "verify_rollback": "crash"}, "rollback_failed",
     ["action.running", "action.succeeded", "action.failed", "action.rollback_failed"],
     "rollback error: RuntimeError: boom in verify_rollback"),
    ({"verify": "unverified", "verify_rollback": "unverified"}, "rollback_failed",
     ["action.running", "action.succeeded", "action.failed", "action.rollback_failed"],
     "rollback did not verify: verify_rollback not reached within 1s"),
    ({"verify": "unverified", "rollback": "permanent"}, "rollback_failed",
     ["action.running", "action.succeeded", "action.failed", "action.rollback_failed"],
     "rollback: 403 Forbidden"),
]


@pytest.mark.parametrize(("fail", "status", "kinds", "reason"), CRASHES,
                         ids=["+".join(f"{k}={v}" for k, v in c[0].items()) for c in CRASHES])
def test_a_crash_or_error_in_any_step_is_an_audited_outcome(
    fail: dict[str, str], status: str, kinds: list[str], reason: str
) -> None:
    out, _, sink = run(fail)
    assert out.status == status
    assert sink.kinds() == kinds
    last = sink.entries[-1]
    assert last.reason is not None and last.reason.startswith(reason), last.reason
    if status == "rollback_failed":
        # the outcome keeps the action's own failure; the rollback's is in its audit record
        assert out.reason == sink.entries[2].reason
        assert last.before == {"replicas": 1}  # what the operator must restore by hand


def test_a_crash_in_verify_without_rollback_is_failed_with_the_phase() -> None:
    out, executor, sink = run({"verify": "crash"}, rollback=False)
    assert out.status == "failed" and executor.calls.get("rollback") is None
    assert sink.kinds() == ["action.running", "action.succeeded", "action.failed"]
    failed = sink.entries[-1]
    assert failed.reason == "verification failed: RuntimeError: boom in verify"
    assert failed.detail == {"phase": "verify"}


def test_an_operator_rollback_that_crashes_is_audited_not_raised() -> None:
    runner, executor, sink = setup()
    req = request({"rollback": "crash"})
    out = asyncio.run(runner.rollback(req, {"replicas": 1}, actor="user:carol", reason="made it worse"))
    assert out.status == "rollback_failed" and executor.calls == {"rollback": 1}
    assert sink.kinds() == ["action.rollback_failed"]
    entry = sink.entries[0]
    assert entry.actor == "user:carol" and entry.reason == "rollback error: RuntimeError: boom in rollback"


def test_transient_rollback_errors_are_retried() -> None:
    out, executor, sink = run({"verify": "unverified", "rollback": "transient:2"})
    assert out.status == "rolled_back", out
    assert executor.calls["rollback"] == 3
    assert sink.kinds()[-1] == "action.rolled_back"


def test_transient_rollback_errors_give_up_after_the_attempts() -> None:
    out, executor, sink = run({"verify": "unverified", "rollback": "transient:99"})
    assert out.status == "rollback_failed"
    assert executor.calls["rollback"] == RETRY.attempts
    assert out.detail["rollback"]["attempts"] == RETRY.attempts
    last = sink.entries[-1]
    assert last.kind == "action.rollback_failed"
    assert last.reason == f"rollback failed after {RETRY.attempts} attempts: rollback: 503 ServiceUnavailable"


def test_permanent_rollback_errors_fail_at_once() -> None:
    out, executor, _ = run({"verify": "unverified", "rollback": "permanent"})
    assert out.status == "rollback_failed" and executor.calls["rollback"] == 1


def test_a_transient_error_out_of_the_rollback_verification_is_audited() -> None:
    """Verifications wait out read errors themselves (actions.base.poll_until); one that
    still lets a TransientError out ends the rollback audited, not raised."""
    out, executor, sink = run({"verify": "unverified", "verify_rollback": "transient:1"})
    assert out.status == "rollback_failed", out
    assert executor.calls["verify_rollback"] == 1
    last = sink.entries[-1]
    assert last.kind == "action.rollback_failed" and last.reason == "verify_rollback: 503 ServiceUnavailable"


# ---------------------------------------------------------------- pipelined audit writes

class SlowSink:
    """A sink whose writes complete later (like a group commit): it records what was written
    when, and what the executor had done by then."""

    def __init__(self, executor: FaultyExecutor) -> None:
        self.executor = executor
        self.done: list[str] = []
        self.submitted: list[str] = []

    def __call__(self, entry: AuditEntry) -> asyncio.Future[None]:
        self.submitted.append(entry.kind)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finish() -> None:
            self.done.append(entry.kind)
            fut.set_result(None)

        asyncio.get_running_loop().call_later(0.01, finish)
        return fut


@pytest.mark.parametrize(("fail", "kinds"), [
    ({}, ["action.running", "action.succeeded", "action.verified"]),
    ({"verify": "unverified"}, ["action.running", "action.succeeded", "action.failed", "action.rolled_back"]),
])
def test_pipelined_writes_are_all_acked_when_run_returns_and_before_a_rollback(
    fail: dict[str, str], kinds: list[str]
) -> None:
    registry = ExecutorRegistry(default_catalog([ActionSpec("test.faulty", FaultParams, ALL_KINDS, True)]))
    executor = FaultyExecutor()
    registry.register(executor)
    sink = SlowSink(executor)
    runner = Runner(registry, sink, retry=RETRY, pipelined=True)
    rollback_saw: list[list[str]] = []
    real_rollback = executor.rollback

    async def watching(ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        rollback_saw.append(list(sink.done))  # what was acked when the rollback began
        return await real_rollback(ctx, before)

    executor.rollback = watching  # type: ignore[method-assign]

    async def go() -> list[str]:
        await runner.run(request(fail))
        return list(sink.done)  # acked by the time run returned

    assert asyncio.run(go()) == kinds == sink.submitted
    if "action.rolled_back" in kinds:
        assert rollback_saw == [["action.running", "action.succeeded", "action.failed"]]
