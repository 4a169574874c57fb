"""Common base of the Kubernetes executors: clients, namespace guard, declared API calls.

Every executor states the API calls it makes in ``api_calls`` ((apiGroup, resource, verb));
``tests/unit/test_kube_rbac.py`` compares them with ``deploy/rbac/*.yaml`` so the shipped RBAC
grants exactly what the code uses. :func:`update_with_conflicts` is the read-modify-write loop
all writers share: resourceVersion-guarded writes, 409 -> re-read and re-apply.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from actions.base import ActionContext, Executor, PermanentError
from actions.kubernetes.client import ApiCall, Conflict, KubeApi, KubeClients
from actions.kubernetes.safety import NamespaceGuard

CONFLICT_ATTEMPTS = 5


class KubeExecutor(Executor):
    """Shared plumbing; subclasses implement the lifecycle."""

    api_calls: ClassVar[frozenset[ApiCall]] = frozenset()
    # Cluster-scoped resources (nodes) need a ClusterRole; the rest also fit a namespaced Role.
    cluster_scoped: ClassVar[bool] = False

    def __init__(self, clients: KubeClients, guard: NamespaceGuard | None = None) -> None:
        self.clients = clients
        self.guard = guard or NamespaceGuard()

    def api(self, ctx: ActionContext) -> KubeApi:
        return self.clients.api(ctx.target.cluster)

    def namespace(self, ctx: ActionContext) -> str:
        return self.guard.check(ctx.target.namespace, self.name)

    def target_name(self, ctx: ActionContext) -> str:
        if not ctx.target.name:
            raise PermanentError(f"{self.name}: the target has no name")
        return ctx.target.name

    async def close(self) -> None:
        self.clients.close()


async def update_with_conflicts(
    read: Callable[[], Awaitable[dict[str, Any]]],
    mutate: Callable[[dict[str, Any]], dict[str, Any] | None],
    write: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    attempts: int = CONFLICT_ATTEMPTS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read, change, write with the read's resourceVersion; on 409 read again and re-apply.

    ``mutate`` returns the object to write, or ``None`` when the object already is as wanted
    (a repeated attempt after a lost response is then a no-op). Returns (written or current
    object, detail). After ``attempts`` conflicts in a row the last Conflict is raised
    (a TransientError: the runner backs off and retries the whole step).
    """
    conflicts = 0
    started = time.monotonic()
    last: Conflict | None = None
    for _ in range(attempts):
        current = await read()
        wanted = mutate(current)
        if wanted is None:
            return current, {"conflicts": conflicts, "changed": False}
        try:
            written = await write(wanted)
        except Conflict as exc:
            conflicts += 1
            last = exc
            continue
        return written, {
            "conflicts": conflicts,
            "changed": True,
            "write_seconds": round(time.monotonic() - started, 3),
        }
    assert last is not None
    raise Conflict(
        f"{last.message} (still conflicting after {attempts} re-reads)",
        {**last.detail, "conflicts": conflicts},
    )

