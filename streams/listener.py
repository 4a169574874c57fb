"""The worker's HTTP listener: a connection cap and a deadline for request headers.

aiohttp bounds header sizes but not how many connections stay open or how
long a client may take to send its first request (a connection that never
sends one stayed open for an hour). :class:`GuardedSite` is an aiohttp site
whose protocol factory refuses connections beyond ``max_connections`` (a
``503`` and close) and closes a connection that has not delivered complete
request headers ``header_timeout`` after it opened. Later requests on a
kept-alive connection are bounded by aiohttp's ``keepalive_timeout`` (the
idle timeout), request bodies by ``streams.http.Api.read_body``.

``streams.http.start`` builds it; the HTTP app's middleware calls
:meth:`GuardedSite.request_started` so the deadline spares a connection
whose request is being handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("healer.http")

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\nContent-Length: 60\r\n\r\n"
        b'{"error": "too many open connections; retry in a second"}  \n')


LINGER_S = 2.0  # at most this long to let a refused client read the 503


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    body_timeout: float = 30.0
    max_connections: int = 256


# (kind: limit | header_timeout, reason, remote address) of a connection refused or closed
OnClosed = Callable[[str, str, str | None], None]


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class _Busy(asyncio.Protocol):
    """Answers 503 and closes: the connection cap is reached.

    Closing a socket with unread input makes the kernel send a reset, which can destroy
    the answer before the client reads it; so the write side is shut first and input is
    discarded until the client closes or ``LINGER_S`` passes.
    """

    def __init__(self, on_closed: OnClosed, limit: int) -> None:
        self.on_closed = on_closed
        self.limit = limit
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY)
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_S, transport.abort)
        self.on_closed("limit", f"connection refused: {self.limit} connections open (http_max_connections)",
                       _peer(transport))

    def data_received(self, data: bytes) -> None:
        pass  # discarded: see the class docstring

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted and held to the header deadline."""

    def __init__(self, site: GuardedSite, inner: Any) -> None:
        self.site = site
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.started = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.site._by_transport[transport] = self
        self._deadline = asyncio.get_running_loop().call_later(self.site.limits.header_timeout, self._expire)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site._open -= 1
        if self._deadline is not None:
            self._deadline.cancel()
        if self.transport is not None:
            self.site._by_transport.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _expire(self) -> None:
        self._deadline = None
        if self.started or self.transport is None or self.transport.is_closing():
            return
        self.site.header_timeouts += 1
        self.site.on_closed("header_timeout", f"request headers not received within {self.site.limits.header_timeout:g}s "
                            "(http_header_timeout)", _peer(self.transport))
        self.transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site of an aiohttp runner with the connection cap and the header deadline."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: HttpLimits,
                 on_closed: OnClosed, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self.host, self.requested_port, self.limits, self.on_closed = host, port, limits, on_closed
        self._open = 0  # counted when the protocol is made: accepts batch before connection_made
        self._by_transport: dict[asyncio.BaseTransport, _Guarded] = {}
        self._listening: asyncio.Server | None = None
        self.refused = 0
        self.header_timeouts = 0

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def port(self) -> int:
        if self._listening is not None and self._listening.sockets:
            return int(self._listening.sockets[0].getsockname()[1])
        return self.requested_port

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._listening = await loop.create_server(self._protocol, self.host, self.requested_port,
                                                   backlog=self._backlog, reuse_address=True)
        self._server = self._listening  # BaseSite.stop() closes it

    def _protocol(self) -> asyncio.Protocol:
        if self._open >= self.limits.max_connections:
            self.refused += 1
            return _Busy(self.on_closed, self.limits.max_connections)
        server = self._runner.server
        assert server is not None, "runner.setup() runs before the site starts"
        self._open += 1
        return _Guarded(self, server())

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """Headers of a request arrived on this connection: the header deadline no longer applies."""
        guarded = self._by_transport.get(transport) if transport is not None else None
        if guarded is not None:
            guarded.started = True
