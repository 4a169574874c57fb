"""The audit hash chain: sealing records and verifying an export.

One chain per audit partition, written by a single sealer. ``hash`` is SHA-256
over the canonical JSON (sorted keys, no spaces, UTF-8) of the record without
``hash``; ``prev_hash`` is the previous record's ``hash`` in the same chain
(64 zeros for seq 0). ``verify`` takes records in any interleaving of chains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


@dataclass
class ChainHead:
    """Where a chain stands: the next seq and the hash to link to."""

    chain: str
    next_seq: int = 0
    last_hash: str = GENESIS


def seal(body: dict[str, Any], head: ChainHead) -> dict[str, Any]:
    """Return ``body`` sealed onto ``head`` and advance ``head``."""
    rec: dict[str, Any] = {"schema": body.get("schema"), "chain": head.chain, "seq": head.next_seq}
    rec.update({k: v for k, v in body.items() if k not in ("chain", "seq", "hash", "prev_hash")})
    rec["prev_hash"] = head.last_hash
    rec["hash"] = record_hash(rec)
    head.next_seq += 1
    head.last_hash = rec["hash"]
    return rec


@dataclass
class ChainProblem:
    chain: str
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "end"
        return f"chain {self.chain}: {where}: {self.problem}"


@dataclass
class VerifyReport:
    records: int = 0
    chains: dict[str, int] = field(default_factory=dict)
    problems: list[ChainProblem] = field(default_factory=list)

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
) -> VerifyReport:
    """Check every chain for changed, removed, inserted or reordered records.

    ``expected_tails`` (chain -> last seq) or a :class:`Checkpoint` (chain ->
    seq and hash) detects a truncated tail: a chain that ends before its
    checkpoint, or whose record at the checkpoint seq has another hash.
    Reports the first bad seq of each chain.
    """
    report = VerifyReport()
    heads: dict[str, tuple[int, str]] = {}
    hash_at: dict[tuple[str, int], str] = {}
    wanted = {(c, s) for c, (s, _) in (checkpoint.heads.items() if checkpoint else [])}
    broken: set[str] = set()
    for rec in records:
        report.records += 1
        chain = str(rec.get("chain"))
        seq = rec.get("seq")
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
            report.problems.append(ChainProblem(chain, exp_seq if isinstance(seq, int) else None, problem))
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
