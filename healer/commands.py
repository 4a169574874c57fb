"""Signed commands: what may be written to the worker's command topics, and by whom (pure).

The command topics are ``{app}.actions`` (action requests), ``{app}.approvals``
(decisions) and ``{app}.approval-requests`` (requests waiting for a human);
``{app}.audit-log`` (unsealed audit entries) is signed the same way, because the
sealer MACs whatever it seals.
Whoever can write to them could otherwise make the worker act, so every
record there carries an HMAC-SHA256 in its Kafka headers: ``healer-kid`` (the
key id) and ``healer-mac`` (over the topic's kind and the record value). The
worker refuses a record that is unsigned, badly signed or signed by a key
without the topic's role (``event.rejected``, with the record's coordinates)
and never acts on it.

Who signs what: the worker with its own key (role ``worker``) for everything
it writes itself; an operator's key (``operate``) for ``healer action run`` and
``healer rollback``; an approver's key (``approve``) for approve / deny. A
command signed by a person's key acts as that person: the actor it names is
replaced by ``user:<key identity>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from healer.keys import Key, Keyring, check, mac

DOMAIN = "healer.command.v1"
KID = "healer-kid"
MAC = "healer-mac"

# topic kind -> roles whose keys may sign records there
ROLES: dict[str, tuple[str, ...]] = {
    "actions": ("worker", "operate"),
    "approvals": ("worker", "approve"),
    "approval-requests": ("worker",),
    # unsealed audit entries: the sealer MACs what it seals, so what it seals must be authentic
    "audit-log": ("worker", "operate", "approve"),
    # signal batches from ingest to decide: a forged one would be decided as if alerts arrived
    "signals": ("worker",),
}

Headers = list[tuple[str, bytes]]


def sign(key: Key, kind: str, value: bytes) -> Headers:
    """The headers that make ``value`` a signed record of topic kind ``kind``."""
    if kind not in ROLES:
        raise ValueError(f"no command topic kind {kind!r}")
    return [(KID, key.id.encode()), (MAC, mac(key, DOMAIN, kind.encode(), value).encode())]


def _header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            try:
                return v.decode("ascii") if isinstance(v, bytes | bytearray) else str(v)
            except UnicodeDecodeError:
                return None
    return None


def verify(keyring: Keyring, kind: str, value: bytes | None,
           headers: Sequence[tuple[str, bytes]] | None) -> Key | str:
    """The key that signed this record of topic kind ``kind``, or why it is refused."""
    got = check(keyring, _header(headers, KID), _header(headers, MAC), DOMAIN, kind.encode(), value or b"",
                roles=ROLES[kind])
    return got if isinstance(got, Key) else f"{kind} record refused: {got}"


def acts_as(key: Key, claimed: str) -> str:
    """The actor of a command: the claimed one for the worker's own key, else the key's identity."""
    if "worker" in key.roles:
        return claimed
    return f"user:{key.identity}"
