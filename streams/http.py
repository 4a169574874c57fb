"""The worker's HTTP surface, up from process start: /healthz, /readyz, /metrics.

Runs on aiohttp in the worker's event loop, independent of Faust's own web
server (which only starts after table recovery).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from streams.app import HealerApp

log = logging.getLogger("healer.http")


def build(healer: HealerApp) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        ok = healer.broker_ok or (healer.app.consumer is not None and _consumer_alive(healer))
        body = {"status": "ok" if ok else "degraded", "broker": healer.broker_ok}
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(request: web.Request) -> web.Response:
        r = healer.readiness()
        return web.json_response(r, status=200 if r["ready"] else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _consumer_alive(healer: HealerApp) -> bool:
    # before the first broker check has run, the process is alive but unknown
    return False


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("http listening on %s:%s", host, port)
    return runner
