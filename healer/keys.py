"""Keys: who may sign commands to a worker, and the keys it signs and seals with (pure).

A keyring is a YAML document (docs/security.md)::

    sign: worker-2026-12          # the key the worker signs its own commands with
    seal: audit-2026-12           # the key the sealer MACs audit records with (optional)
    keys:
      - {id: worker-2026-12, secret_file: /run/secrets/worker, identity: healer, roles: [worker]}
      - {id: audit-2026-12, secret_file: /run/secrets/audit, roles: [audit]}
      - {id: alice, secret: "<64 hex>", identity: alice, roles: [operate, approve]}

Roles: ``worker`` (the worker's own commands: decided actions, approval
requests, its expiry messages, approvals it forwards for authenticated HTTP
users), ``operate`` (``healer action run``, ``healer rollback``), ``approve``
(approve / deny), ``audit`` (audit-record MACs). Rotation: add the new key, make
it the ``sign`` / ``seal`` key, remove the old one once nothing signed with it
is pending. Secrets are at least 16 bytes, given as hex (``secret``) or read
from a file (``secret_file``, by the caller: this module does no I/O).

:func:`mac` / :func:`check` are the only place that computes and compares
HMACs (SHA-256, constant-time comparison, a domain string per use).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

ROLES = ("worker", "operate", "approve", "audit")
MIN_SECRET = 16


class KeyringError(ValueError):
    """A keyring that cannot be used; the message names the entry and the fix (never a secret)."""


@dataclass(frozen=True)
class Key:
    id: str
    secret: bytes = field(repr=False)
    identity: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, Key]
    sign: str | None = None  # id of the worker's signing key
    seal: str | None = None  # id of the audit MAC key

    def get(self, kid: str) -> Key | None:
        return self.keys.get(kid)

    def signing_key(self) -> Key | None:
        return self.keys.get(self.sign) if self.sign else None

    def sealing_key(self) -> Key | None:
        return self.keys.get(self.seal) if self.seal else None

    def with_role(self, role: str) -> list[Key]:
        return [k for k in self.keys.values() if role in k.roles]


def mac(key: Key, domain: str, *parts: bytes) -> str:
    """HMAC-SHA256 (hex) over ``domain`` and ``parts``, each length-prefixed so that no
    two different part lists give the same message."""
    h = hmac.new(key.secret, domain.encode(), hashlib.sha256)
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def check(keyring: Keyring, kid: str | None, tag: str | None, domain: str, *parts: bytes,
          roles: Iterable[str]) -> Key | str:
    """The key that made ``tag``, when it is valid and the key has one of ``roles``; else why not."""
    if not kid or not tag:
        return "unsigned"
    key = keyring.get(kid)
    if key is None:
        return f"signed with unknown key id {kid[:64]!r}"
    if not hmac.compare_digest(mac(key, domain, *parts), tag):
        return f"bad signature (key id {kid[:64]!r})"
    wanted = set(roles)
    if not key.roles & wanted:
        return f"key {kid!r} ({key.identity}) may not sign this: it needs one of the roles {sorted(wanted)}"
    return key


def parse(text: str, read_secret: Callable[[str], bytes], source: str = "keyring") -> Keyring:
    """A keyring from its YAML text; ``read_secret(path)`` reads a ``secret_file``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise KeyringError(f"{source}{where}: not YAML") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeyringError(f"{source}: a mapping with a list `keys` is expected (docs/security.md)")
    keys: dict[str, Key] = {}
    for i, raw in enumerate(data["keys"]):
        keys_entry = _key(raw, i, read_secret, source)
        if keys_entry.id in keys:
            raise KeyringError(f"{source}: key id {keys_entry.id!r} appears twice")
        keys[keys_entry.id] = keys_entry
    ring = Keyring(keys, _ref(data, "sign", keys, "worker", source), _ref(data, "seal", keys, "audit", source))
    secrets_seen: dict[bytes, str] = {}
    for k in keys.values():
        if k.secret in secrets_seen:
            raise KeyringError(f"{source}: keys {secrets_seen[k.secret]!r} and {k.id!r} share a secret")
        secrets_seen[k.secret] = k.id
    return ring


def _ref(data: dict[str, Any], name: str, keys: dict[str, Key], role: str, source: str) -> str | None:
    kid = data.get(name)
    if kid is None:
        return None
    if not isinstance(kid, str) or kid not in keys:
        raise KeyringError(f"{source}: `{name}` names no key of this keyring")
    if role not in keys[kid].roles:
        raise KeyringError(f"{source}: `{name}` key {kid!r} needs the role {role!r}")
    return kid


def _key(raw: Any, i: int, read_secret: Callable[[str], bytes], source: str) -> Key:
    where = f"{source}: keys[{i}]"
    if not isinstance(raw, dict):
        raise KeyringError(f"{where}: each key is a mapping with id, secret or secret_file, roles")
    unknown = set(raw) - {"id", "secret", "secret_file", "identity", "roles"}
    if unknown:
        raise KeyringError(f"{where}: unknown fields {sorted(unknown)}")
    kid = raw.get("id")
    if not isinstance(kid, str) or not kid or len(kid) > 64 or not kid.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise KeyringError(f"{where}: id must be 1-64 letters, digits, '-', '_' or '.'")
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise KeyringError(f"{where} ({kid}): roles must be a non-empty list of {', '.join(ROLES)}")
    if ("secret" in raw) == ("secret_file" in raw):
        raise KeyringError(f"{where} ({kid}): give exactly one of secret (hex) or secret_file")
    if "secret" in raw:
        try:
            secret = bytes.fromhex(str(raw["secret"]))
        except ValueError:
            raise KeyringError(f"{where} ({kid}): secret must be hex") from None
    else:
        try:
            secret = read_secret(str(raw["secret_file"]))
        except OSError as exc:
            raise KeyringError(f"{where} ({kid}): cannot read secret_file: {exc.strerror}") from None
    if len(secret) < MIN_SECRET:
        raise KeyringError(f"{where} ({kid}): the secret is shorter than {MIN_SECRET} bytes")
    identity = raw.get("identity", kid)
    if not isinstance(identity, str) or not identity or len(identity) > 200:
        raise KeyringError(f"{where} ({kid}): identity must be a string of 1-200 characters")
    return Key(kid, secret, identity, frozenset(roles))


def generate(operator: str = "local-operator") -> str:
    """A new keyring's YAML: a worker key, an audit key and one operator key (approve, operate)."""
    def hexkey() -> str:
        return secrets.token_hex(32)

    return (
        "# healer keyring (docs/security.md). Keep it secret: it authenticates commands to the worker.\n"
        "sign: worker\nseal: audit\nkeys:\n"
        f"  - {{id: worker, secret: {hexkey()}, identity: healer, roles: [worker]}}\n"
        f"  - {{id: audit, secret: {hexkey()}, roles: [audit]}}\n"
        f"  - {{id: {operator}, secret: {hexkey()}, identity: {operator}, roles: [operate, approve]}}\n"
    )
