"""The audit hash chain: sealing records, MACs, and verifying an export.

One chain per audit partition, written by a single sealer. ``hash`` is SHA-256
over the canonical JSON (sorted keys, no spaces, UTF-8) of the record without
``hash`` and ``mac``; ``prev_hash`` is the previous record's ``hash`` in the
same chain (64 zeros for seq 0). With an audit key (healer.keys, role
``audit``) the sealer also writes ``kid`` (covered by ``hash``) and ``mac``:
HMAC-SHA256 of ``hash`` under that key. A hash chain alone shows that records
were changed, removed or reordered, but anyone can append a record with a
valid link; a MAC shows who wrote it. ``verify`` takes records in any
interleaving of chains; with a keyring it names every record without a valid
MAC as foreign and checks the chain around it. :func:`resume_point` is the
sealer's reading of a chain's tail: the last genuine record it may continue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from healer.keys import Key, Keyring, check, mac

GENESIS = "0" * 64


MAC_DOMAIN = "healer.audit.v1"
_NOT_HASHED = ("hash", "mac")


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes ``hash`` is taken over (keys starting with ``__`` are a reader's annotations)."""
    body = {k: v for k, v in record.items() if k not in _NOT_HASHED and not k.startswith("__")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


@dataclass
class ChainHead:
    """Where a chain stands: the next seq and the hash to link to."""

    chain: str
    next_seq: int = 0
    last_hash: str = GENESIS


def seal(body: dict[str, Any], head: ChainHead, key: Key | None = None) -> dict[str, Any]:
    """Return ``body`` sealed onto ``head`` (MAC'd with ``key``) and advance ``head``."""
    rec: dict[str, Any] = {"schema": body.get("schema"), "chain": head.chain, "seq": head.next_seq}
    rec.update({k: v for k, v in body.items() if k not in ("chain", "seq", "hash", "prev_hash", "kid", "mac")})
    rec["prev_hash"] = head.last_hash
    if key is not None:
        rec["kid"] = key.id
    rec["hash"] = record_hash(rec)
    if key is not None:
        rec["mac"] = mac(key, MAC_DOMAIN, rec["hash"].encode())
    head.next_seq += 1
    head.last_hash = rec["hash"]
    return rec


def mac_problem(rec: dict[str, Any], keyring: Keyring) -> str | None:
    """Why ``rec``'s MAC does not show a sealer wrote it (None: it does). The MAC is over
    ``hash``, so the caller also checks that ``hash`` matches the content."""
    kid, tag, h = rec.get("kid"), rec.get("mac"), rec.get("hash")
    if not isinstance(h, str):
        return "no hash"
    got = check(keyring, kid if isinstance(kid, str) else None, tag if isinstance(tag, str) else None,
                MAC_DOMAIN, h.encode(), roles=("audit",))
    if isinstance(got, str):
        return "no MAC (unsigned)" if got == "unsigned" else got.replace("signature", "MAC")
    return None


def unsigned(rec: dict[str, Any]) -> bool:
    """Sealed without an audit key (no ``kid`` / ``mac``): before keying was configured."""
    return "mac" not in rec and "kid" not in rec


def authentic(rec: dict[str, Any], keyring: Keyring) -> bool:
    """A record a sealer holding one of ``keyring``'s audit keys wrote, unchanged."""
    return rec.get("hash") == record_hash(rec) and mac_problem(rec, keyring) is None


@dataclass
class ChainProblem:
    chain: str
    seq: int | None
    problem: str
    at: str | None = None  # where the record is (a reader's ``__at__``, e.g. "audit[3]@1207")

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "end"
        return f"chain {self.chain}: {where}: {self.problem}" + (f" ({self.at})" if self.at else "")


@dataclass
class VerifyReport:
    records: int = 0
    chains: dict[str, int] = field(default_factory=dict)
    problems: list[ChainProblem] = field(default_factory=list)
    foreign: int = 0  # records without a valid MAC, left out of their chain (keyring given)
    unkeyed: int = 0  # records sealed before any MAC'd one in their chain (before keying began)
    macs_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checkpoint:
    """Chain heads seen at one moment, kept outside Kafka (file, ticket, object lock).

    A chain that ends before its checkpoint seq, or whose record at that seq
    has another hash, was truncated or rewritten.
    """

    heads: dict[str, tuple[int, str]]

    def to_json(self) -> dict[str, Any]:
        return {"chains": {c: {"seq": s, "hash": h} for c, (s, h) in sorted(self.heads.items())}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Checkpoint:
        return cls({str(c): (int(v["seq"]), str(v["hash"])) for c, v in d.get("chains", {}).items()})


def checkpoint_of(records: Iterable[dict[str, Any]]) -> Checkpoint:
    """The last (seq, hash) of every chain in ``records``."""
    heads: dict[str, tuple[int, str]] = {}
    for rec in records:
        chain, seq = str(rec.get("chain")), rec.get("seq")
        if isinstance(seq, int) and (chain not in heads or seq > heads[chain][0]):
            heads[chain] = (seq, str(rec.get("hash")))
    return Checkpoint(heads)


def verify(
    records: Iterable[dict[str, Any]],
    expected_tails: dict[str, int] | None = None,
    checkpoint: Checkpoint | None = None,
    keyring: Keyring | None = None,
) -> VerifyReport:
    """Check every chain for changed, removed, inserted or reordered records.

    ``expected_tails`` (chain -> last seq) or a :class:`Checkpoint` (chain ->
    seq and hash) detects a truncated tail: a chain that ends before its
    checkpoint, or whose record at the checkpoint seq has another hash.
    With ``keyring`` (its audit keys), a record without a valid MAC is named
    as foreign (a problem) and left out, and its chain is checked without it.
    Reports the first bad seq of each chain.
    """
    report = VerifyReport(macs_checked=keyring is not None)
    heads: dict[str, tuple[int, str]] = {}
    hash_at: dict[tuple[str, int], str] = {}
    wanted = {(c, s) for c, (s, _) in (checkpoint.heads.items() if checkpoint else [])}
    broken: set[str] = set()
    keyed: set[str] = set()  # chains where a MAC'd record was seen: later records need one
    for rec in records:
        report.records += 1
        chain = str(rec.get("chain"))
        seq = rec.get("seq")
        at = rec.get("__at__") if isinstance(rec.get("__at__"), str) else None
        if keyring is not None:
            why = mac_problem(rec, keyring)
            if why is not None and unsigned(rec) and chain not in keyed:
                report.unkeyed += 1  # sealed before the audit key was configured: hash-checked only
                why = None
            elif why is None:
                keyed.add(chain)
            if why is not None:
                report.foreign += 1
                report.problems.append(ChainProblem(chain, seq if isinstance(seq, int) else None,
                                                    f"foreign record: {why}; not written by a sealer", at))
                continue
        if chain in broken:
            continue
        exp_seq, exp_prev = heads.get(chain, (0, GENESIS))
        problem = None
        if not isinstance(seq, int):
            problem = "record has no integer seq"
        elif rec.get("hash") != record_hash(rec):
            problem = "hash does not match the record's content (changed)"
        elif seq != exp_seq:
            problem = (
                f"expected seq {exp_seq}, found {seq} "
                + ("(records removed)" if seq > exp_seq else "(record inserted or reordered)")
            )
        elif rec.get("prev_hash") != exp_prev:
            problem = "prev_hash does not link to the previous record (inserted or reordered)"
        if problem:
            report.problems.append(ChainProblem(chain, exp_seq if isinstance(seq, int) else None, problem, at))
            broken.add(chain)
            continue
        heads[chain] = (exp_seq + 1, rec["hash"])
        report.chains[chain] = exp_seq + 1
        if (chain, exp_seq) in wanted:
            hash_at[(chain, exp_seq)] = rec["hash"]
    tails = dict(expected_tails or {})
    for chain, (seq, h) in (checkpoint.heads.items() if checkpoint else []):
        tails[chain] = max(tails.get(chain, -1), seq)
        got = hash_at.get((chain, seq))
        if got is not None and got != h and chain not in broken:
            report.problems.append(ChainProblem(
                chain, seq, "record differs from the checkpoint (history rewritten)"))
            broken.add(chain)
    for chain, last in tails.items():
        if chain in broken:
            continue
        have = report.chains.get(chain, 0)
        if have <= last:
            report.problems.append(
                ChainProblem(chain, have, f"truncated: checkpoint says seq {last} exists, chain ends at {have - 1}")
            )
    return report


@dataclass
class ResumePoint:
    """Where a sealer continues a chain: its last genuine record, and what it found after it."""

    head: ChainHead
    source: tuple[int, int] = (-1, -1)  # the last genuine record's (audit-log offset, index)
    ids: list[str] = field(default_factory=list)  # entry ids of the genuine records, oldest first
    foreign: list[dict[str, Any]] = field(default_factory=list)  # what is not, with why


def resume_point(chain: str, records: Iterable[dict[str, Any]], keyring: Keyring | None,
                 log_end: int) -> ResumePoint:
    """Read a chain's tail as its sealer must before continuing it.

    A record is genuine when its hash matches its content, its MAC is valid
    (when ``keyring`` holds audit keys), it continues the previous genuine
    record (seq + 1, prev_hash), and its ``source`` offset exists in the
    audit-log (below ``log_end``). Anything else was not written by a sealer
    of this chain: it is reported in ``foreign`` and the chain continues from
    the last genuine record, never from a forged ``source`` offset.
    """
    out = ResumePoint(ChainHead(chain, 0, GENESIS))
    last: tuple[int, str] | None = None
    keyed = False  # a MAC'd record was seen: from then on every record needs one
    for rec in records:
        seq, h = rec.get("seq"), rec.get("hash")
        raw_src = rec.get("source")
        src: dict[str, Any] = raw_src if isinstance(raw_src, dict) else {}
        off, idx = src.get("offset"), src.get("index", -1)
        why: str | None = None
        m = mac_problem(rec, keyring) if keyring is not None else None
        if not isinstance(seq, int) or not isinstance(h, str):
            why = "not a sealed record"
        elif h != record_hash(rec):
            why = "hash does not match its content"
        elif m is not None and (keyed or not unsigned(rec)):
            why = m
        elif last is not None and (seq != last[0] + 1 or rec.get("prev_hash") != last[1]):
            why = f"does not continue seq {last[0]}"
        elif not isinstance(off, int) or not isinstance(idx, int) or not 0 <= off < log_end:
            why = f"its source offset {off!r} is not in the audit-log (which ends at {log_end})"
        if why is not None:
            out.foreign.append({"seq": seq, "hash": h if isinstance(h, str) else None, "why": why,
                                "at": rec.get("__at__")})
            continue
        assert isinstance(seq, int) and isinstance(h, str) and isinstance(off, int) and isinstance(idx, int)
        keyed = keyed or (m is None and keyring is not None)
        last = (seq, h)
        out.head = ChainHead(chain, seq + 1, h)
        out.source = (off, idx)
        eid = rec.get("id")
        if isinstance(eid, str):
            out.ids.append(eid)
    return out
