"""`healer kafka up|down|status`: the embedded single-node Kafka broker for dev, demo and tests.

healer/cli/main.py registers it with ``add_parser``; the broker itself lives in
streams/broker.py and is imported lazily so the rest of the CLI does not pay for it.
``up`` and ``status`` print ``bootstrap: 127.0.0.1:PORT`` on stdout; progress and
errors go to stderr. Exit codes: 0 ok, 1 failure to act on, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kafka`` with ``up``, ``down`` and ``status`` to the healer CLI."""
    kafka = subparsers.add_parser(
        "kafka",
        help="embedded single-node Kafka broker (KRaft, loopback)",
        description=(
            "Run a real single-node Apache Kafka broker on 127.0.0.1 for development, "
            "the demo and tests. Needs java (17+) and, once, mvn to fetch the jars."
        ),
    )
    actions = kafka.add_subparsers(dest="kafka_command", metavar="{up,down,status}")
    actions.required = True

    state_help = "broker state directory (default: ~/.cache/healer/kafka/run/default)"
    up = actions.add_parser("up", help="start the broker (no-op if it already runs)")
    up.add_argument("--port", type=_port, default=None, help="listener port (default: free port)")
    up.add_argument(
        "--partitions", type=_positive_int, default=1, help="default partitions per new topic"
    )
    up.add_argument("--state-dir", type=Path, default=None, help=state_help)

    down = actions.add_parser("down", help="stop the broker (controlled shutdown)")
    down.add_argument("--state-dir", type=Path, default=None, help=state_help)
    down.add_argument(
        "--kill", action="store_true", help="SIGKILL at once instead of a controlled shutdown"
    )

    status = actions.add_parser("status", help="show the broker's state; exit 1 if it is down")
    status.add_argument("--state-dir", type=Path, default=None, help=state_help)

    kafka.set_defaults(func=run)


def _progress(message: str) -> None:
    print(f"kafka: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from streams.broker import BrokerError, EmbeddedKafka

    command = getattr(args, "kafka_command", None)
    if command not in ("up", "down", "status"):
        print("usage: healer kafka {up,down,status}", file=sys.stderr)
        return 2
    broker = EmbeddedKafka(
        state_dir=args.state_dir,
        port=getattr(args, "port", None),
        partitions=getattr(args, "partitions", 1),
        progress=_progress,
    )
    try:
        if command == "up":
            bootstrap = broker.start()
            print(f"bootstrap: {bootstrap}", flush=True)
            return 0
        if command == "down":
            was_running = broker.stop(kill=bool(getattr(args, "kill", False)))
            _progress("stopped" if was_running else "not running")
            return 0
        info = broker.status()
    except BrokerError as exc:
        print(f"healer kafka {command}: {exc}", file=sys.stderr)
        return 1
    if info["answers"]:
        print(f"bootstrap: {info['bootstrap']}")
    state = "running" if info["answers"] else ("not answering" if info["running"] else "stopped")
    print(f"state: {state}")
    print(f"pid: {info.get('pid') or '-'}")
    if info["running"]:
        from streams.broker import uptime

        print(f"uptime: {uptime(info.get('started_at'))}")
    print(f"version: {info.get('version') or '-'}")
    print(f"state_dir: {info['state_dir']}")
    print(f"log: {info['log_file']}")
    return 0 if info["answers"] else 1
