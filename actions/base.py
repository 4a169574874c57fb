"""The executor interface and the two error families the runner understands.

Executors raise :class:`TransientError` (the runner retries with backoff) or
:class:`PermanentError` (the runner fails at once, with the message in the
audit). The runner, not the executor, decides whether to retry, fail or roll
back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from healer.catalog import Params
from healer.models import ActionRequest, Target


class ActionError(Exception):
    """Base of executor errors; ``detail`` goes to the audit record."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


class TransientError(ActionError):
    """Worth retrying: timeouts, connection refused, 429, 5xx, 409 conflicts."""

    def __init__(
        self, message: str, detail: dict[str, Any] | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


class PermanentError(ActionError):
    """Retrying cannot help: 403/404/422, unknown model, bad config, refused by a guard."""


class ExecuteFailed(ActionError):
    """The change was attempted and refused or broke part-way; the target may
    differ from the snapshot, so the runner rolls back (when the policy allows)."""

    def __init__(self, message: str, after: dict[str, Any], detail: dict[str, Any] | None = None) -> None:
        super().__init__(message, detail)
        self.after = after


class VerificationFailed(ActionError):
    """The action ran but its effect did not show within the verify timeout."""


class NotReversible(PermanentError):
    """The action records nothing to restore (e.g. a rollout restart)."""


@dataclass
class ActionContext:
    """What an executor gets for one attempt of one action."""

    request: ActionRequest
    params: Params
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("healer.actions"))

    @property
    def target(self) -> Target:
        return self.request.target

    @property
    def action_id(self) -> str:
        return self.request.action_id

    @property
    def dry_run(self) -> bool:
        return self.request.dry_run


class Executor(ABC):
    """One catalog action. Subclasses set ``name`` to the catalog name.

    ``snapshot`` reads what the action will change; ``plan`` says what it would
    do (dry run); ``execute`` changes it and returns the state after;
    ``verify`` waits until the effect shows (or raises VerificationFailed);
    ``rollback`` restores the snapshot.
    """

    name: ClassVar[str]
    reversible: ClassVar[bool] = True

    @abstractmethod
    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]: ...

    @abstractmethod
    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]: ...

    @abstractmethod
    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]: ...

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        raise NotReversible(f"{self.name} is not reversible: nothing was recorded to restore")

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Check the restore took; by default the rollback's own read-back is enough."""
        return restored

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release clients; called once when the worker stops."""


async def poll_until(
    check: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
) -> dict[str, Any]:
    """Call ``check`` until it returns ``(True, detail)``; VerificationFailed on timeout.

    Transient errors inside ``check`` are tolerated until the deadline: a
    verification that cannot reach the API is a verification that has not
    succeeded yet.
    """
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    last_error: str | None = None
    while True:
        try:
            ok, last = await check()
            last_error = None
            if ok:
                return last
        except TransientError as exc:
            last_error = exc.message
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = dict(last)
            if last_error:
                detail["last_error"] = last_error
            raise VerificationFailed(f"{what} not reached within {timeout:g}s", detail)
        await asyncio.sleep(min(interval, remaining))
