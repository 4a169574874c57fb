"""Who may call the worker's HTTP API: named tokens, identities and roles.

A token names one identity (``alice``, ``alertmanager``), which holds roles:
``ingest`` (post alerts and samples), ``approve`` (approve or deny pending
actions), ``operate`` (run and roll back actions over HTTP) and ``admin``
(all of them). The audited actor of a request is ``user:<identity>``, never
what the request body says.

Pure: ``healer.settings`` reads the tokens file and the single-token
shorthands and builds a :class:`TokenTable` here; ``streams.http`` asks
:func:`authorize` for every state-changing request and ``streams.worker``
asks :func:`startup_problem` before it starts. Errors name the file, entry
and field and never contain a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Role = Literal["ingest", "approve", "operate", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_HELP: Mapping[Role, str] = {
    "ingest": "post alerts and metric samples (Alertmanager, exporters)",
    "approve": "approve or deny pending actions",
    "operate": "run and roll back actions over HTTP",
    "admin": "everything the other roles may do",
}
# the single-token settings, kept as shorthands for one identity each
SHORTHANDS: Mapping[str, tuple[str, frozenset[Role]]] = {
    "HEALER_API_TOKEN": ("api", frozenset({"approve", "operate"})),
    "HEALER_WEBHOOK_TOKEN": ("webhook", frozenset({"ingest"})),
}

IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750 b64token: what a Bearer header can carry
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MIN_TOKEN_CHARS = 16
RESERVED_IDENTITIES = frozenset({"anonymous", "healer", "unknown"})
ENTRY_FIELDS = ("identity", "roles", "token", "digest")
GENERATE = "generate one with `openssl rand -hex 32`"
CONFIGURE = (
    "configure tokens: HEALER_TOKENS_FILE (a YAML file of identities and roles, docs/security.md), "
    "or HEALER_WEBHOOK_TOKEN(_FILE) for Alertmanager and HEALER_API_TOKEN(_FILE) for approvals"
)


class TokenConfigError(ValueError):
    """The tokens configuration is unusable; the message names where and how to fix it."""


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[Role]

    def may(self, role: Role) -> bool:
        return role in self.roles or "admin" in self.roles

    @property
    def actor(self) -> str:
        """The audit record's ``actor`` for what this identity does."""
        return f"user:{self.name}"


# who an unauthenticated request is when the worker runs with --insecure-no-auth
ANONYMOUS = Identity("anonymous", frozenset({"ingest"}))


@dataclass(frozen=True)
class Credential:
    identity: Identity
    digest: bytes = field(repr=False)  # SHA-256 of the token
    where: str  # for error messages: "tokens.yaml entry 3", "HEALER_API_TOKEN"


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _check_token(token: Any, where: str) -> str:
    # never format the value into a message: it is the secret
    if not isinstance(token, str):
        raise TokenConfigError(f"{where}: token must be a string (quote it in YAML)")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenConfigError(f"{where}: token is shorter than {MIN_TOKEN_CHARS} characters; {GENERATE}")
    if not TOKEN_RE.match(token):
        raise TokenConfigError(f"{where}: token must be a bearer token (letters, digits and - . _ ~ + /, "
                               f"optionally ending in =); {GENERATE}")
    return token


def _roles(value: Any, where: str) -> frozenset[Role]:
    if not isinstance(value, list) or not value:
        raise TokenConfigError(f"{where}: roles must be a non-empty list of {', '.join(ROLES)}")
    out: set[Role] = set()
    for r in value:
        if r not in ROLES:
            shown = repr(r)[:40] if isinstance(r, str) else type(r).__name__
            raise TokenConfigError(f"{where}: unknown role {shown}; roles are {', '.join(ROLES)}")
        out.add(r)
    return frozenset(out)


def _identity(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENTITY_RE.match(value):
        raise TokenConfigError(f"{where}: identity must be 1-64 characters of A-Z a-z 0-9 . _ @ - "
                               "(it is audited as user:IDENTITY)")
    if value in RESERVED_IDENTITIES:
        raise TokenConfigError(f"{where}: identity {value!r} is reserved; pick another name")
    return value


def credential(token: str, name: str, roles: Iterable[Role], where: str) -> Credential:
    """One token for one identity (the ``HEALER_API_TOKEN`` style shorthands)."""
    return Credential(Identity(_identity(name, where), frozenset(roles)), digest_of(_check_token(token, where)), where)


def parse_entry(entry: Any, where: str) -> tuple[Credential, str | None]:
    """One item of the tokens file: the credential and, for a literal token, the token itself."""
    if not isinstance(entry, dict):
        raise TokenConfigError(f"{where}: must be a mapping with identity, roles and token or digest")
    if any(k not in ENTRY_FIELDS for k in entry):
        # the unknown key is not shown: a token pasted as a key would be printed
        raise TokenConfigError(f"{where}: unknown field; the fields are {', '.join(ENTRY_FIELDS)}")
    name = _identity(entry.get("identity"), where)
    roles = _roles(entry.get("roles"), where)
    if ("token" in entry) == ("digest" in entry):
        raise TokenConfigError(f"{where}: give exactly one of token (the token itself) or digest "
                               "(sha256:HEX of the token: printf %s \"$TOKEN\" | sha256sum)")
    if "digest" in entry:
        d = entry["digest"]
        if not isinstance(d, str) or not DIGEST_RE.match(d):
            raise TokenConfigError(f"{where}: digest must be sha256: followed by 64 lower-case hex digits "
                                   "(printf %s \"$TOKEN\" | sha256sum)")
        return Credential(Identity(name, roles), bytes.fromhex(d.removeprefix("sha256:")), where), None
    token = _check_token(entry["token"], where)
    return Credential(Identity(name, roles), digest_of(token), where), token


def parse_tokens_file(data: Any, source: str) -> tuple[list[Credential], list[str]]:
    """The parsed YAML of a tokens file -> its credentials and its literal tokens (to redact)."""
    if not isinstance(data, dict) or set(data) != {"tokens"} or not isinstance(data["tokens"], list):
        raise TokenConfigError(f"{source}: must be a mapping with one key, tokens: a list of "
                               "{identity, roles, token | digest} entries (docs/security.md)")
    creds: list[Credential] = []
    plain: list[str] = []
    for i, entry in enumerate(data["tokens"], start=1):
        cred, token = parse_entry(entry, f"{source} entry {i}")
        creds.append(cred)
        if token is not None:
            plain.append(token)
    if not creds:
        raise TokenConfigError(f"{source}: tokens is empty; add at least one entry or unset HEALER_TOKENS_FILE")
    return creds, plain


@dataclass(frozen=True)
class TokenTable:
    credentials: tuple[Credential, ...] = ()
    allow_anonymous: bool = False  # --insecure-no-auth: requests without a token act as ANONYMOUS
    secrets: tuple[str, ...] = field(default=(), repr=False)  # literal tokens, for log redaction

    @classmethod
    def build(cls, credentials: Sequence[Credential], allow_anonymous: bool = False,
              secrets: Sequence[str] = ()) -> TokenTable:
        """Check that no token and no identity appears twice."""
        by_digest: dict[bytes, Credential] = {}
        by_name: dict[str, Credential] = {}
        for c in credentials:
            if (other := by_digest.get(c.digest)) is not None:
                raise TokenConfigError(f"{c.where} has the same token as {other.where}: "
                                       f"every identity needs its own token; {GENERATE}")
            if (other := by_name.get(c.identity.name)) is not None:
                # the name is not shown: a token pasted into the identity field would be printed
                raise TokenConfigError(f"{c.where} defines the same identity as {other.where}: "
                                       "give each identity one entry (with all its roles)")
            by_digest[c.digest] = c
            by_name[c.identity.name] = c
        return cls(tuple(credentials), allow_anonymous, tuple(secrets))

    def lookup(self, presented: str) -> Identity | None:
        """The identity whose token this is, compared in constant time against every entry."""
        d = digest_of(presented)
        found: Identity | None = None
        for c in self.credentials:  # no early exit: the time does not depend on which entry matched
            if hmac.compare_digest(d, c.digest):
                found = c.identity
        return found

    def identities(self) -> tuple[Identity, ...]:
        return tuple(c.identity for c in self.credentials)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the answer for the client and the reason for the audit."""

    status: Literal[401, 403]
    message: str
    reason: str  # fixed text plus configured identity names only: a bounded set
    identity: Identity | None = None


def authorize(table: TokenTable, presented: str | None, role: Role, what: str) -> Identity | Refusal:
    """May the bearer of ``presented`` (None: no token sent) do ``what``, which needs ``role``?"""
    if presented is None:
        if table.allow_anonymous and ANONYMOUS.may(role):
            return ANONYMOUS
        return Refusal(401, f"missing bearer token: send Authorization: Bearer <token> of an identity "
                       f"with role {role}", f"unauthenticated {what} attempt")
    identity = table.lookup(presented)
    if identity is None:
        return Refusal(401, "invalid bearer token", f"{what} attempt with an invalid token")
    if not identity.may(role):
        return Refusal(403, f"identity {identity.name} may not {what}: that needs role {role} "
                       f"(it has {', '.join(sorted(identity.roles))})",
                       f"{what} attempt by {identity.name} refused: needs role {role}", identity)
    return identity


def startup_problem(table: TokenTable) -> str | None:
    """Why a worker with this table must not start (None: it may)."""
    if table.credentials or table.allow_anonymous:
        return None
    return ("no API tokens configured: the worker would accept alerts from anyone who reaches its port. "
            f"{CONFIGURE}; or start with --insecure-no-auth (HEALER_INSECURE_NO_AUTH=true) to accept "
            "unauthenticated alerts on purpose (approvals then stay closed)")
