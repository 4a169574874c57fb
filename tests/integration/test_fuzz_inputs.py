"""Fuzz: 10,000 hypothesis-generated malformed records interleaved with valid
alerts, through a real worker: no crash, every malformed record in the dead
letters (once, naming it, with its exact bytes) and audited as `event.rejected`,
every valid one processed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from healer.ingest import Rejected, parse_record
from healer.timeutil import parse_time
from tests.workers import (
    WorkerFactory,
    dead_letter_problems,
    emit,
    read_records,
    read_to_quiet,
    read_until,
)

pytestmark = pytest.mark.integration

T0 = parse_time("2026-11-21T00:00:00Z")
N_BAD = 10_000
N_GOOD = 500

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: fuzz}
spec:
  trigger: {alert: {matchers: ['alertname="Valid"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
  guards: {cooldown: 1h}
"""

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40))
json_value = st.recursive(json_scalar, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)), max_leaves=12)

malformed = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: not b.strip().startswith((b"{", b"["))),
    st.text(max_size=100).map(lambda t: ("{" + t).encode()),  # broken JSON
    json_value.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["labels", "status", "annotations", "startsAt"]), json_value,
                    min_size=1).filter(lambda d: not isinstance(d.get("labels"), dict) or not d["labels"])
    .map(lambda d: json.dumps(d).encode()),
    st.sampled_from(["3", "5", "", None, 4]).map(
        lambda v: json.dumps({"version": v, "alerts": [{"labels": {"a": "b"}}]}).encode()),  # unknown version
    st.integers(min_value=1, max_value=64).map(lambda n: (b"[" * (2000 + n)) + (b"]" * (2000 + n))),  # deep
    st.text(max_size=5).map(lambda t: json.dumps({"labels": {"alertname": "Valid", "n": t * 500 + "x" * 17000}})
                            .encode()),  # a label over 16 KB
)
MAX_BYTES = 64 * 1024  # the worker's HEALER_MAX_RECORD_BYTES in this test
DEADLETTER_CAP = 128 * 1024  # bytes of an input a dead letter keeps: these records are all below it
OVERSIZE = [json.dumps({"labels": {"alertname": "Valid", "big": "x" * (MAX_BYTES + n)}}).encode()
            for n in range(1, 21)]  # 20 oversize records


def generate(n: int) -> list[bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        out: list[bytes] = list(OVERSIZE)
        while len(out) < n:
            raw = malformed.example()
            if isinstance(parse_record("alerts", raw, T0, "x", MAX_BYTES), Rejected):
                out.append(raw)
    return out


def test_malformed_records_never_stop_valid_ones(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    pol = tmp_path / "p"
    pol.mkdir()
    (pol / "p.yaml").write_text(POLICY)
    w = healer_worker.start(pol, unique_app_id, HEALER_MAX_RECORD_BYTES=str(MAX_BYTES))
    bad = generate(N_BAD)
    assert sum(b.startswith(b'{"labels": {"alertname": "Valid", "big"') for b in bad) == len(OVERSIZE)
    good = [json.dumps({"labels": {"alertname": "Valid", "namespace": "ns", "deployment": f"d{i}"}}).encode()
            for i in range(N_GOOD)]
    stream: list[bytes] = []
    step = N_BAD // N_GOOD
    for i, g in enumerate(good):
        stream.extend(bad[i * step:(i + 1) * step])
        stream.append(g)
    emit(kafka_bootstrap, f"{unique_app_id}.alerts", stream, keys=[b"one-partition"] * len(stream))

    def done(recs: list[dict]) -> bool:
        return (sum(r.get("kind") == "event.rejected" for r in recs) >= N_BAD
                and sum(r.get("kind") == "action.verified" for r in recs) >= N_GOOD)

    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit", done, timeout=300)
    assert w.proc.poll() is None, "the worker died\n" + w.log_tail()
    rejected = [r for r in audit if r.get("kind") == "event.rejected"]
    verified = {r["target"]["name"] for r in audit if r.get("kind") == "action.verified"}
    assert len(rejected) == N_BAD, f"{len(rejected)} rejected\n{w.log_tail()}"
    assert verified == {f"d{i}" for i in range(N_GOOD)}
    dead = read_to_quiet(kafka_bootstrap, f"{unique_app_id}.deadletter", lambda r: len(r) >= N_BAD, timeout=60)
    assert len(dead) == N_BAD
    sent = read_records(kafka_bootstrap, f"{unique_app_id}.alerts", len(stream))
    assert [r.value for r in sent] == stream
    problems = dead_letter_problems(dead, sent, DEADLETTER_CAP)
    assert not problems, f"{len(problems)} dead letters differ from their inputs: {problems[:10]}"
    valid = set(good)
    assert {(d["partition"], d["offset"]) for d in dead} == {
        (r.partition, r.offset) for r in sent if r.value not in valid}
    assert "failed on a batch" not in w.log_tail(10_000)
