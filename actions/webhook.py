"""``webhook.notify``: POST a JSON notification about an action to an HTTP endpoint.

Registered by ``streams.worker.build_registry``; driven by ``actions.runner``.
The body describes the action (id, policy, target, event, time) and never the
params' headers, which may carry the receiver's credentials. Not reversible: a
sent notification cannot be unsent. Verification is the 2xx answer itself,
recorded in ``after`` by ``execute``.

Errors: timeouts, connection errors, 429 and 5xx are transient (the runner
retries; ``Retry-After`` is passed on as ``retry_after``); redirects and other
4xx are permanent (redirects are not followed: the policy names the final URL).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp

from actions.base import (
    ActionContext,
    Executor,
    PermanentError,
    TransientError,
    VerificationFailed,
)
from healer.catalog import WebhookParams
from healer.timeutil import format_time

BODY_SCHEMA = "healer.webhook/v1"
EXCERPT_CHARS = 300
MAX_RETRY_AFTER_SECONDS = 300.0


def _now() -> datetime:
    return datetime.now(UTC)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or _now())).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER_SECONDS)


def notification(ctx: ActionContext, at: datetime) -> dict[str, Any]:
    """The JSON body sent for one action (no params: headers may hold secrets)."""
    req = ctx.request
    return {
        "schema": BODY_SCHEMA,
        "action_id": req.action_id,
        "policy": {"name": req.policy, "revision": req.revision} if req.policy else None,
        "target": req.target.brief(),
        "use": req.use,
        "event": req.event.model_dump() if req.event else None,
        "actor": req.actor,
        "dry_run": req.dry_run,
        "requested_at": format_time(req.requested_at) if req.requested_at else None,
        "time": format_time(at),
    }


class WebhookExecutor(Executor):
    name: ClassVar[str] = "webhook.notify"
    reversible: ClassVar[bool] = False

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _params(self, ctx: ActionContext) -> WebhookParams:
        if not isinstance(ctx.params, WebhookParams):
            raise PermanentError(f"webhook.notify got params of type {type(ctx.params).__name__}")
        return ctx.params

    def _client(self) -> aiohttp.ClientSession:
        # created lazily: a ClientSession belongs to the running event loop
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "healer-webhook/1"},
                connector=aiohttp.TCPConnector(limit=32),
            )
        return self._session

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        return {}

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = self._params(ctx)
        return {"would": "POST", "url": p.url, "body": notification(ctx, _now())}

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = self._params(ctx)
        body = json.dumps(notification(ctx, _now()), separators=(",", ":")).encode()
        headers = {
            **p.headers,
            "Content-Type": "application/json",
            # the runner may retry after a lost answer: receivers can drop repeats by it
            "Idempotency-Key": ctx.action_id,
            "X-Healer-Action-Id": ctx.action_id,
        }
        timeout = aiohttp.ClientTimeout(total=p.timeout_seconds)
        try:
            async with self._client().post(
                p.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                excerpt = (await resp.text(errors="replace"))[:EXCERPT_CHARS]
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise TransientError(
                f"POST to the webhook timed out after {p.timeout_seconds:g}s",
                {"timeout_seconds": p.timeout_seconds},
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"webhook url is invalid: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"POST to the webhook failed: {type(exc).__name__}: {exc}") from exc
        detail = {"status": status, "body_excerpt": excerpt}
        if 200 <= status < 300:
            return {"status": status, "delivered": True}
        if status == 429 or status >= 500:
            if retry_after is not None:
                detail["retry_after_seconds"] = retry_after
            raise TransientError(f"webhook answered HTTP {status}", detail, retry_after=retry_after)
        if 300 <= status < 400:
            raise PermanentError(
                f"webhook answered HTTP {status} (redirects are not followed): "
                "put the final URL in the policy", detail,
            )
        raise PermanentError(f"webhook answered HTTP {status}: {excerpt[:120]}", detail)

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        status = after.get("status")
        if isinstance(status, int) and 200 <= status < 300:
            return {"status": status}
        raise VerificationFailed(f"webhook delivery not confirmed (status {status})", {"status": status})

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # let the connector close its transports before the loop stops
            await asyncio.sleep(0)
        self._session = None
