"""``POST /api/v1/write``: the Prometheus remote-write 1.0 receiver (docs/remote-write.md).

``streams.http.build`` registers :meth:`RemoteWrite.handle` on the worker's HTTP app. The
handler is thin: it checks the bearer token the way ``POST /api/v1/alerts`` does
(``Api.authorize`` with the webhook token: an *ingest* endpoint), the headers and the body
size, runs the pure core (``healer.remote_write``: decode, keep the series a loaded policy could
match, group into one record per destination partition) in a thread so a large request does not
stall the worker's event loop, and produces the records to ``{app}.metrics`` with the HTTP app's
idempotent producer. It answers only after the broker acked.

Status codes tell the sender what to retry: 200 done (samples no policy wants are dropped and
counted, not refused); 400 a body healer cannot use (bad snappy, bad protobuf, too large; not
retried, nothing produced, audited as ``event.rejected``); 401 token; 415 wrong encoding or
protocol version; 503 + Retry-After when the broker is down or did not ack (retried).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from healer import remote_write as core
from healer.identity import Identity
from healer.ingest import Rejected
from streams import client

if TYPE_CHECKING:
    from streams.http import Api

log = logging.getLogger("healer.remote_write")

# aiokafka's default max_request_size: a record (value, key, overhead) must fit in one request
PRODUCER_MAX_REQUEST_BYTES = 1024 * 1024
PARTITIONS_TTL = 60.0  # seconds a looked-up partition count of {app}.metrics is reused
PARTITIONS_TIMEOUT = 5.0
CHUNK = 64 * 1024


class PartitionCount:
    """The partition count of ``{app}.metrics`` from the cluster's metadata, cached for a minute.

    A topic that does not exist yet is about to be created by the worker with
    ``topic_partitions``: that count is used and not cached.
    """

    def __init__(self, bootstrap: str, topic: str, default: int, ttl: float = PARTITIONS_TTL) -> None:
        self.bootstrap, self.topic, self.default, self.ttl = bootstrap, topic, default, ttl
        self._value: int | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> int:
        """Raises ``streams.client.BrokerUnavailable`` when the broker does not answer."""
        async with self._lock:
            now = asyncio.get_running_loop().time()
            if self._value is not None and now - self._at < self.ttl:
                return self._value
            found = await client.topic_partitions(self.bootstrap, [self.topic], PARTITIONS_TIMEOUT)
            if self.topic not in found:
                return self.default
            self._value, self._at = found[self.topic], now
            return self._value


def unsupported(request: web.Request) -> str | None:
    """Why the request's headers are not remote-write 1.0 (snappy protobuf), or None."""
    encoding = request.headers.get("Content-Encoding", "snappy").strip().lower()
    if encoding != "snappy":
        return f"Content-Encoding {encoding[:40]!r} is not supported: send snappy (remote write 1.0)"
    ctype = request.headers.get("Content-Type", "application/x-protobuf").lower()
    if not ctype.startswith(("application/x-protobuf", "application/octet-stream")):
        return f"Content-Type {ctype[:60]!r} is not supported: send application/x-protobuf"
    if "io.prometheus.write.v2" in ctype:
        return ("remote write 2.0 is not supported: send remote write 1.0 "
                "(Prometheus: protobuf_message: prometheus.WriteRequest)")
    version = request.headers.get("X-Prometheus-Remote-Write-Version", "0.1.0").strip()
    if not version.startswith("0.1."):
        return f"X-Prometheus-Remote-Write-Version {version[:20]!r} is not supported: this receiver speaks 0.1.0"
    return None


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be larger than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    buf = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


class RemoteWrite:
    """The handler and the state it keeps (the partition count); one per HTTP app."""

    def __init__(self, api: Api) -> None:
        self.api = api
        settings = api.healer.settings
        self.max_record_bytes = min(settings.max_record_bytes, PRODUCER_MAX_REQUEST_BYTES)
        self.partitions = PartitionCount(api.healer.bootstrap, api.names.metrics, settings.topic_partitions)

    async def handle(self, request: web.Request) -> web.Response:
        api = self.api
        who = await api.authorize(request, "ingest", "remote write")
        if isinstance(who, web.Response):
            return who
        why = unsupported(request)
        if why is not None:
            return await self.refuse(request, 415, why, who)
        limit = api.limits.body_timeout
        try:
            async with asyncio.timeout(limit):
                body = await read_body(request, core.MAX_BODY_BYTES)
        except TimeoutError:
            return await api.refuse(request, 408, f"request body not received within {limit:g}s",
                                    f"request body not received within {limit:g}s (http_body_timeout)",
                                    None, who, close_connection=True)
        if body is None:
            return await self.refuse(request, 400, f"oversize: body is larger than {core.MAX_BODY_BYTES} "
                                     "bytes (compressed); lower max_samples_per_send on the sender", who)
        sel = await asyncio.to_thread(core.select, body, api.healer.policies)
        if isinstance(sel, Rejected):
            return await self.refuse(request, 400, sel.reason, who)
        records: list[core.Record] = []
        if sel.kept:
            try:
                n = await self.partitions.get()
            except client.BrokerUnavailable as exc:
                return self.unavailable(sel, str(exc))
            records, too_large = await asyncio.to_thread(core.group, sel.kept, n, self.max_record_bytes)
            sel.counts["accepted"] -= too_large
            sel.counts["too_large"] += too_large
        if records:
            from streams.http import BrokerUnavailable  # here: streams.http imports this module

            try:
                await api.publisher.send(api.names.metrics, [(r.key, r.value) for r in records])
            except BrokerUnavailable as exc:
                return self.unavailable(sel, str(exc))
        api.metrics.remote_write(sel.counts, len(records))
        dropped = {k: v for k, v in sel.counts.items() if k != "accepted" and v}
        return web.json_response({"status": "accepted", "accepted": sel.counts["accepted"],
                                  "dropped": dropped, "records": len(records)})

    def unavailable(self, sel: core.Selection, reason: str) -> web.Response:
        log.warning("remote write: %s", reason)
        counts = {**sel.counts, "unavailable": sel.counts["accepted"], "accepted": 0}
        self.api.metrics.remote_write(counts, 0)
        return web.json_response({"error": f"not accepted: {reason}"}, status=503, headers={"Retry-After": "5"})

    async def refuse(self, request: web.Request, status: int, reason: str, who: Identity) -> web.Response:
        """A body or headers healer cannot use: answered with ``reason``, audited as
        ``event.rejected`` under its category (the text before the first colon: the refusal
        rate limit counts by audit reason, so it must come from a small set)."""
        category = reason.split(":", 1)[0][:80]
        return await self.api.refuse(request, status, reason, f"remote write refused: {category}", None, who)
