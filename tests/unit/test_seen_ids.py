"""Compact per-target memory of decided event ids (streams.seen)."""

from __future__ import annotations

import json

from streams.seen import SeenIds


def test_round_trip_keeps_membership_and_order() -> None:
    s = SeenIds()
    ids = ["h.metrics:3:100", "h.metrics:3:101", "h.alerts:0:7#0", "h.alerts:0:7#2", "h.metrics:3:99",
           "h.alerts:0:8", "odd-id"]
    for e in ids:
        s.add(e)
    back = SeenIds.from_json(json.loads(json.dumps(s.to_json())))
    for e in ids:
        assert e in back
    for e in ["h.metrics:3:102", "h.alerts:0:7#1", "h.metrics:2:100", "other", "h.alerts:0:7#x"]:
        assert e not in back
    assert back.to_json() == s.to_json()
    assert len(back) == len(ids)


def test_cap_is_per_input_partition_and_drops_the_oldest() -> None:
    s = SeenIds(cap=3)
    for off in range(10):
        s.add(f"h.metrics:0:{off}")
    s.add("h.metrics:1:5")
    assert [f"h.metrics:0:{o}" in s for o in range(10)] == [False] * 7 + [True] * 3
    assert "h.metrics:1:5" in s  # another partition keeps its own window
    assert "h.metrics:0:7" in SeenIds.from_json(s.to_json(), cap=3)


def test_rows_of_earlier_versions_are_read() -> None:
    s = SeenIds.from_json(["h.alerts:1:4", "h.alerts:1:5#1"])
    assert "h.alerts:1:4" in s and "h.alerts:1:5#1" in s and "h.alerts:1:5" not in s
    assert len(SeenIds.from_json(None)) == 0


def test_the_compact_form_is_much_smaller_than_the_id_list() -> None:
    s = SeenIds()
    ids = [f"tc2fb26bf676e.metrics:{p}:{1000 + 3 * i}" for p in range(2) for i in range(256)]
    for e in ids:
        s.add(e)
    compact, plain = len(json.dumps(s.to_json())), len(json.dumps(ids))
    assert compact * 4 < plain, (compact, plain)
