"""Property: parsing never raises on any input; it returns signals or a reason."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from healer.ingest import Rejected, parse_record
from healer.timeutil import parse_time

T0 = parse_time("2026-11-21T00:00:00Z")
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
values = st.recursive(scalars, lambda k: st.one_of(st.lists(k), st.dictionaries(st.text(), k)), max_leaves=20)


@settings(max_examples=600, deadline=None)
@given(raw=st.one_of(st.binary(), values.map(lambda v: json.dumps(v).encode())),
       kind=st.sampled_from(["alerts", "metrics"]))
def test_parse_record_never_raises(raw: bytes, kind: str) -> None:
    out = parse_record(kind, raw, T0, "t:0:0")
    assert isinstance(out, Rejected | list)
    if isinstance(out, Rejected):
        assert out.reason


@settings(max_examples=300, deadline=None)
@given(labels=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50), max_size=8))
def test_valid_alerts_always_parse(labels: dict[str, str]) -> None:
    out = parse_record("alerts", json.dumps({"labels": labels}).encode(), T0, "t:0:0")
    assert isinstance(out, list) and out[0].labels == labels
