"""The action runner: snapshot -> execute -> verify -> rollback, each step audited.

Every step's audit record is written in ``finally`` (an executor that crashes
still leaves a complete trail). Transient errors are retried with exponential
backoff and jitter (tenacity); permanent errors fail at once. Every step has a
timeout. The runner decides about rollback, not the executor.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from actions.base import (
    ActionContext,
    ActionError,
    ExecuteFailed,
    Executor,
    NotReversible,
    PermanentError,
    TransientError,
    VerificationFailed,
)
from actions.registry import ExecutorRegistry
from healer.audit import AuditEntry, AuditKind, for_action
from healer.models import ActionRequest

log = logging.getLogger("healer.runner")

# the audit writes of the run in progress (pipelined mode): one list per task
_PENDING: contextvars.ContextVar[list[asyncio.Future[Any]] | None] = contextvars.ContextVar(
    "healer_runner_pending", default=None)

AuditSink = Callable[[AuditEntry], Awaitable[None]]
_WARN_KINDS = frozenset({"action.failed", "action.rollback_failed"})
Status = Literal["verified", "succeeded", "failed", "rolled_back", "rollback_failed"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_seconds: float = 60.0
    initial_wait: float = 0.2
    max_wait: float = 5.0
    step_timeout: float = 60.0


@dataclass
class Outcome:
    """How one run ended; ``before`` is what rollback restores."""

    action_id: str
    status: Status
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    reversible: bool = False
    duration_seconds: float = 0.0


def _now() -> datetime:
    return datetime.now(UTC)


class Runner:
    def __init__(
        self,
        registry: ExecutorRegistry,
        audit: AuditSink,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = _now,
        pipelined: bool = False,
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.retry = retry or RetryPolicy()
        self.clock = clock
        # pipelined: a step's audit write is handed to the sink and awaited before the next
        # change (a rollback) and before run()/rollback() return, not one by one: with a
        # group-committing sink an action waits for one broker round trip, not one per step
        self.pipelined = pipelined

    async def _settle(self) -> None:
        """Wait for the audit writes handed over so far (pipelined mode)."""
        pending = _PENDING.get()
        if pending:
            writes = pending[:]
            pending.clear()
            await asyncio.gather(*writes)

    async def _emit(self, kind: AuditKind, req: ActionRequest, **kw: Any) -> None:
        if kind in _WARN_KINDS:
            # a failure is in the audit trail; it is also in the log, where operators look first
            log.warning(
                "%s %s: %s on %s%s: %s", kind, req.action_id, req.use, req.target.key().strip("/"),
                " (dry run)" if req.dry_run else "", kw.get("reason") or "no reason given",
                extra={"action_id": req.action_id, "kind": kind},
            )
        try:
            write = self.audit(for_action(kind, req, self.clock(), **kw))
            pending = _PENDING.get()
            if pending is not None:
                pending.append(asyncio.ensure_future(write))
                return
            await write
        except Exception:  # the audit sink must not hide the action's own outcome
            log.exception("audit write failed", extra={"action_id": req.action_id, "kind": kind})
            raise

    async def _attempt(
        self, what: str, fn: Callable[[], Awaitable[dict[str, Any]]], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run ``fn`` with a timeout (the step's own, else the policy default) and
        retries on TransientError.

        The first attempt runs without the retry machinery (most steps succeed at once and
        building tenacity's objects per step was a large share of a short action's CPU); its
        failure is replayed as tenacity's first attempt, so attempts, waits and Retry-After
        are what they were."""
        step_timeout = max(timeout or 0.0, self.retry.step_timeout)
        started = time.monotonic()
        try:
            return await self._once(what, fn, step_timeout)
        except TransientError as exc:
            first: TransientError | None = exc
        attempts = 0
        backoff = wait_exponential_jitter(initial=self.retry.initial_wait, max=self.retry.max_wait)

        def wait(state: RetryCallState) -> float:
            # honour the server's Retry-After (429/503), within the step's retry budget
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None) or 0.0
            return max(backoff(state), min(float(after), self.retry.max_seconds))

        budget = max(0.0, self.retry.max_seconds - (time.monotonic() - started))
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(budget),
                wait=wait,
                reraise=False,
            ):
                with attempt:
                    attempts += 1
                    if first is not None:
                        failed, first = first, None
                        raise failed
                    return await self._once(what, fn, step_timeout)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            msg = last.message if isinstance(last, ActionError) else str(last)
            detail = dict(last.detail) if isinstance(last, ActionError) else {}
            detail["attempts"] = attempts
            raise PermanentError(f"{what} failed after {attempts} attempts: {msg}", detail) from last
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _once(what: str, fn: Callable[[], Awaitable[dict[str, Any]]], step_timeout: float) -> dict[str, Any]:
        """One attempt within the step timeout (asyncio.timeout: no task per attempt)."""
        try:
            async with asyncio.timeout(step_timeout):
                return await fn()
        except TimeoutError as exc:
            raise TransientError(f"{what} timed out after {step_timeout:g}s") from exc

    def _context(self, req: ActionRequest) -> tuple[Executor, ActionContext]:
        executor = self.registry.get(req.use)
        spec = self.registry.catalog.get(req.use)
        if executor is None or spec is None:
            raise PermanentError(f"no executor for {req.use!r} on this worker")
        if req.target.kind not in spec.target_kinds:
            raise PermanentError(f"{req.use} cannot act on a {req.target.kind}")
        params = spec.parse(req.with_)
        return executor, ActionContext(request=req, params=params, log=log)

    async def announce(self, req: ActionRequest) -> None:
        """Audit ``action.running``; callers that mark a ledger do this first."""
        await self._emit("action.running", req)

    async def run(self, req: ActionRequest, announced: bool = False) -> Outcome:
        """Run one action through its whole lifecycle; never raises for action failures.

        ``announced``: the caller already audited ``action.running``. Every audit record of
        the run is written (acked by the sink) when this returns.
        """
        return await self._whole(self._run(req, announced))

    async def _whole(self, work: Awaitable[Outcome]) -> Outcome:
        if not self.pipelined or _PENDING.get() is not None:
            return await work
        token = _PENDING.set([])
        try:
            return await work
        finally:
            try:
                await self._settle()
            finally:
                _PENDING.reset(token)

    async def _run(self, req: ActionRequest, announced: bool = False) -> Outcome:
        started = time.monotonic()
        out = Outcome(action_id=req.action_id, status="failed")
        rollback_after_failure = False
        if not announced:
            await self.announce(req)
        try:
            executor, ctx = self._context(req)
            out.reversible = executor.reversible
            out.before = await self._attempt("snapshot", lambda: executor.snapshot(ctx))
            if req.dry_run:
                plan = await self._attempt("plan", lambda: executor.plan(ctx, out.before or {}))
                out.status = "succeeded"
                out.detail = {"dry_run": True, "would": plan}
                return out
            timeout = getattr(ctx.params, "timeout_seconds", None)
            out.after = await self._attempt(
                "execute", lambda: executor.execute(ctx, out.before or {}), timeout=timeout
            )
            out.status = "succeeded"
        except ExecuteFailed as exc:
            out.reason = exc.message
            out.after = exc.after
            out.detail = {**exc.detail, "phase": "execute"}
            rollback_after_failure = True
        except ActionError as exc:
            out.reason = exc.message
            out.detail = exc.detail
            return out
        except Exception as exc:  # an executor bug is a failed action, never a lost record
            log.exception("executor crashed", extra={"action_id": req.action_id})
            out.reason = f"executor error: {type(exc).__name__}: {exc}"
            return out
        finally:
            out.duration_seconds = time.monotonic() - started
            if out.status == "succeeded":
                await self._emit(
                    "action.succeeded", req, before=out.before, after=out.after, detail=out.detail or None
                )
            elif out.status == "failed":
                await self._emit(
                    "action.failed", req, before=out.before, after=out.after, reason=out.reason,
                    detail=out.detail or None,
                )
        if rollback_after_failure:
            if req.verify.rollback and executor.reversible:
                await self._settle()  # the failure is on record before the rollback changes anything
                rb = await self.rollback(req, out.before or {}, actor=None, reason=out.reason)
                out.status = rb.status
                out.detail = {**out.detail, "rollback": rb.detail}
            out.duration_seconds = time.monotonic() - started
            return out
        return await self._verify(req, executor, ctx, out, started)

    async def _verify(
        self, req: ActionRequest, executor: Executor, ctx: ActionContext, out: Outcome, started: float
    ) -> Outcome:
        try:
            vdetail = await executor.verify(ctx, out.before or {}, out.after or {}, req.verify.timeout_seconds)
            out.status = "verified"
            out.detail = vdetail
        except ActionError as exc:
            out.status = "failed"
            out.reason = f"verification failed: {exc.message}"
            out.detail = exc.detail
        except Exception as exc:
            log.exception("verify crashed", extra={"action_id": req.action_id})
            out.status = "failed"
            out.reason = f"verification failed: {type(exc).__name__}: {exc}"
        finally:
            out.duration_seconds = time.monotonic() - started
            if out.status == "verified":
                await self._emit("action.verified", req, before=out.before, after=out.after, detail=out.detail)
            else:
                await self._emit(
                    "action.failed", req, before=out.before, after=out.after, reason=out.reason,
                    detail={**out.detail, "phase": "verify"},
                )
        if out.status == "failed" and req.verify.rollback and executor.reversible:
            await self._settle()  # the failure is on record before the rollback changes anything
            rb = await self.rollback(req, out.before or {}, actor=None, reason=out.reason)
            out.status = rb.status
            out.detail = {**out.detail, "rollback": rb.detail}
        out.duration_seconds = time.monotonic() - started
        return out

    async def rollback(
        self,
        req: ActionRequest,
        before: dict[str, Any],
        actor: str | None = None,
        reason: str | None = None,
    ) -> Outcome:
        """Restore ``before`` (automatic after failed verify, or by an operator); its audit
        records are written when this returns."""
        return await self._whole(self._rollback(req, before, actor, reason))

    async def _rollback(
        self, req: ActionRequest, before: dict[str, Any], actor: str | None, reason: str | None,
    ) -> Outcome:
        out = Outcome(action_id=req.action_id, status="rollback_failed", before=before)
        try:
            executor, ctx = self._context(req)
            out.reversible = executor.reversible
            if not executor.reversible:
                raise NotReversible(f"{req.use} is not reversible: nothing was recorded to restore")
            restored = await self._attempt("rollback", lambda: executor.rollback(ctx, before))
            out.after = await executor.verify_rollback(ctx, before, restored, req.verify.timeout_seconds)
            out.status = "rolled_back"
            out.reason = reason
        except VerificationFailed as exc:
            out.reason = f"rollback did not verify: {exc.message}"
            out.detail = exc.detail
        except ActionError as exc:
            out.reason = exc.message
            out.detail = exc.detail
            if isinstance(exc, NotReversible):
                out.status = "failed"
                out.detail = {**out.detail, "not_reversible": True}
        except Exception as exc:
            log.exception("rollback crashed", extra={"action_id": req.action_id})
            out.reason = f"rollback error: {type(exc).__name__}: {exc}"
        finally:
            if out.status == "rolled_back":
                await self._emit("action.rolled_back", req, actor=actor, before=before, after=out.after, reason=reason)
            elif out.status == "rollback_failed":
                await self._emit(
                    "action.rollback_failed", req, actor=actor, before=before, reason=out.reason,
                    detail=out.detail or None,
                )
        return out
