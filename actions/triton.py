"""Triton executors: ``triton.reload``, ``triton.load``, ``triton.unload``.

The runner (``actions.runner.Runner``) drives them through snapshot ->
execute -> verify -> rollback; ``streams.worker.build_registry`` registers the
list that :func:`triton_executors` returns, with the Triton auth header from
the settings. The execute stage has already checked that every server is on
the worker's ``triton_servers`` allow-list (``healer.execguard``), so the auth
header goes only to listed servers. They talk to Triton's HTTP API
(``tritonclient.http.aio``) on a ``TritonModel`` target: ``server`` or
``servers`` (URLs), ``model``, optional ``version``. A fleet is acted on one
server at a time, and stops at the first server whose load fails so a bad
version never spreads.

Behaviour that shapes the design (seen on Triton 2.51, explicit mode):

* Loading a loaded model reloads it only when its config or files changed;
  an identical load returns 200 at once and changes nothing. ``triton.reload``
  therefore loads the loaded config plus a ``healer_reload=<action id>``
  parameter (``force``, default on), which makes Triton really reload it.
* When a load fails Triton answers 400 and keeps the previous instance
  serving and READY. Readiness alone therefore cannot tell a failed reload
  from a good one: ``execute`` raises ExecuteFailed with Triton's message and
  what it did so far (``load_error``), and the runner rolls back, which
  re-reads the server: if the
  failed load left the snapshot's versions and config in place (the usual
  case), the rollback changes nothing and only verifies that the previous
  version serves; otherwise it re-loads the snapshot's config (or unloads a
  model that was not loaded before).
* A 500 "failed to poll from model repository" means an unknown model or a
  config Triton cannot parse: permanent, not retried. Other 5xx, connection
  errors and timeouts are transient. 403 (restricted API without the right
  header) and other 4xx are permanent.
* Concurrent loads of one model load it twice (2.51 queues them): every step
  on one (server, model) runs under one asyncio.Lock shared by the three
  executors, so two actions never interleave their calls on one model.

The optional auth header for ``--http-restricted-api`` is sent with every
call; its value is never logged nor put in a result or error detail.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_aio
from tritonclient.http import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from actions.base import (
    ActionContext,
    ExecuteFailed,
    Executor,
    PermanentError,
    TransientError,
    VerificationFailed,
    poll_until,
)
from healer.catalog import (
    SmokeTest,
    TritonLoadParams,
    TritonReloadParams,
    TritonUnloadParams,
)

log = logging.getLogger("healer.actions.triton")

T = TypeVar("T")

_PERMANENT_5XX = ("failed to poll from model repository",)
RELOAD_PARAMETER = "healer_reload"
_MAX_PROGRESS = 1024
_POLL_INTERVAL = 0.25


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One Triton HTTP endpoint as given in the target (``url``) and as the client wants it."""

    url: str
    hostport: str
    ssl: bool


def parse_server(url: str) -> Endpoint:
    """``http://host:port``, ``https://host:port`` or bare ``host:port``."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise PermanentError(f"server {url!r}: only http(s) Triton endpoints are supported")
    if not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise PermanentError(f"server {url!r}: give scheme://host:port without a path")
    return Endpoint(url=url, hostport=parts.netloc, ssl=parts.scheme == "https")


def target_endpoints(ctx: ActionContext) -> list[Endpoint]:
    t = ctx.target
    urls = list(t.servers or ()) or ([t.server] if t.server else [])
    if not urls:
        raise PermanentError("TritonModel target needs `server` or `servers`")
    if not t.model:
        raise PermanentError("TritonModel target needs `model`")
    seen: dict[str, Endpoint] = {}
    for u in urls:
        ep = parse_server(u)
        seen.setdefault(ep.url, ep)
    return list(seen.values())


def _model(ctx: ActionContext) -> str:
    assert ctx.target.model is not None  # checked by target_endpoints
    return ctx.target.model


def _target_version(ctx: ActionContext) -> str | None:
    v = ctx.target.version
    if v is None or v == "":
        return None
    if not str(v).isdigit() or int(v) < 1:
        raise PermanentError(f"target version {v!r} must be a positive integer")
    return str(int(v))


# --------------------------------------------------------------------------- errors


def _classify(exc: InferenceServerException, server: str, what: str) -> Exception:
    status = exc.status()
    msg = exc.message() or str(exc)
    detail: dict[str, Any] = {"server": server, "status": status, "triton_error": msg}
    text = f"{what} on {server}: HTTP {status}: {msg}"
    code = int(status) if status and str(status).isdigit() else None
    if code is None:
        return PermanentError(f"{what} on {server}: {msg}", detail)
    if code >= 500 and any(p in msg for p in _PERMANENT_5XX):
        return PermanentError(text, detail)
    if code >= 500 or code in (408, 409, 429):
        return TransientError(text, detail)
    return PermanentError(text, detail)


# --------------------------------------------------------------------------- shared state


@dataclass
class _Section:
    """One locked step on one (server, model), for proving serialisation."""

    key: tuple[str, str]
    action_id: str
    step: str
    started: float
    ended: float = 0.0


class TritonControl:
    """What the three executors share: auth, timeouts, per-(server, model) locks.

    ``timeline`` keeps the most recent locked sections (monotonic times) so a
    test or an operator can see that steps on one model never overlapped.
    """

    def __init__(
        self,
        auth_header: str | None = None,
        auth_value: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if (auth_header is None) != (auth_value is None):
            raise ValueError("give both auth_header and auth_value, or neither")
        if auth_header is not None and not auth_header.strip():
            raise ValueError("auth_header must not be empty")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.auth_header = auth_header
        self._auth_value = auth_value
        self.timeout = timeout
        self._locks: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        self.timeline: list[_Section] = []
        self._done: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def __repr__(self) -> str:  # never show the auth value
        return f"TritonControl(auth_header={self.auth_header!r}, timeout={self.timeout:g})"

    @property
    def headers(self) -> dict[str, str] | None:
        if self.auth_header is None or self._auth_value is None:
            return None
        return {self.auth_header: self._auth_value}

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        entry = self._locks.get(key)
        if entry is None or entry[0] is not loop:  # asyncio locks bind to one loop
            entry = (loop, asyncio.Lock())
            self._locks[key] = entry
        return entry[1]

    @asynccontextmanager
    async def serialised(self, server: str, model: str, action_id: str, step: str) -> AsyncIterator[None]:
        """Hold the (server, model) lock for one step and record the section."""
        key = (server, model)
        async with self._lock(key):
            section = _Section(key=key, action_id=action_id, step=step, started=time.monotonic())
            try:
                yield
            finally:
                section.ended = time.monotonic()
                self.timeline.append(section)
                del self.timeline[:-1000]

    def remember(self, action_id: str, server: str, state: dict[str, Any]) -> None:
        self._done[(action_id, server)] = state
        while len(self._done) > _MAX_PROGRESS:
            self._done.popitem(last=False)

    def recall(self, action_id: str, server: str) -> dict[str, Any] | None:
        return self._done.get((action_id, server))

    @asynccontextmanager
    async def client(self, ep: Endpoint) -> AsyncIterator[TritonHTTP]:
        raw = triton_aio.InferenceServerClient(ep.hostport, conn_timeout=self.timeout, ssl=ep.ssl)
        try:
            yield TritonHTTP(raw, ep.url, self.headers, self.timeout)
        finally:
            await raw.close()


class TritonHTTP:
    """Thin wrapper: every call has a timeout and maps errors to the runner's families."""

    def __init__(
        self,
        raw: triton_aio.InferenceServerClient,
        server: str,
        headers: dict[str, str] | None,
        timeout: float,
    ) -> None:
        self._raw = raw
        self.server = server
        self._headers = headers
        self.timeout = timeout

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        limit = timeout or self.timeout
        try:
            return await asyncio.wait_for(fn(), timeout=limit)
        except InferenceServerException as exc:
            raise _classify(exc, self.server, what) from None
        except TimeoutError:
            raise TransientError(
                f"{what} on {self.server} timed out after {limit:g}s", {"server": self.server}
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(
                f"{what} on {self.server}: cannot reach server: {type(exc).__name__}: {exc}",
                {"server": self.server},
            ) from None

    async def index(self) -> list[dict[str, Any]]:
        out = await self._call(
            "repository index", lambda: self._raw.get_model_repository_index(headers=self._headers)
        )
        return list(out or [])

    async def ready(self, model: str, version: str = "") -> bool:
        return bool(await self._call(
            "model ready", lambda: self._raw.is_model_ready(model, version, headers=self._headers)
        ))

    async def config(self, model: str) -> dict[str, Any]:
        out = await self._call(
            "model config", lambda: self._raw.get_model_config(model, headers=self._headers)
        )
        return dict(out)

    async def load(self, model: str, config: dict[str, Any] | None, timeout: float) -> None:
        body = None if config is None else json.dumps(config)
        await self._call(
            "load", lambda: self._raw.load_model(model, headers=self._headers, config=body), timeout
        )

    async def unload(self, model: str, dependents: bool, timeout: float) -> None:
        await self._call(
            "unload",
            lambda: self._raw.unload_model(model, headers=self._headers, unload_dependents=dependents),
            timeout,
        )

    async def infer(
        self, model: str, version: str, inputs: list[Any], outputs: list[Any] | None
    ) -> Any:
        return await self._call("smoke inference", lambda: self._raw.infer(
            model, inputs, model_version=version, outputs=outputs, headers=self._headers))


# --------------------------------------------------------------------------- state


def _versions(entries: Iterable[dict[str, Any]], states: tuple[str, ...]) -> list[str]:
    return sorted({str(e["version"]) for e in entries if e.get("state") in states and "version" in e},
                  key=int)


async def read_state(http: TritonHTTP, model: str) -> dict[str, Any]:
    """Repository index entries, per-version readiness and config of ``model`` on one server."""
    entries: list[dict[str, Any]] = [
        {k: e[k] for k in ("version", "state", "reason") if k in e}
        for e in await http.index()
        if e.get("name") == model
    ]
    if not entries:
        raise PermanentError(
            f"model {model!r} is not in the model repository of {http.server}",
            {"server": http.server, "model": model},
        )
    ready: dict[str, bool] = {}
    for v in _versions(entries, ("READY",)):
        ready[v] = await http.ready(model, v)
    ready_versions = [v for v, ok in ready.items() if ok]
    config: dict[str, Any] | None = None
    if ready_versions:
        try:
            config = await http.config(model)
        except PermanentError:  # unloaded between the two calls
            config = None
    return {
        "index": entries,
        "ready": ready,
        "ready_versions": ready_versions,
        "loaded": bool(ready_versions),
        "config": config,
    }


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same served versions and (when loaded) same config: nothing to restore."""
    if a.get("ready_versions") != b.get("ready_versions"):
        return False
    return not a.get("loaded") or a.get("config") == b.get("config")


# --------------------------------------------------------------------------- smoke


def _expected_array(datatype: str, shape: list[int], data: list[Any]) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        arr = np.array([d.encode() if isinstance(d, str) else d for d in data], dtype=np.object_)
    else:
        dtype = triton_to_np_dtype(datatype)
        if dtype is None:
            raise PermanentError(f"smoke test: unknown Triton datatype {datatype!r}")
        arr = np.array(data, dtype=dtype)
    try:
        return arr.reshape(shape)
    except ValueError as exc:
        raise PermanentError(f"smoke test: data does not fit shape {shape}: {exc}") from None


async def smoke_inference(http: TritonHTTP, model: str, version: str, smoke: SmokeTest) -> dict[str, Any]:
    """One inference request; VerificationFailed when an expected output is wrong."""
    inputs = []
    for i in smoke.inputs:
        inp = InferInput(i.name, list(i.shape), i.datatype)
        inp.set_data_from_numpy(_expected_array(i.datatype, i.shape, i.data), binary_data=True)
        inputs.append(inp)
    requested = [InferRequestedOutput(o.name, binary_data=True) for o in smoke.outputs] or None
    try:
        result = await http.infer(model, version, inputs, requested)
    except PermanentError as exc:  # the model rejected the request: the check failed
        raise VerificationFailed(f"smoke inference failed: {exc.message}", exc.detail) from None
    got: dict[str, Any] = {}
    for o in smoke.outputs:
        arr = result.as_numpy(o.name)
        if arr is None:
            raise VerificationFailed(
                f"smoke inference on {http.server}: output {o.name!r} missing",
                {"server": http.server, "output": o.name},
            )
        got[o.name] = {"shape": list(arr.shape)}
        if o.shape is not None and list(arr.shape) != list(o.shape):
            raise VerificationFailed(
                f"smoke inference on {http.server}: output {o.name!r} has shape "
                f"{list(arr.shape)}, expected {o.shape}",
                {"server": http.server, "output": o.name, "shape": list(arr.shape), "expected": o.shape},
            )
        if o.data is not None and not _data_matches(arr, o.data):
            raise VerificationFailed(
                f"smoke inference on {http.server}: output {o.name!r} has unexpected values",
                {"server": http.server, "output": o.name, "got": _short(arr), "expected": o.data[:16]},
            )
    return {"server": http.server, "version": version or None, "outputs": got}


def _data_matches(arr: np.ndarray[Any, Any], expected: list[Any]) -> bool:
    flat = arr.reshape(-1)
    if flat.size != len(expected):
        return False
    if flat.dtype == np.object_:
        return [x.decode() if isinstance(x, bytes) else x for x in flat.tolist()] == expected
    try:
        return bool(np.allclose(flat.astype(np.float64), np.array(expected, dtype=np.float64),
                                rtol=1e-5, atol=1e-6))
    except (TypeError, ValueError):
        return False


def _short(arr: np.ndarray[Any, Any]) -> list[Any]:
    return [x.decode(errors="replace") if isinstance(x, bytes) else x
            for x in arr.reshape(-1)[:16].tolist()]


# --------------------------------------------------------------------------- executors


class _TritonExecutor(Executor):
    """Common snapshot / rollback / verify machinery; subclasses say what to load."""

    reversible: ClassVar[bool] = True

    def __init__(self, control: TritonControl) -> None:
        self.control = control

    # -- what subclasses decide

    def _load_timeout(self, ctx: ActionContext) -> float:
        timeout = getattr(ctx.params, "timeout_seconds", None)
        return float(timeout) if timeout else self.control.timeout

    def _smoke(self, ctx: ActionContext) -> SmokeTest | None:
        smoke = getattr(ctx.params, "smoke", None)
        return smoke if isinstance(smoke, SmokeTest) else None

    @abstractmethod
    def _desired(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        """Per server: {"config": dict | None, "expect_ready": [...] | None, "exact": bool}."""

    # -- lifecycle

    async def snapshot(self, ctx: ActionContext) -> dict[str, Any]:
        model = _model(ctx)
        servers: dict[str, Any] = {}
        for ep in target_endpoints(ctx):
            async with self.control.serialised(ep.url, model, ctx.action_id, "snapshot"), \
                    self.control.client(ep) as http:
                servers[ep.url] = await read_state(http, model)
        return {"model": model, "servers": servers}

    async def plan(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        desired = self._desired(ctx, before)
        return {
            "model": _model(ctx),
            "call": self._call_name,
            "servers": {
                url: {
                    "config_override": d.get("config") is not None,
                    "version_policy": (d.get("config") or {}).get("version_policy"),
                    "expect_ready": d.get("expect_ready"),
                }
                for url, d in desired.items()
            },
        }

    _call_name: ClassVar[str] = "load"

    async def execute(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        model = _model(ctx)
        desired = self._desired(ctx, before)  # validates every server before touching any
        after: dict[str, Any] = {"model": model, "servers": {}}
        eps = target_endpoints(ctx)
        for n, ep in enumerate(eps):
            done = self.control.recall(ctx.action_id, ep.url)
            if done is not None:  # a retried execute: this server was already handled
                after["servers"][ep.url] = done
                continue
            want = desired[ep.url]
            async with self.control.serialised(ep.url, model, ctx.action_id, "execute"), \
                    self.control.client(ep) as http:
                ctx.log.info("triton %s model=%s server=%s", self._call_name, model, ep.url)
                await settle(http, model, self._load_timeout(ctx))
                error = await self._act(http, model, ctx, want)
                state = await read_state(http, model)
            entry = {**want, "state": state}
            if error is not None:
                after["load_error"] = {"server": ep.url, "message": error}
                after["not_attempted"] = [e.url for e in eps[n + 1:]]
                after["servers"][ep.url] = entry
                # Triton refused the load (400) and keeps the previous instance
                # READY: readiness cannot tell, so fail here with Triton's message
                raise ExecuteFailed(
                    f"load failed on {ep.url}: {error}", after,
                    {"load_error": after["load_error"], "not_attempted": after["not_attempted"]},
                )
            self.control.remember(ctx.action_id, ep.url, entry)
            after["servers"][ep.url] = entry
        return after

    async def _act(
        self, http: TritonHTTP, model: str, ctx: ActionContext, want: dict[str, Any]
    ) -> str | None:
        """Load; return Triton's message when it refused the load (HTTP 400)."""
        try:
            await http.load(model, want.get("config"), self._load_timeout(ctx))
        except PermanentError as exc:
            if exc.detail.get("status") == "400":
                return str(exc.detail.get("triton_error") or exc.message)
            raise
        return None

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        failed = after.get("load_error")
        if failed:
            # Triton keeps the previous instance READY after a failed load, so
            # readiness cannot be trusted here: the load's own answer decides.
            raise VerificationFailed(
                f"load failed on {failed['server']}: {failed['message']}",
                {"load_error": failed, "not_attempted": after.get("not_attempted", [])},
            )
        model = _model(ctx)
        out: dict[str, Any] = {"model": model, "servers": {}}
        for ep in target_endpoints(ctx):
            entry = after["servers"].get(ep.url)
            if entry is None:
                raise VerificationFailed(f"{ep.url} was not acted on", {"server": ep.url})
            async with self.control.serialised(ep.url, model, ctx.action_id, "verify"), \
                    self.control.client(ep) as http:
                out["servers"][ep.url] = await self._check(
                    ctx, http, model, entry.get("expect_ready"), bool(entry.get("exact")),
                    entry.get("smoke_version") or "", timeout,
                )
        return out

    async def _check(
        self,
        ctx: ActionContext,
        http: TritonHTTP,
        model: str,
        expect: list[str] | None,
        exact: bool,
        smoke_version: str,
        timeout: float,
    ) -> dict[str, Any]:
        """Poll per-version readiness; then the optional smoke inference."""
        deadline = time.monotonic() + timeout

        async def check() -> tuple[bool, dict[str, Any]]:
            entries = [e for e in await http.index() if e.get("name") == model]
            listed = _versions(entries, ("READY",))
            want = expect if expect is not None else listed
            ready = {v: await http.ready(model, v) for v in sorted(set(want) | set(listed), key=int)}
            now_ready = [v for v, ok in ready.items() if ok]
            ok = bool(want) and all(ready.get(v) for v in want)
            if exact and expect is not None:
                ok = ok and set(now_ready) == set(expect)
            detail: dict[str, Any] = {"server": http.server, "ready": now_ready, "expected": want}
            unavailable = {str(e["version"]): e.get("reason", "") for e in entries
                           if "version" in e and e.get("state") == "UNAVAILABLE"
                           and str(e["version"]) in want}
            if unavailable:
                detail["unavailable"] = unavailable
            return ok, detail

        result = await poll_until(check, timeout, _POLL_INTERVAL,
                                  what=f"model {model!r} ready on {http.server}")
        smoke = self._smoke(ctx)
        if smoke is not None:
            remaining = max(deadline - time.monotonic(), 1.0)
            result["smoke"] = await self._smoke_until(http, model, smoke_version, smoke, remaining)
        return result

    async def _smoke_until(
        self, http: TritonHTTP, model: str, version: str, smoke: SmokeTest, timeout: float
    ) -> dict[str, Any]:
        async def attempt() -> tuple[bool, dict[str, Any]]:
            return True, await smoke_inference(http, model, version, smoke)

        return await poll_until(attempt, timeout, _POLL_INTERVAL, what="smoke inference")

    async def rollback(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        """Put every server back to the snapshot's versions/config; a no-op where it already is."""
        model = _model(ctx)
        restored: dict[str, Any] = {"model": model, "servers": {}}
        for url, prev in before.get("servers", {}).items():
            ep = parse_server(url)
            async with self.control.serialised(url, model, ctx.action_id, "rollback"), \
                    self.control.client(ep) as http:
                await settle(http, model, self._load_timeout(ctx))
                now = await read_state(http, model)
                if same_state(prev, now):
                    action = "none: previous versions and config still in place"
                elif prev.get("loaded"):
                    action = "re-loaded previous config"
                    try:
                        await http.load(model, prev.get("config"), self._load_timeout(ctx))
                    except PermanentError as exc:
                        raise PermanentError(
                            f"rollback on {url}: {exc.message}", {**exc.detail, "server": url}
                        ) from None
                else:
                    action = "unloaded (was not loaded before)"
                    await http.unload(model, False, self._load_timeout(ctx))
                restored["servers"][url] = {"action": action, "state": await read_state(http, model)}
        return restored

    async def verify_rollback(
        self, ctx: ActionContext, before: dict[str, Any], restored: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        model = _model(ctx)
        out: dict[str, Any] = {"model": model, "servers": {}}
        for url, prev in before.get("servers", {}).items():
            ep = parse_server(url)
            async with self.control.serialised(url, model, ctx.action_id, "verify_rollback"), \
                    self.control.client(ep) as http:
                if prev.get("loaded"):
                    checked = await self._check(ctx, http, model, list(prev["ready_versions"]),
                                                True, "", timeout)
                else:
                    checked = await _check_unloaded(http, model, timeout)
            action = restored.get("servers", {}).get(url, {}).get("action")
            out["servers"][url] = {**checked, "action": action}
        return out


async def _check_unloaded(http: TritonHTTP, model: str, timeout: float) -> dict[str, Any]:
    """No version READY, LOADING or UNLOADING: the instances are gone, not just not ready."""
    async def check() -> tuple[bool, dict[str, Any]]:
        entries = [e for e in await http.index() if e.get("name") == model]
        states = {str(e.get("version", "")): e.get("state", "") for e in entries}
        busy = [v for v, st in states.items() if st in ("READY", "LOADING", "UNLOADING")]
        return not busy and not await http.ready(model), {"server": http.server, "states": states}

    return await poll_until(check, timeout, _POLL_INTERVAL, what=f"model {model!r} unloaded on {http.server}")


async def settle(http: TritonHTTP, model: str, timeout: float) -> None:
    """Wait while a version is LOADING or UNLOADING before sending a load or unload.

    A load that arrives while the model is still unloading can be taken as
    "unchanged" by Triton and answered 200 without loading anything.
    """
    async def check() -> tuple[bool, dict[str, Any]]:
        entries = [e for e in await http.index() if e.get("name") == model]
        busy = {str(e.get("version", "")): e["state"] for e in entries
                if e.get("state") in ("LOADING", "UNLOADING")}
        return not busy, {"server": http.server, "busy": busy}

    try:
        await poll_until(check, timeout, _POLL_INTERVAL / 2, what=f"model {model!r} settled")
    except VerificationFailed as exc:
        raise TransientError(f"{exc.message} on {http.server}", exc.detail) from None


def _loaded_servers(before: dict[str, Any], name: str, hint: str) -> None:
    missing = [url for url, s in before.get("servers", {}).items() if not s.get("loaded")]
    if missing:
        raise PermanentError(f"{name}: model {before.get('model')!r} is not loaded on {missing}; {hint}",
                             {"servers": missing})


class TritonReloadExecutor(_TritonExecutor):
    """Reload a loaded model; the versions that were ready must be ready again."""

    name: ClassVar[str] = "triton.reload"

    def _desired(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = ctx.params
        assert isinstance(p, TritonReloadParams)
        _loaded_servers(before, self.name, "use triton.load")
        version = _target_version(ctx)
        out: dict[str, Any] = {}
        for url, s in before["servers"].items():
            if version is not None and version not in s["ready_versions"]:
                raise PermanentError(f"triton.reload: version {version} is not loaded on {url}; "
                                     "use triton.load with that version", {"server": url})
            # the loaded config keeps the served versions even when an earlier
            # load overrode the repository's version policy
            config = copy.deepcopy(s["config"])
            if p.force:
                # Triton treats a load with unchanged config and files as done
                # without reloading; a new parameter value makes it a real reload
                # (and a retried execute of the same action stays a no-op).
                params = config.get("parameters") or {}
                config["parameters"] = {**params, RELOAD_PARAMETER: {"string_value": ctx.action_id}}
            out[url] = {
                "config": config,
                "expect_ready": list(s["ready_versions"]),
                "exact": True,
                "smoke_version": version or "",
            }
        return out


class TritonLoadExecutor(_TritonExecutor):
    """Load a model, a specific version (version policy override) or an explicit config."""

    name: ClassVar[str] = "triton.load"

    def _desired(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        p = ctx.params
        assert isinstance(p, TritonLoadParams)
        version = str(p.version) if p.version is not None else _target_version(ctx)
        out: dict[str, Any] = {}
        for url, s in before["servers"].items():
            config: dict[str, Any] | None = None
            if p.config is not None:
                config = copy.deepcopy(p.config)
            elif version is not None:
                if not s.get("loaded") or s.get("config") is None:
                    raise PermanentError(
                        f"triton.load: model {before.get('model')!r} is not loaded on {url}, so its "
                        "config is unknown; give `config` together with `version`", {"server": url})
                config = copy.deepcopy(s["config"])
            if version is not None and config is not None:
                config["version_policy"] = {"specific": {"versions": [int(version)]}}
            expect = [version] if version is not None else _policy_versions(config)
            out[url] = {
                "config": config,
                "expect_ready": list(expect) if expect is not None else None,
                "exact": version is not None,
                "smoke_version": version or "",
            }
        return out


def _policy_versions(config: dict[str, Any] | None) -> list[str] | None:
    policy = (config or {}).get("version_policy") or {}
    specific = policy.get("specific") if isinstance(policy, dict) else None
    if isinstance(specific, dict) and specific.get("versions"):
        return sorted({str(int(v)) for v in specific["versions"]}, key=int)
    return None


class TritonUnloadExecutor(_TritonExecutor):
    """Unload a model (all its versions); rollback loads it again with the snapshot's config."""

    name: ClassVar[str] = "triton.unload"
    _call_name: ClassVar[str] = "unload"

    def _smoke(self, ctx: ActionContext) -> SmokeTest | None:
        return None

    def _desired(self, ctx: ActionContext, before: dict[str, Any]) -> dict[str, Any]:
        return {url: {"config": None, "expect_ready": [], "exact": True}
                for url in before.get("servers", {})}

    async def _act(
        self, http: TritonHTTP, model: str, ctx: ActionContext, want: dict[str, Any]
    ) -> str | None:
        p = ctx.params
        assert isinstance(p, TritonUnloadParams)
        await http.unload(model, p.unload_dependents, self._load_timeout(ctx))
        return None

    async def verify(
        self, ctx: ActionContext, before: dict[str, Any], after: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        model = _model(ctx)
        out: dict[str, Any] = {"model": model, "servers": {}}
        for ep in target_endpoints(ctx):
            async with self.control.serialised(ep.url, model, ctx.action_id, "verify"), \
                    self.control.client(ep) as http:
                out["servers"][ep.url] = await _check_unloaded(http, model, timeout)
        return out


def triton_executors(
    auth_header: str | None = None, auth_value: str | None = None, timeout: float = 30.0
) -> list[Executor]:
    """The three Triton executors, sharing auth, timeouts and per-model locks."""
    control = TritonControl(auth_header, auth_value, timeout)
    return [TritonReloadExecutor(control), TritonLoadExecutor(control), TritonUnloadExecutor(control)]
