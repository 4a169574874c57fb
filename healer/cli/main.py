"""Entry point of the ``healer`` command (the console script; ``python -m healer.cli.main``):
builds the parser from each subcommand's module and turns errors, a closed pipe and Ctrl-C
into exit codes (docs/design.md, "CLI")."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from healer import __version__
from healer.cli import (
    action_cmd,
    approvals_cmd,
    audit_cmd,
    emit_cmd,
    kafka_cmd,
    policy_cmd,
    run_cmd,
    topics_cmd,
)
from healer.cli.common import EXIT_FAIL, CliError

# what a shell reports for a command killed by SIGPIPE (128 + 13), like `yes | head`
EXIT_BROKEN_PIPE = 141


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="healer",
        description="Event-driven self-healing for model-serving fleets.",
    )
    p.add_argument("--version", action="version", version=f"healer {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_cmd.add_parser(sub)
    policy_cmd.add_parser(sub)
    emit_cmd.add_parser(sub)
    audit_cmd.add_parser(sub)
    approvals_cmd.add_parser(sub)
    action_cmd.add_parser(sub)
    kafka_cmd.add_parser(sub)
    topics_cmd.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"healer: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`healer audit tail --json | head`): stop quietly; stdout goes
        # to /dev/null so that the interpreter's last flush does not complain either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
