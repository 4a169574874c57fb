"""Run one worker process: load settings and policies, start HTTP, run Faust.

Called by ``healer run``. Exits 1 with the load errors when policies are
invalid, and when no API token is configured (unless ``insecure_no_auth``)
or the tokens do not load; stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from actions.noop import NoopExecutor
from actions.registry import ExecutorRegistry
from healer import logs
from healer.identity import TokenConfigError, startup_problem
from healer.index import PolicySet
from healer.keys import KeyringError
from healer.settings import Settings
from streams import http
from streams.app import HealerApp
from streams.topics import partition_problems

log = logging.getLogger("healer.worker")


def build_registry(settings: Settings) -> ExecutorRegistry:
    """All executors this worker can run; optional ones load lazily."""
    registry = ExecutorRegistry()
    registry.register(NoopExecutor())
    try:
        from actions.webhook import WebhookExecutor

        registry.register(WebhookExecutor())
    except ImportError:  # pragma: no cover - optional module during development
        pass
    try:
        from actions.triton import triton_executors

        auth = settings.triton_auth_value.get_secret_value() if settings.triton_auth_value else None
        registry.register_all(triton_executors(auth_header=settings.triton_auth_header, auth_value=auth))
    except ImportError:
        pass
    try:
        from actions.kubernetes import kubernetes_executors

        registry.register_all(
            kubernetes_executors(
                kubeconfig=settings.kubeconfig,
                context=settings.kube_context,
                allowed_namespaces=settings.allowed_namespaces,
            )
        )
    except ImportError:
        pass
    return registry


async def _patiently(what: Callable[[], Awaitable[None]], patience: float) -> None:
    """Run ``what`` until the broker answers it, for ``patience`` seconds at most."""
    from streams.client import BrokerUnavailable

    deadline = loop_time() + patience
    while True:
        try:
            await what()
            return
        except BrokerUnavailable as exc:
            if loop_time() > deadline:
                raise
            log.warning("%s; retrying in 5s", exc)
            await asyncio.sleep(5)


async def _ensure_topics(healer: HealerApp, settings: Settings, patience: float = 300.0) -> None:
    """Create missing topics, retrying while the broker is not up yet."""
    from streams.client import ensure_topics

    async def create() -> None:
        created = await ensure_topics(healer.bootstrap, healer.topic_layout(), settings.topic_replicas,
                                      configs=healer.topic_configs())
        if created:
            log.info("created topics: %s", ", ".join(created))

    await _patiently(create, patience)
    await _read_partitions(healer, patience)


async def _read_partitions(healer: HealerApp, patience: float = 300.0) -> None:
    """The partition counts the stages pack batches by (the topics may predate this worker)."""
    from streams.client import BrokerUnavailable, topic_partitions

    n = healer.names
    names = [n.signals, n.audit_log, n.audit, n.approvals, n.approval_requests]

    async def read() -> None:
        counts = await topic_partitions(healer.bootstrap, names, 30.0)
        missing = [t for t in names if t not in counts]
        if missing:
            raise BrokerUnavailable(f"topics {', '.join(missing)} do not exist yet "
                                    "(create them with `healer topics create`)")
        problems = partition_problems(n, counts)
        if problems:
            raise TopicLayoutError("; ".join(problems))
        healer.partition_counts.update(counts)

    await _patiently(read, patience)


class TopicLayoutError(RuntimeError):
    """The topics exist with partition counts this worker cannot run with."""


def loop_time() -> float:
    return asyncio.get_event_loop().time()


def auth_problem(settings: Settings) -> str | None:
    """Why this worker must not start serving HTTP (no tokens, unreadable tokens); None: it may."""
    try:
        table = settings.token_table()
    except TokenConfigError as exc:
        return f"API tokens do not load: {exc}"
    return startup_problem(table)


def run(settings: Settings, policies: PolicySet) -> int:
    import faust

    problem = auth_problem(settings)
    if problem is not None:
        print(f"healer: {problem}", file=sys.stderr, flush=True)
        return 1

    log_format = logs.choose_format()
    logs.configure(settings.log_level, log_format)
    from streams.client import configure_security

    configure_security(settings.kafka_security())
    registry = build_registry(settings)
    try:
        healer = HealerApp(settings, policies, registry)
    except KeyringError as exc:
        log.critical("cannot start: %s", exc)
        return 1
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = loop.run_until_complete(http.start(http.build(healer), settings.http_host, settings.http_port))
    try:
        if settings.create_topics:
            loop.run_until_complete(_ensure_topics(healer, settings))
        else:
            loop.run_until_complete(_read_partitions(healer))
    except TopicLayoutError as exc:
        log.critical("cannot start: %s", exc)
        loop.run_until_complete(runner.cleanup())
        return 1
    # dry_run and paused first after the identity: a reader of the log must not mistake a
    # worker that changes nothing (or does nothing) for one that acts
    log.info(
        "healer worker app_id=%s bootstrap=%s dry_run=%s paused=%s policies=%d "
        "dry_run_policies=%d executors=%s",
        settings.app_id, healer.bootstrap, str(settings.dry_run).lower(),
        str(settings.paused).lower(), len(policies),
        sum(p.guards.dry_run for p in policies.policies.values()), ",".join(registry.names()),
    )
    worker = faust.Worker(healer.app, loop=loop, loglevel=settings.log_level, redirect_stdouts=False,
                          logging_config=logs.dict_config(settings.log_level, log_format),
                          quiet=log_format == "json")
    # faust's terminal spinner sets the root logger to DEBUG when the level is WARNING or
    # above, so every library debug record is built and then dropped (bench: 3x slower)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
        return code
    finally:
        try:
            if not loop.is_closed():
                loop.run_until_complete(runner.cleanup())
                loop.run_until_complete(healer.close())
                loop.run_until_complete(registry.close())
        except Exception:  # shutting down: nothing left to report to
            pass
        sys.stdout.flush()
    return 0
