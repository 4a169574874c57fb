"""``healer run``: start a worker."""

from __future__ import annotations

import argparse
import logging

from healer.cli.common import EXIT_FAIL, add_kafka_options, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="start a worker (Faust) with the HTTP API")
    p.add_argument("--policies", action="append", help="policy file or directory (repeatable; env HEALER_POLICIES)")
    add_kafka_options(p)
    p.add_argument("--dry-run", action="store_true", default=None, help="global dry run: decide, change nothing")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 picks a free one)")
    p.add_argument("--partitions", type=int, help="partitions of topics healer creates (default 6)")
    p.add_argument("--log-level", default=None, help="worker log level (default INFO)")
    p.add_argument("--insecure-no-auth", action="store_true", default=None,
                   help="start without any API token: POST /api/v1/alerts then accepts unauthenticated "
                        "requests (approvals stay closed); env HEALER_INSECURE_NO_AUTH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from healer.loader import PolicyLoadError, load_policy_set

    settings = settings_from(
        args,
        policies=args.policies,
        dry_run=args.dry_run,
        http_port=args.http_port,
        topic_partitions=args.partitions,
        log_level=args.log_level,
        insecure_no_auth=args.insecure_no_auth,
    )
    try:
        policies = load_policy_set(settings.policies)
    except PolicyLoadError as exc:
        print("healer: policies do not load:\n" + str(exc))
        return EXIT_FAIL
    logging.getLogger().setLevel(settings.log_level)
    from streams.worker import run as run_worker

    return run_worker(settings, policies)
