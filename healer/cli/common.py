"""Shared CLI plumbing: Kafka options, settings from flags, error exits."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from healer.commands import sign
from healer.keys import Key, KeyringError
from healer.settings import Settings

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure the user must act on (exit 1); the message says what to do."""


def add_kafka_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-servers", help="Kafka HOST:PORT[,HOST:PORT] (env HEALER_BOOTSTRAP_SERVERS)")
    p.add_argument("--app-id", help="app id: consumer group and topic prefix (default healer)")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    kw: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "bootstrap_servers", None):
        kw["bootstrap_servers"] = args.bootstrap_servers
    if getattr(args, "app_id", None):
        kw["app_id"] = args.app_id
    try:
        settings = Settings(**kw)
        security = settings.kafka_security()
    except ValueError as exc:
        raise CliError(f"bad settings: {exc}") from exc
    if security["security_protocol"] != "PLAINTEXT":
        from streams.client import configure_security

        configure_security(security)
    return settings


def require_worker(settings: Settings) -> None:
    """Fail fast (CliError) unless a worker of ``settings.app_id`` runs.

    A worker is a member of the consumer group named by the app id (Faust's group id), so a
    command that needs a worker to act asks the broker, instead of queueing a request that
    nobody reads and waiting for its timeout.
    """
    import asyncio

    from streams.client import BrokerUnavailable, describe_group

    bootstrap = settings.bootstrap()
    try:
        group = asyncio.run(describe_group(bootstrap, settings.app_id))
    except BrokerUnavailable as exc:
        raise CliError(str(exc)) from exc
    if group.members == 0:
        raise CliError(
            f"no worker of app id {settings.app_id!r} is running on {bootstrap} (its consumer "
            f"group is {group.state}, no members); nothing was queued. Start one "
            f"(`healer run --app-id {settings.app_id}`) or pass the right --app-id / "
            "--bootstrap-servers (env HEALER_APP_ID, HEALER_BOOTSTRAP_SERVERS)"
        )


def signing_key(settings: Settings, role: str, identity: str | None = None) -> Key:
    """The key the CLI signs a command with (healer.commands), and so who it acts as: the key of
    ``identity`` (``--actor``), else ``HEALER_SIGNING_KEY`` (a key id of the keyring), else the
    keyring's one key with ``role`` that is not the worker's own."""
    import os

    try:
        ring = settings.keyring()
    except KeyringError as exc:
        raise CliError(str(exc)) from None
    if identity:
        mine = [k for k in ring.with_role(role) if k.identity == identity and "worker" not in k.roles]
        if not mine:
            raise CliError(f"no key of {identity!r} with role {role!r} in {settings.keyring_path()}: "
                           "you act as the key you sign with")
        return mine[0]
    wanted = os.environ.get("HEALER_SIGNING_KEY")
    if wanted:
        key = ring.get(wanted)
        if key is None or role not in key.roles:
            raise CliError(f"HEALER_SIGNING_KEY={wanted}: no key of {settings.keyring_path()} with role {role!r}")
        return key
    people = [k for k in ring.with_role(role) if "worker" not in k.roles]
    if len(people) != 1:
        found = ", ".join(k.id for k in people) or "none"
        raise CliError(f"{settings.keyring_path()} has {len(people)} keys with role {role!r} ({found}): "
                       "set HEALER_SIGNING_KEY to the id of yours")
    return people[0]


def signed(key: Key, kind: str, record_key: bytes | None, value: bytes) -> Any:
    """A record for ``kind``'s topic, signed with ``key`` (a streams.client.OutRecord)."""
    from streams.client import OutRecord

    return OutRecord(record_key, value, headers=sign(key, kind, value))


def target_text(t: dict[str, Any] | None) -> str:
    """A target as one short string: Kind/namespace/name or TritonModel/server/model."""
    if not t:
        return ""
    parts = []
    for k in ("kind", "cluster", "namespace", "name", "server", "servers", "model", "version"):
        v = t.get(k)
        if v:
            parts.append(",".join(v) if isinstance(v, list | tuple) else str(v))
    return "/".join(parts)


def die(message: str, code: int = EXIT_FAIL) -> NoReturn:
    print(f"healer: {message}", file=sys.stderr)
    sys.exit(code)
