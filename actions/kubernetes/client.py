"""Kubernetes API access for the executors: credentials, calls with timeouts, error mapping.

The executors in this package call the official ``kubernetes`` client (synchronous) through
:class:`KubeApi`, which runs each call in a worker thread with a per-request timeout and maps
failures onto the runner's error families:

* 409 Conflict                      -> :class:`Conflict` (a TransientError; callers re-read and
                                       re-apply, the runner retries what is left over)
* 429, 5xx, connection/read errors  -> TransientError (``retry_after`` from Retry-After)
* 400/401/403/404/405/410/422       -> PermanentError with the API server's own message

Credentials (:class:`KubeClients`): a kubeconfig path and context, or the in-cluster service
account when no kubeconfig is given and the process runs in a pod. A target's ``cluster``
field names another context of the same kubeconfig; one client per context, built lazily.
Called by ``actions.kubernetes.workloads``, ``traffic`` and ``nodes``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from actions.base import PermanentError, TransientError

# (apiGroup, resource, verb): the unit of the RBAC rules in deploy/rbac/.
ApiCall = tuple[str, str, str]

PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 410, 415, 422})


class Conflict(TransientError):
    """409 from the API server: someone changed the object; re-read and re-apply."""


def _api_status(exc: ApiException) -> tuple[str, str, list[str]]:
    """The Status ``message``, ``reason`` and cause reasons from an error body."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body[:500], str(exc.reason or ""), []
        if isinstance(status, dict):
            causes = [
                str(c.get("reason")) for c in (status.get("details") or {}).get("causes") or []
                if isinstance(c, dict) and c.get("reason")
            ]
            return (
                str(status.get("message") or body[:500]),
                str(status.get("reason") or exc.reason or ""),
                causes,
            )
    return str(exc.reason or "no message"), str(exc.reason or ""), []


def map_api_error(exc: BaseException, what: str) -> TransientError | PermanentError:
    """The runner's error for a failed API call; ``what`` names the call for the audit."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message, reason, causes = _api_status(exc)
        detail: dict[str, Any] = {"status": status, "reason": reason, "api_message": message, "call": what}
        if causes:
            detail["causes"] = causes
        text = f"{what}: {status} {reason}: {message}"
        if status == 409:
            return Conflict(text, detail)
        if status in PERMANENT_STATUSES:
            return PermanentError(text, detail)
        retry_after: float | None = None
        headers = exc.headers or {}
        raw = headers.get("Retry-After") if hasattr(headers, "get") else None
        if raw:
            try:
                retry_after = float(raw)
            except ValueError:
                retry_after = None
        # 429, 5xx, 0 (no response) and anything unexpected: worth another try.
        return TransientError(text, detail, retry_after=retry_after)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}", {"call": what})
    raise TypeError(f"not an API error: {type(exc).__name__}")  # programming error, surfaces


@dataclass
class KubeApi:
    """The typed API groups of one cluster plus a helper that runs calls off the event loop."""

    api_client: k8s.ApiClient
    request_timeout: float = 15.0

    def __post_init__(self) -> None:
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.discovery = k8s.DiscoveryV1Api(self.api_client)

    async def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in a thread with a timeout; returns the response as plain JSON data.

        Typed responses are converted with the client's own serialiser so executors work with
        the API's camelCase dicts (what ``kubectl get -o json`` shows), never model classes.
        """
        kwargs.setdefault("_request_timeout", (5.0, self.request_timeout))

        def run() -> Any:
            return self.api_client.sanitize_for_serialization(fn(*args, **kwargs))  # type: ignore[no-untyped-call]

        try:
            return await asyncio.to_thread(run)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
            raise map_api_error(exc, what) from exc

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]


class KubeClients:
    """API clients per kubeconfig context (``None`` = the kubeconfig's current context).

    ``kubeconfig=None``: the in-cluster service account when running in a pod, else the
    default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).
    """

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        request_timeout: float = 15.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.request_timeout = request_timeout
        self._apis: dict[str | None, KubeApi] = {}
        self._lock = threading.Lock()

    def _configuration(self, context: str | None) -> k8s.Configuration:
        cfg = k8s.Configuration()
        in_cluster = self.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
        try:
            if in_cluster and context is None:
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=self.kubeconfig,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError) as exc:
            where = "in-cluster service account" if in_cluster else (self.kubeconfig or "default kubeconfig")
            raise PermanentError(
                f"cannot load Kubernetes credentials from {where}"
                + (f" (context {context!r})" if context else "")
                + f": {exc}"
            ) from exc
        # The runner owns retries; urllib3 must not silently repeat requests.
        cfg.retries = 0
        return cfg

    def api(self, cluster: str | None = None) -> KubeApi:
        """The client for a target's ``cluster`` (a kubeconfig context), or the default one."""
        context = cluster or self.context
        with self._lock:
            api = self._apis.get(context)
            if api is None:
                api = KubeApi(k8s.ApiClient(self._configuration(context)), self.request_timeout)
                self._apis[context] = api
            return api

    def close(self) -> None:
        with self._lock:
            for api in self._apis.values():
                api.close()
            self._apis.clear()
