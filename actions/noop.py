"""``healer.noop``: an executor that changes nothing; for demos, tests, benches.

It can be told to fail in ``execute`` or ``verify`` so the runner's failure
and rollback paths are exercised without a real system.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from actions.base import ActionContext, Executor, PermanentError, VerificationFailed
from healer.catalog import NoopParams


class NoopExecutor(Executor):
    name: ClassVar[str] = "healer.noop"
    reversible: ClassVar[bool] = True

    def _params(self, ctx: ActionContext) -> NoopParams:
        assert isinstance(ctx.params, NoopParams)
        return ctx.params

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        return {"target": ctx.target.brief()}

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {"would": "nothing", "message": self._params(ctx).message}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = self._params(ctx)
        if p.duration_seconds:
            await asyncio.sleep(p.duration_seconds)
        if p.fail == "execute":
            raise PermanentError("noop told to fail in execute")
        return {"done": True, "message": p.message}

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        if self._params(ctx).fail == "verify":
            raise VerificationFailed("noop told to fail verification")
        return {"verified": True}

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {"restored": before}
