"""The audit hash chain: every kind of tampering is caught at the right seq."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime

import jsonschema
import pytest

from healer.audit import AuditEntry, for_event
from healer.chain import ChainHead, Checkpoint, checkpoint_of, record_hash, seal, verify
from healer.models import EventRef
from healer.schema import audit_schema


def chain(name: str, n: int) -> list[dict]:
    head = ChainHead(name)
    out = []
    for i in range(n):
        e: AuditEntry = for_event("event.received", EventRef(id=f"{name}:{i}"),
                                  datetime(2026, 11, 21, tzinfo=UTC), detail={"i": i})
        out.append(seal({**e.body(), "source": {"partition": int(name), "offset": i}}, head))
    return out


def first_problem(records: list[dict], **kw: object) -> tuple[str, int | None, str]:
    report = verify(records, **kw)  # type: ignore[arg-type]
    assert not report.ok
    p = report.problems[0]
    return p.chain, p.seq, p.problem


def test_intact_chains_in_any_interleaving_verify() -> None:
    a, b = chain("0", 20), chain("1", 15)
    mixed = a + b
    rng = random.Random(3)
    # any merge that keeps each chain's own order is a valid export
    merged, ia, ib = [], 0, 0
    while ia < len(a) or ib < len(b):
        if ib >= len(b) or (ia < len(a) and rng.random() < 0.5):
            merged.append(a[ia])
            ia += 1
        else:
            merged.append(b[ib])
            ib += 1
    for recs in (mixed, merged):
        report = verify(recs)
        assert report.ok and report.chains == {"0": 20, "1": 15} and report.records == 35


def test_records_match_the_published_schema() -> None:
    schema = audit_schema()
    for rec in chain("0", 3):
        jsonschema.validate(rec, schema)
    assert "hash" not in json.loads(json.dumps(chain("0", 1)[0])).get("detail", {})


@pytest.mark.parametrize("seq", [0, 7, 19])
def test_changed_record_is_caught_at_its_seq(seq: int) -> None:
    recs = chain("0", 20)
    recs[seq]["reason"] = "edited"
    assert first_problem(recs) == ("0", seq, "hash does not match the record's content (changed)")


def test_changed_and_rehashed_record_breaks_the_link() -> None:
    recs = chain("0", 20)
    recs[5]["reason"] = "edited"
    recs[5]["hash"] = record_hash(recs[5])  # a forger recomputes the hash...
    c, s, why = first_problem(recs)
    assert (c, s) == ("0", 6) and "prev_hash" in why  # ...and the next record no longer links


def test_removed_record_is_caught() -> None:
    recs = chain("0", 20)
    del recs[8]
    c, s, why = first_problem(recs)
    assert (c, s) == ("0", 8) and "removed" in why


def test_inserted_record_is_caught() -> None:
    recs = chain("0", 20)
    fake = copy.deepcopy(recs[4])
    fake["reason"] = "inserted"
    fake["hash"] = record_hash(fake)
    recs.insert(5, fake)
    c, s, why = first_problem(recs)
    assert (c, s) == ("0", 5) and ("inserted" in why or "reordered" in why)


def test_reordered_records_are_caught() -> None:
    recs = chain("0", 20)
    recs[10], recs[11] = recs[11], recs[10]
    c, s, why = first_problem(recs)
    assert (c, s) == ("0", 10) and "removed" in why  # seq 11 arrived where 10 was due


def test_truncated_tail_needs_a_checkpoint_and_is_then_caught() -> None:
    recs = chain("0", 20) + chain("1", 5)
    cp = checkpoint_of(recs)
    truncated = recs[:15] + recs[20:]
    assert verify(truncated).ok  # a chain prefix is self-consistent: hence checkpoints
    c, s, why = first_problem(truncated, checkpoint=cp)
    assert c == "0" and "truncated" in why and s == 15


def test_rewritten_history_differs_from_checkpoint() -> None:
    recs = chain("0", 10)
    cp = Checkpoint.from_json(json.loads(json.dumps(checkpoint_of(recs).to_json())))
    head = ChainHead("0")
    forged = [seal({**r, "reason": "rewritten"}, head) for r in recs]
    c, s, why = first_problem(forged, checkpoint=cp)
    assert (c, s) == ("0", 9) and "rewritten" in why


def test_missing_chain_is_truncation() -> None:
    cp = checkpoint_of(chain("0", 3) + chain("1", 3))
    c, _, why = first_problem(chain("0", 3), checkpoint=cp)
    assert c == "1" and "truncated" in why


# ---------------------------------------------------------------- keyed audit (MACs)

def _keyed_chain(n: int, key: object = None, start: int = 0) -> list[dict]:
    from healer.keys import parse

    ring = parse(f"seal: s\nkeys: [{{id: s, secret: {'d' * 64}, roles: [audit]}}]", lambda p: b"")
    head = ChainHead("0")
    out = []
    for i in range(n):
        out.append(seal({"schema": "healer.audit/v1", "id": f"e{i}", "kind": "event.received",
                         "source": {"partition": 0, "offset": start + i}}, head, ring.sealing_key()))
    return out


def _ring():
    from healer.keys import parse

    return parse(f"keys: [{{id: s, secret: {'d' * 64}, roles: [audit]}}]", lambda p: b"")


def test_a_forged_record_with_a_valid_link_is_named_and_left_out() -> None:
    from healer.chain import record_hash as rh

    recs = _keyed_chain(3)
    forged = {**recs[-1], "seq": 3, "id": "forged", "prev_hash": recs[-1]["hash"], "__at__": "audit[0]@3"}
    forged.pop("mac")
    forged.pop("kid")
    forged["hash"] = rh(forged)
    assert verify([*recs, forged]).ok  # a plain hash chain cannot tell
    report = verify([*recs, forged], keyring=_ring())
    assert not report.ok and report.foreign == 1 and report.chains == {"0": 3}
    assert "foreign record" in str(report.problems[0]) and "audit[0]@3" in str(report.problems[0])
    # a record whose MAC is valid but whose content was changed breaks the chain as before
    changed = [recs[0], {**recs[1], "kind": "action.verified"}, recs[2]]
    assert "changed" in str(verify(changed, keyring=_ring()).problems[0])


def test_records_sealed_before_keying_are_hash_checked_only() -> None:
    plain_head = ChainHead("0")
    old = [seal({"schema": "healer.audit/v1", "id": f"o{i}", "kind": "event.received"}, plain_head) for i in range(2)]
    keyed = _keyed_chain(1)
    keyed[0] = seal({"schema": "healer.audit/v1", "id": "k0", "kind": "event.received"},
                    ChainHead("0", 2, old[-1]["hash"]), _ring().keys["s"])
    report = verify([*old, *keyed], keyring=_ring())
    assert report.ok and report.unkeyed == 2
    # ...but an unsigned record after a MAC'd one is foreign
    late = seal({"schema": "healer.audit/v1", "id": "late", "kind": "event.received"},
                ChainHead("0", 3, keyed[0]["hash"]))
    assert verify([*old, *keyed, late], keyring=_ring()).foreign == 1


def test_resume_point_trusts_only_genuine_records() -> None:
    from healer.chain import record_hash as rh
    from healer.chain import resume_point

    recs = _keyed_chain(4)
    point = resume_point("0", recs, _ring(), log_end=10)
    assert (point.head.next_seq, point.source, point.ids) == (4, (3, -1), ["e0", "e1", "e2", "e3"])
    huge = {**recs[-1], "seq": 4, "prev_hash": recs[-1]["hash"], "source": {"partition": 0, "offset": 10**9}}
    huge.pop("mac")
    huge.pop("kid")
    huge["hash"] = rh(huge)
    point = resume_point("0", [*recs, huge], _ring(), log_end=10)
    assert point.head.next_seq == 4 and point.source == (3, -1) and len(point.foreign) == 1
    # without a key only the source offset gives it away (as the issue found: keying is the fix)
    point = resume_point("0", [*recs, huge], None, log_end=10)
    assert point.source == (3, -1) and "not in the audit-log" in point.foreign[0]["why"]
    # a genuine record after the forgery continues the last genuine one
    nxt = _keyed_chain(5)[4]
    point = resume_point("0", [*recs, huge, nxt], _ring(), log_end=10)
    assert point.head.next_seq == 5 and point.source == (4, -1)
