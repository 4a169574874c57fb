"""``webhook.notify`` against a real local aiohttp server, through the real runner.

200 -> verified; 500 then 200 -> retried and verified; 429 with Retry-After ->
transient with the delay; 404 -> failed at once (one request); a server slower
than ``timeout_seconds`` -> transient timeouts until the runner gives up; the
body carries the action and never the configured headers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from actions.base import ActionContext, PermanentError, TransientError
from actions.registry import ExecutorRegistry
from actions.runner import RetryPolicy, Runner
from actions.webhook import WebhookExecutor, retry_after_seconds
from healer.audit import AuditEntry
from healer.catalog import WebhookParams
from healer.models import ActionRequest, EventRef, Target

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, max_seconds=20, initial_wait=0.05, max_wait=0.1, step_timeout=10)


@dataclass
class Hook:
    """A real HTTP server whose answers the test scripts, one per request."""

    answers: list[Callable[[], Awaitable[web.Response]]]
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@asynccontextmanager
async def hook_server(*answers: Callable[[], Awaitable[web.Response]]) -> AsyncIterator[Hook]:
    hook = Hook(list(answers))

    async def handle(request: web.Request) -> web.Response:
        hook.seen.append({"headers": dict(request.headers), "body": await request.json()})
        answer = hook.answers.pop(0) if len(hook.answers) > 1 else hook.answers[0]
        return await answer()

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        await runner.cleanup()


def status(code: int, text: str = "", headers: dict[str, str] | None = None) -> Callable[[], Awaitable[web.Response]]:
    async def answer() -> web.Response:
        return web.Response(status=code, text=text, headers=headers)
    return answer


def slow(seconds: float) -> Callable[[], Awaitable[web.Response]]:
    async def answer() -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(status=200)
    return answer


def request(url: str, **with_: Any) -> ActionRequest:
    return ActionRequest(
        action_id="a-webhook-1", use="webhook.notify",
        target=Target(kind="Deployment", namespace="llm-prod", name="vllm"),
        with_={"url": url, **with_}, policy="notify-oncall", revision="r1",
        event=EventRef(id="healer.alerts:0:7", fingerprint="fp1"),
        requested_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )


async def run(req: ActionRequest) -> tuple[Any, list[AuditEntry]]:
    entries: list[AuditEntry] = []

    async def sink(e: AuditEntry) -> None:
        entries.append(e)

    ex = WebhookExecutor()
    reg = ExecutorRegistry()
    reg.register(ex)
    try:
        return await Runner(reg, sink, retry=FAST).run(req), entries
    finally:
        await reg.close()


def test_200_is_verified_and_body_has_no_secrets() -> None:
    async def go() -> None:
        async with hook_server(status(204)) as hook:
            out, entries = await run(request(hook.url, headers={"Authorization": "Bearer hook-secret-xyz"}))
            assert out.status == "verified", out.reason
            assert out.after == {"status": 204, "delivered": True}
            assert [e.kind for e in entries] == ["action.running", "action.succeeded", "action.verified"]
            assert len(hook.seen) == 1
            got = hook.seen[0]
            assert got["headers"]["Authorization"] == "Bearer hook-secret-xyz"
            assert got["headers"]["Idempotency-Key"] == "a-webhook-1"
            body = got["body"]
            assert body["action_id"] == "a-webhook-1" and body["use"] == "webhook.notify"
            assert body["policy"] == {"name": "notify-oncall", "revision": "r1"}
            assert body["target"] == {"kind": "Deployment", "namespace": "llm-prod", "name": "vllm"}
            assert body["event"]["id"] == "healer.alerts:0:7"
            assert body["time"].endswith("Z")
            assert "hook-secret-xyz" not in json.dumps(body)
    asyncio.run(go())


def test_500_then_200_is_retried() -> None:
    async def go() -> None:
        async with hook_server(status(500, "busy"), status(200)) as hook:
            out, _ = await run(request(hook.url))
            assert out.status == "verified", out.reason
            assert len(hook.seen) == 2
    asyncio.run(go())


def test_404_fails_at_once_with_status_and_excerpt() -> None:
    async def go() -> None:
        async with hook_server(status(404, "no such hook here")) as hook:
            out, entries = await run(request(hook.url))
            assert out.status == "failed"
            assert "HTTP 404" in (out.reason or "") and "no such hook" in (out.reason or "")
            assert out.detail["status"] == 404 and out.detail["body_excerpt"] == "no such hook here"
            assert len(hook.seen) == 1  # permanent: not retried
            assert entries[-1].kind == "action.failed"
    asyncio.run(go())


def test_timeout_is_transient_and_retried_until_the_runner_gives_up() -> None:
    async def go() -> None:
        async with hook_server(slow(2.0)) as hook:
            out, _ = await run(request(hook.url, timeout_seconds=0.3))
            assert out.status == "failed"
            assert "timed out" in (out.reason or "") and "after 3 attempts" in (out.reason or "")
            assert len(hook.seen) == 3
    asyncio.run(go())


def test_429_retry_after_and_connection_refused_are_transient() -> None:
    async def go() -> None:
        ex = WebhookExecutor()
        try:
            async with hook_server(status(429, "slow down", {"Retry-After": "7"})) as hook:
                req = request(hook.url)
                ctx = ActionContext(request=req, params=WebhookParams.model_validate(req.with_))
                with pytest.raises(TransientError) as err:
                    await ex.execute(ctx, {})
                assert err.value.retry_after == 7.0
                url = hook.url
            # the server is gone now: connection refused
            req = request(url)
            ctx = ActionContext(request=req, params=WebhookParams.model_validate(req.with_))
            with pytest.raises(TransientError):
                await ex.execute(ctx, {})
            async with hook_server(status(302, "", {"Location": "http://elsewhere/"})) as hook:
                req = request(hook.url)
                ctx = ActionContext(request=req, params=WebhookParams.model_validate(req.with_))
                with pytest.raises(PermanentError, match="redirects are not followed"):
                    await ex.execute(ctx, {})
                plan = await ex.plan(ctx, {})
                assert plan["would"] == "POST" and plan["body"]["action_id"] == "a-webhook-1"
        finally:
            await ex.close()
    asyncio.run(go())


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Sat, 21 Nov 2026 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("99999") == 300.0
