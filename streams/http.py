"""The worker's HTTP surface, up from process start (docs/api.md).

Endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``POST /api/v1/alerts``
(Alertmanager webhook receiver), ``POST /api/v1/write`` (Prometheus remote write,
``streams.remote_write``), the approvals API and
``/api/v1/openapi.json``. Served by aiohttp in the worker's event loop,
independent of Faust's own web server (which only starts after table
recovery); ``streams.worker.run`` builds it with :func:`build` and starts it
with :func:`start` before Faust.

The HTTP app owns its own Kafka clients: one long-lived idempotent producer
(acks=all) for alerts, approval decisions and audit entries of refused
requests, and one consumer that folds the audit topic for the approvals view.
Both start lazily and are recreated after a failure, so the API recovers by
itself when the broker comes back.

Auth: every state-changing endpoint calls :meth:`Api.authorize` with the role
it needs (``healer.identity``: ingest, approve, operate, admin); the bearer
token names an identity and the audited actor is ``user:<identity>``, never
what the body says. Every refused state-changing request is audited as
``event.rejected`` through the refusal rate limit (``healer.refusals``): a
flood costs a bounded number of audit records. The presented token is never
logged or audited. Limits: body read deadline (:meth:`Api.read_body`); the
connection cap and header deadline live in ``streams.listener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from healer.approvals import TERMINAL, Approval, ApprovalError, check_decidable, fold
from healer.audit import AuditEntry, for_event
from healer.chain import authentic
from healer.commands import sign
from healer.identity import Identity, Refusal, Role, TokenTable
from healer.identity import authorize as may_call
from healer.ingest import MAX_RECORD_BYTES, Rejected, decode_json, parse_alerts, partition_key
from healer.keys import Key, Keyring
from healer.logs import redact
from healer.models import EventRef
from healer.refusals import RefusalRule, RefusalState, Summary, admit, close, flush_all
from healer.wire import AuditBatch, encode
from streams.client import security
from streams.codec import dumps
from streams.listener import LINGER_S, GuardedSite, HttpLimits
from streams.openapi import document
from streams.remote_write import RemoteWrite

if TYPE_CHECKING:
    from healer.settings import Settings
    from streams.app import HealerApp

log = logging.getLogger("healer.http")

PUBLISH_TIMEOUT = 10.0  # seconds for the broker to ack an accepted request
AUDIT_TIMEOUT = 3.0  # seconds for the audit entry of a refused request
BROKER_CHECK_INTERVAL = 5.0
ACTION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
MAX_REASON = 2000
APPROVAL_KINDS = {"action.pending_approval", *TERMINAL}
REASON_KIND_RE = re.compile(r"[A-Za-z0-9 -]{1,60}")
REFUSAL_FLUSH_INTERVAL = 1.0  # seconds between checks whether a refusal window has ended

API_KEY: web.AppKey[Api] = web.AppKey("api")  # the Api behind an application (tests use it)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BrokerUnavailable(RuntimeError):
    """Kafka did not answer (in time); the API answers 503 so clients retry."""


def _now() -> datetime:
    return datetime.now(UTC)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


# ---------------------------------------------------------------- Kafka clients


class Publisher:
    """One long-lived idempotent producer (acks=all), started lazily, recreated after failures."""

    def __init__(self, bootstrap: str, timeout: float = PUBLISH_TIMEOUT) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def _get(self, timeout: float) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, **security(), acks="all", enable_idempotence=True,
                    request_timeout_ms=int(max(timeout, 1.0) * 1000), linger_ms=2,
                )
                try:
                    await asyncio.wait_for(producer.start(), timeout=timeout)
                except (KafkaError, OSError, TimeoutError) as exc:
                    self._discard(producer)
                    raise BrokerUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc!r}") from exc
                self._producer = producer
            return self._producer

    def _discard(self, producer: AIOKafkaProducer) -> None:
        # stopping flushes and may wait on a dead broker: never on the request path
        async def stop() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=10.0)

        task = asyncio.get_running_loop().create_task(stop())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def send(self, topic: str, records: list[tuple[bytes | None, bytes]], timeout: float | None = None,
                   signer: Key | None = None, kind: str | None = None) -> None:
        """Produce ``(key, value)`` records in order; return once the broker acked all of them.
        With ``signer``, each record is signed for the command topic ``kind`` (healer.commands)."""
        limit = self.timeout if timeout is None else timeout
        producer = await self._get(limit)

        async def go() -> None:
            futs = [await producer.send(topic, value, key=key,
                                        headers=sign(signer, kind, value) if signer and kind else None)
                    for key, value in records]
            await asyncio.gather(*futs)

        try:
            await asyncio.wait_for(go(), timeout=limit)
        except (KafkaError, OSError, TimeoutError) as exc:
            async with self._lock:
                if self._producer is producer:
                    self._producer = None
                    self._discard(producer)
            what = "timed out" if isinstance(exc, TimeoutError) else repr(exc)
            raise BrokerUnavailable(f"Kafka at {self.bootstrap} did not ack within {limit:g}s: {what}") from exc

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                self._discard(self._producer)
                self._producer = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class ApprovalView:
    """Approval states folded from the audit topic (healer.approvals.fold).

    Reads incrementally: each :meth:`sync` catches up to the end offsets it
    sees when called, so an answer includes every record acked before the
    request. Only approval-relevant records are kept, and with an audit key
    only records a sealer MAC'd (healer.chain.authentic): a forged
    ``action.pending_approval`` written to the audit topic is never listed, so
    it cannot be approved.
    """

    def __init__(self, bootstrap: str, topic: str, keyring: Keyring | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.keyring = keyring if keyring is not None and keyring.with_role("audit") else None
        self._consumer: AIOKafkaConsumer | None = None
        self._records: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    async def sync(self, timeout: float = PUBLISH_TIMEOUT) -> dict[str, Approval]:
        async with self._lock:
            try:
                await asyncio.wait_for(self._catch_up(), timeout=timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                await self._reset()
                raise BrokerUnavailable(f"cannot read {self.topic} from Kafka at {self.bootstrap}: {exc!r}") from exc
            return fold(self._records)

    async def _catch_up(self) -> None:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, **security(), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
            self._records = []
        c = self._consumer
        parts = c.partitions_for_topic(self.topic)
        if not parts:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(self.topic) or set()
        if not parts:
            return  # no audit topic yet: nothing pending
        tps = {TopicPartition(self.topic, p) for p in parts}
        if tps != c.assignment():
            new = tps - c.assignment()
            c.assign(sorted(tps))
            if new:
                await c.seek_to_beginning(*new)
        end = await c.end_offsets(sorted(tps))
        while True:
            behind = [tp for tp in tps if await c.position(tp) < end[tp]]
            if not behind:
                return
            batch = await c.getmany(*behind, timeout_ms=500, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    self._keep(m.value)

    def _keep(self, raw: bytes | None) -> None:
        try:
            rec = json.loads(raw or b"")
        except ValueError:
            return
        if isinstance(rec, dict) and rec.get("kind") in APPROVAL_KINDS:
            if self.keyring is not None and not authentic(rec, self.keyring):
                log.warning("approvals view: skipped an %s record for %s that no sealer wrote",
                            rec.get("kind"), str(rec.get("action_id"))[:80])
                return
            self._records.append(rec)

    async def _reset(self) -> None:
        c, self._consumer = self._consumer, None
        if c is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.stop(), timeout=5.0)

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


class BrokerCheck:
    """The liveness view of the broker: a bootstrap every few seconds from process start."""

    def __init__(self, bootstrap: str, interval: float = BROKER_CHECK_INTERVAL) -> None:
        self.bootstrap = bootstrap
        self.interval = interval
        self.ok: bool | None = None  # None: the first check has not finished yet
        self.checked_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, **security(), request_timeout_ms=4000)
        try:
            await asyncio.wait_for(client.bootstrap(), timeout=4.5)
            ok = True
        except (KafkaError, OSError, TimeoutError):
            ok = False
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        self.ok, self.checked_at = ok, _now()
        return ok

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# ---------------------------------------------------------------- auth


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def limits_from(settings: Settings) -> HttpLimits:
    return HttpLimits(
        header_timeout=settings.seconds("http_header_timeout"), idle_timeout=settings.seconds("http_idle_timeout"),
        body_timeout=settings.seconds("http_body_timeout"), max_connections=settings.http_max_connections,
    )


def _reason_kind(reason: str) -> str:
    """The fixed leading words of an ingest rejection ("schema", "not JSON"): a bounded audit reason."""
    m = REASON_KIND_RE.match(reason)
    return m.group(0).strip() if m else "invalid"


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class Api:
    """Handlers and the clients they share; one per HealerApp."""

    def __init__(self, healer: HealerApp, publish_timeout: float = PUBLISH_TIMEOUT) -> None:
        self.healer = healer
        self.names = healer.names
        self.metrics = healer.metrics
        settings = healer.settings
        self.tokens: TokenTable = settings.token_table()
        redact(*self.tokens.secrets)
        self.limits = limits_from(settings)
        self.refusal_rule: RefusalRule = settings.refusal_rule()
        self.refusals = RefusalState()
        self.site: GuardedSite | None = None  # set by start(); in-process tests serve without it
        self.publisher = Publisher(healer.bootstrap, publish_timeout)
        # the worker's key signs what the API writes to the approvals and audit-log topics
        self.signer: Key | None = healer.keyring.signing_key()
        self.view = ApprovalView(healer.bootstrap, healer.names.audit, healer.keyring)
        self.broker = BrokerCheck(healer.bootstrap)
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        who = ", ".join(f"{i.name} ({'+'.join(sorted(i.roles))})" for i in self.tokens.identities())
        log.info("HTTP identities: %s", who or "none")
        if self.tokens.allow_anonymous:
            log.warning("insecure_no_auth: POST /api/v1/alerts accepts requests without a token "
                        "(audited as user:anonymous); approvals still need a token")

    # ------------------------------------------------------------ auth + audit

    async def authorize(
        self, request: web.Request, role: Role, what: str | None = None, action_id: str | None = None,
    ) -> Identity | web.Response:
        """The caller's identity when it holds ``role``; else the (audited) 401/403 answer to return.

        ``what`` names the attempt in the audit reason (default: method and route).
        """
        got = may_call(self.tokens, bearer_token(request), role, what or f"{request.method} {_route(request)}")
        if isinstance(got, Refusal):
            return await self.refuse(request, got.status, got.message, got.reason, action_id, got.identity)
        return got

    async def refuse(
        self, request: web.Request, status: int, message: str, reason: str, action_id: str | None = None,
        identity: Identity | None = None, close_connection: bool = False,
    ) -> web.Response:
        """Answer a refused state-changing request and audit it as ``event.rejected`` (never the token).

        ``reason`` must come from a small set (fixed text, configured identity names): the refusal
        rate limit counts by it. The first refusals of a window are audited one by one, before
        the answer; later ones only in the window's aggregated entry.
        """
        remote = request.remote
        if self._admit(reason, remote):
            detail: dict[str, Any] = {
                "http": {"method": request.method, "path": request.path[:300], "status": status},
                "remote": remote,
            }
            entry = self._rejected(reason, detail, action_id, identity)
            log.warning("refused %s %s: %s", request.method, request.path[:300], reason,
                        extra={"action_id": entry.action_id, "event_id": entry.event.id if entry.event else None})
            await self._audit(entry)
        headers = {"WWW-Authenticate": 'Bearer realm="healer"'} if status == 401 else None
        resp = web.json_response({"error": message}, status=status, headers=headers)
        if close_connection:
            resp.force_close()
        return resp

    def connection_closed(self, kind: str, reason: str, remote: str | None) -> None:
        """The listener refused or closed a connection (streams.listener): count and audit it."""
        self.metrics.http_connections_closed.labels(reason=kind).inc()
        if self._admit(reason, remote):
            log.warning("%s (remote %s)", reason, remote)
            self._spawn(self._audit(self._rejected(reason, {"remote": remote}, None, None)))

    def _admit(self, reason: str, remote: str | None) -> bool:
        self.refusals, audit_now, summary = admit(self.refusals, self.refusal_rule, _now(), reason, remote)
        if summary is not None:
            self._spawn(self._audit_summary(summary))
        return audit_now

    def _rejected(self, reason: str, detail: dict[str, Any], action_id: str | None,
                  identity: Identity | None) -> AuditEntry:
        entry = for_event("event.rejected", EventRef(id=f"http:{uuid.uuid4().hex}"), _now(),
                          reason=reason, detail=detail)
        update: dict[str, Any] = {}
        if action_id and ACTION_ID_RE.match(action_id):
            update["action_id"] = action_id  # so `audit show ID` has it
        if identity is not None:
            update["actor"] = identity.actor
        return entry.model_copy(update=update) if update else entry

    async def _audit(self, entry: AuditEntry) -> None:
        try:
            # keyed like the worker's entries (healer.partitioner): one action's records share a chain
            await self.publisher.send(self.names.audit_log,
                                      [(entry.routing_key().encode(), encode(AuditBatch(entries=[entry.body()])))],
                                      timeout=AUDIT_TIMEOUT, signer=self.signer, kind="audit-log")
        except BrokerUnavailable as exc:
            log.error("could not audit a refused request (%s): %s", entry.reason, exc)

    async def _audit_summary(self, summary: Summary) -> None:
        log.warning("%s: by reason %s, by remote %s", summary.reason(), dict(summary.by_reason),
                    dict(summary.by_remote))
        await self._audit(for_event("event.rejected", EventRef(id=f"http:refusals:{uuid.uuid4().hex}"), _now(),
                                    reason=summary.reason(), detail=summary.detail()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_refusals(self) -> None:
        while True:
            await asyncio.sleep(REFUSAL_FLUSH_INTERVAL)
            self.refusals, summary = close(self.refusals, self.refusal_rule, _now())
            if summary is not None:
                self._spawn(self._audit_summary(summary))

    async def read_body(
        self, request: web.Request, identity: Identity | None = None, action_id: str | None = None,
    ) -> bytes | web.Response:
        """The request body, received within ``http_body_timeout`` and at most ``client_max_size``;
        else the (audited) 408 or 413 answer to return (a 408 also closes the connection)."""
        limit = self.limits.body_timeout
        try:
            async with asyncio.timeout(limit):
                return await request.read()
        except TimeoutError:
            return await self.refuse(request, 408, f"request body not received within {limit:g}s",
                                     f"request body not received within {limit:g}s (http_body_timeout)",
                                     action_id, identity, close_connection=True)
        except web.HTTPRequestEntityTooLarge:
            return await self.refuse(request, 413, f"body larger than {request.client_max_size} bytes",
                                     "request body too large", action_id, identity, close_connection=True)

    # ------------------------------------------------------------ health

    async def healthz(self, request: web.Request) -> web.Response:
        ok = self.broker.ok
        if ok is None:
            return web.json_response({"status": "starting", "broker": None})
        body = {"status": "ok" if ok else "degraded", "broker": ok,
                "checked_at": self.broker.checked_at.isoformat() if self.broker.checked_at else None}
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        r = self.healer.readiness()
        return web.json_response(r, status=200 if r["ready"] else 503)

    async def metrics_text(self, request: web.Request) -> web.Response:
        await self.metrics.refresh(self.healer)
        body, content_type = self.metrics.exposition()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())

    # ------------------------------------------------------------ alerts

    async def alerts(self, request: web.Request) -> web.Response:
        who = await self.authorize(request, "ingest", "alert webhook")
        if isinstance(who, web.Response):
            return who
        raw = await self.read_body(request, who)
        if isinstance(raw, web.Response):
            return raw
        data = decode_json(raw)
        alerts = data if isinstance(data, Rejected) else parse_alerts(data)
        if isinstance(alerts, Rejected):
            status = 413 if alerts.reason.startswith("oversize") else 400
            return await self.refuse(request, status, alerts.reason,
                                     f"alert webhook payload refused: {_reason_kind(alerts.reason)}", identity=who)
        records = split_by_target(raw, data, [a.labels for a in alerts])
        try:
            await self.publisher.send(self.names.alerts, records)
        except BrokerUnavailable as exc:
            log.warning("alert webhook: %s", exc)
            return web.json_response({"error": f"not accepted: {exc}"}, status=503, headers={"Retry-After": "5"})
        return web.json_response({"status": "accepted", "alerts": len(alerts), "records": len(records)})

    # ------------------------------------------------------------ approvals

    async def list_approvals(self, request: web.Request) -> web.Response:
        show_all = request.query.get("all", "").lower() in ("1", "true", "yes")
        try:
            approvals = await self.view.sync()
        except BrokerUnavailable as exc:
            return _error(503, str(exc))
        rows = [a.to_json() for a in approvals.values() if show_all or a.state == "pending"]
        return web.json_response({"approvals": rows})

    async def decide(self, request: web.Request) -> web.Response:
        """Approve or deny as the token's identity; an ``actor`` in the body is ignored."""
        action_id = request.match_info["action_id"]
        decision = request.match_info["decision"]
        aid = action_id if ACTION_ID_RE.match(action_id) else None
        who = await self.authorize(request, "approve", decision, aid)
        if isinstance(who, web.Response):
            return who

        async def bad(status: int, message: str, why: str) -> web.Response:
            return await self.refuse(request, status, message, f"{decision} refused: {why}", aid, who)

        if aid is None:
            return await bad(400, "action_id must be 1-200 characters of A-Z a-z 0-9 . _ : -", "malformed action id")
        raw = await self.read_body(request, who, aid)
        if isinstance(raw, web.Response):
            return raw
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return await bad(400, "body must be a JSON object: {\"reason\": ...}", "body is not a JSON object")
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            return await bad(400, f"reason must be a string of at most {MAX_REASON} characters", "bad reason")
        if decision == "deny" and not (reason or "").strip():
            return await bad(400, "reason is required to deny", "no reason given")
        try:
            approvals = await self.view.sync()
        except BrokerUnavailable as exc:
            return _error(503, str(exc))
        try:
            check_decidable(approvals, action_id)
        except ApprovalError as exc:
            if action_id not in approvals:
                return await bad(404, str(exc), "no such approval")
            return await bad(409, str(exc), "already decided")
        # the approvals topic carries the bare identity; the worker audits it as user:<identity>
        msg = {"action_id": action_id, "decision": decision, "actor": who.name, "reason": reason or None}
        try:
            await self.publisher.send(self.names.approvals, [(action_id.encode(), dumps(msg))],
                                      signer=self.signer, kind="approvals")
        except BrokerUnavailable as exc:
            return _error(503, str(exc))
        log.info("%s sent by %s", decision, who.actor, extra={"action_id": action_id})
        return web.json_response({**msg, "actor": who.actor, "status": "sent"}, status=202)

    # ------------------------------------------------------------ lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self.broker.start()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_refusals())

    async def on_cleanup(self, app: web.Application) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        summary = flush_all(self.refusals, self.refusal_rule)
        self.refusals = RefusalState()
        if summary is not None:
            self._spawn(self._audit_summary(summary))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.stop()
        await self.view.close()
        await self.publisher.close()


def split_by_target(raw: bytes, data: Any, labels: list[dict[str, str]]) -> list[tuple[bytes | None, bytes]]:
    """Kafka records for one webhook delivery, keyed by ``healer.ingest.partition_key``.

    One target (the usual case): the raw payload as received, keyed by it. A
    payload whose alerts name several targets is split into one payload per
    key, each with the original envelope and its alerts in their original
    order, so every target's alerts stay on one partition, in order.
    """
    keys = [partition_key(lb) for lb in labels]
    if len(set(keys)) <= 1:
        return [(keys[0] if keys else None, raw)]
    groups: dict[bytes, list[Any]] = {}
    for key, alert in zip(keys, data["alerts"], strict=True):
        groups.setdefault(key, []).append(alert)
    return [(key, dumps({**data, "alerts": alerts})) for key, alerts in groups.items()]


def _counting(api: Api) -> Middleware:
    metrics = api.metrics

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if api.site is not None:
            api.site.request_started(request.transport)  # headers are in: the header deadline is met
        route = _route(request)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            metrics.http_requests.labels(route=route, code=str(exc.status)).inc()
            raise
        except Exception:
            log.exception("HTTP handler failed: %s %s", request.method, request.path[:300])
            metrics.http_requests.labels(route=route, code="500").inc()
            return _error(500, "internal error; see the worker log")
        metrics.http_requests.labels(route=route, code=str(resp.status)).inc()
        return resp

    return middleware


def build(healer: HealerApp, publish_timeout: float = PUBLISH_TIMEOUT) -> web.Application:
    api = Api(healer, publish_timeout)
    app = web.Application(client_max_size=MAX_RECORD_BYTES, middlewares=[_counting(api)])
    app[API_KEY] = api
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/metrics", api.metrics_text)
    app.router.add_get("/api/v1/openapi.json", api.openapi)
    app.router.add_post("/api/v1/alerts", api.alerts)
    app.router.add_post("/api/v1/write", RemoteWrite(api).handle)
    app.router.add_get("/api/v1/approvals", api.list_approvals)
    app.router.add_post(r"/api/v1/approvals/{action_id}/{decision:approve|deny}", api.decide)
    app.on_startup.append(api.on_startup)
    app.on_cleanup.append(api.on_cleanup)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on host:port with the limits of its settings (streams.listener)."""
    api = app[API_KEY]
    limits = api.limits
    # keepalive_timeout: a kept-alive connection idle this long (or slow to send the next
    # request's headers) is closed; the first request is held to the header deadline.
    # lingering_time: the unread rest of a refused request's body is discarded for at most
    # LINGER_S (so the client reads the answer, not a reset), then the connection closes
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.idle_timeout, lingering_time=LINGER_S)
    await runner.setup()
    site = GuardedSite(runner, host, port, limits, api.connection_closed)
    await site.start()
    api.site = site
    log.info("http listening on %s:%s (at most %d connections; timeouts: headers %gs, idle %gs, body %gs)",
             host, site.port, limits.max_connections, limits.header_timeout, limits.idle_timeout,
             limits.body_timeout)
    return runner
