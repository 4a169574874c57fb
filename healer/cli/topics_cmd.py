"""`healer topics list|create`: healer's Kafka topics, for clusters where workers do not create them.

healer/cli/main.py registers it with ``add_parser``. The topic layout (names, partition counts,
configs) comes from the worker itself (``streams.topics.layout`` and
``topic_configs``), so this command and ``healer run`` never disagree. ``create`` is idempotent:
it creates the missing topics and reports existing ones without changing them. Used by the Helm
chart's topic Job (deploy/helm/healer/templates/job-topics.yaml) and docs/production.md.
Exit codes: 0 ok, 1 broker unreachable or topics with inconsistent partition counts, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from healer.cli.common import EXIT_FAIL, EXIT_OK, add_kafka_options, settings_from
from healer.settings import Settings

METADATA_ATTEMPTS = 20
METADATA_RETRY_SECONDS = 0.5


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``topics`` with ``list`` and ``create`` to the healer CLI."""
    topics = subparsers.add_parser(
        "topics",
        help="list or create healer's Kafka topics",
        description=(
            "healer's topics are {app_id}.<name> plus table changelogs {app_id}-<table>-changelog "
            "(compacted). All have the same partition count, which bounds the number of workers."
        ),
    )
    actions = topics.add_subparsers(dest="topics_command", metavar="{list,create}")
    actions.required = True
    for name, help_text in (
        ("list", "print the topics a worker uses, with partitions and configs (no broker needed)"),
        ("create", "create the missing topics (idempotent); report existing ones"),
    ):
        p = actions.add_parser(name, help=help_text)
        add_kafka_options(p)
        p.add_argument("--partitions", type=_positive_int, default=None,
                       help="partitions per topic (env HEALER_TOPIC_PARTITIONS, default 6)")
        p.add_argument("--replicas", type=_positive_int, default=None,
                       help="replication factor (env HEALER_TOPIC_REPLICAS, default 1)")
        if name == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per topic")
        else:
            p.add_argument("--timeout", type=float, default=60.0, help="seconds to reach the broker")
    topics.set_defaults(func=run)


def layout(settings: Settings) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """(topic -> partitions, topic -> configs) exactly as a worker with ``settings`` uses them."""
    from streams import topics

    return topics.layout(settings.app_id, settings.topic_partitions), topics.configs(settings.app_id)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "topics_command", None)
    settings = settings_from(args, topic_partitions=args.partitions, topic_replicas=args.replicas)
    topics, configs = layout(settings)
    if command == "list":
        for name, parts in topics.items():
            cfg = configs.get(name, {})
            if args.json:
                print(json.dumps({"topic": name, "partitions": parts,
                                  "replicas": settings.topic_replicas, "configs": cfg}))
            else:
                extra = " ".join(f"{k}={v}" for k, v in sorted(cfg.items()))
                print(f"{name}\tpartitions={parts}\treplicas={settings.topic_replicas}"
                      + (f"\t{extra}" if extra else ""))
        return EXIT_OK
    return _create(settings, topics, configs, args.timeout)


def _create(settings: Settings, topics: dict[str, int], configs: dict[str, dict[str, str]],
            timeout: float) -> int:
    from streams.client import BrokerUnavailable, ensure_topics, topic_partitions

    bootstrap = settings.bootstrap()

    async def go() -> tuple[list[str], dict[str, int]]:
        created = await ensure_topics(bootstrap, topics, settings.topic_replicas,
                                      timeout=timeout, configs=configs)
        # new topics reach every broker's metadata a moment after creation
        for _ in range(METADATA_ATTEMPTS):
            counts = await topic_partitions(bootstrap, list(topics), timeout)
            if len(counts) == len(topics):
                break
            await asyncio.sleep(METADATA_RETRY_SECONDS)
        return created, counts

    try:
        created, counts = asyncio.run(go())
    except BrokerUnavailable as exc:
        print(f"healer topics create: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for name in topics:
        state = "created" if name in created else "exists"
        print(f"{state}\t{name}\tpartitions={counts.get(name, '?')}")
    return _check_counts(topics, counts)


def _check_counts(topics: dict[str, int], counts: dict[str, Any]) -> int:
    """Faust co-partitions healer's topics: every one must have the same partition count."""
    missing = [n for n in topics if n not in counts]
    if missing:
        print(f"healer topics create: not visible after creation: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAIL
    distinct = sorted(set(counts.values()))
    if len(distinct) > 1:
        detail = ", ".join(f"{n}={c}" for n, c in counts.items())
        print("healer topics create: healer's topics must all have the same partition count "
              f"(found {distinct}): {detail}. Adding partitions moves keys and their state: "
              "see docs/production.md, 'Changing the partition count'.", file=sys.stderr)
        return EXIT_FAIL
    wanted = next(iter(topics.values()))
    if distinct and distinct[0] != wanted:
        print(f"note: the topics exist with {distinct[0]} partitions (requested {wanted}); "
              "existing topics are never changed", file=sys.stderr)
    return EXIT_OK
