"""The action runner: snapshot -> execute -> verify -> rollback, each step audited.

Every step's audit record is written in ``finally`` (an executor that crashes
still leaves a complete trail). Transient errors are retried with exponential
backoff and jitter (tenacity); permanent errors fail at once. Every step has a
timeout. The runner decides about rollback, not the executor.
"""

from __future__ import annotations

import asyncio
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
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.retry = retry or RetryPolicy()
        self.clock = clock

    async def _emit(self, kind: AuditKind, req: ActionRequest, **kw: Any) -> None:
        if kind in _WARN_KINDS:
            # a failure is in the audit trail; it is also in the log, where operators look first
            log.warning(
                "%s %s: %s on %s%s: %s", kind, req.action_id, req.use, req.target.key().strip("/"),
                " (dry run)" if req.dry_run else "", kw.get("reason") or "no reason given",
                extra={"action_id": req.action_id, "kind": kind},
            )
        try:
            await self.audit(for_action(kind, req, self.clock(), **kw))
        except Exception:  # the audit sink must not hide the action's own outcome
            log.exception("audit write failed", extra={"action_id": req.action_id, "kind": kind})
            raise

    async def _attempt(
        self, what: str, fn: Callable[[], Awaitable[dict[str, Any]]], timeout: float | None = None
    ) -> dict[str, Any]:
        """Run ``fn`` with a timeout (the step's own, else the policy default) and
        retries on TransientError."""
        step_timeout = max(timeout or 0.0, self.retry.step_timeout)
        attempts = 0
        backoff = wait_exponential_jitter(initial=self.retry.initial_wait, max=self.retry.max_wait)

        def wait(state: RetryCallState) -> float:
            # honour the server's Retry-After (429/503), within the step's retry budget
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None) or 0.0
            return max(backoff(state), min(float(after), self.retry.max_seconds))

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(self.retry.max_seconds),
                wait=wait,
                reraise=False,
            ):
                with attempt:
                    attempts += 1
                    try:
                        return await asyncio.wait_for(fn(), timeout=step_timeout)
                    except TimeoutError as exc:
                        raise TransientError(f"{what} timed out after {step_timeout:g}s") from exc
        except RetryError as exc:
            last = exc.last_attempt.exception()
            msg = last.message if isinstance(last, ActionError) else str(last)
            detail = dict(last.detail) if isinstance(last, ActionError) else {}
            detail["attempts"] = attempts
            raise PermanentError(f"{what} failed after {attempts} attempts: {msg}", detail) from last
        raise AssertionError("unreachable")  # pragma: no cover

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

        ``announced``: the caller already audited ``action.running``.
        """
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
        """Restore ``before`` (automatic after failed verify, or by an operator)."""
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
